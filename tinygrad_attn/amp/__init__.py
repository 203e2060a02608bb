"""Mixed precision, as PyTorch's ``torch.amp``: ``autocast`` runs matrix products in float16 and ``GradScaler``
scales the loss so that float16 gradients neither underflow nor go unnoticed when they overflow.

    scaler = ta.amp.GradScaler()
    with ta.amp.autocast(device_type="cuda", dtype=ta.float16):
        loss = loss_fn(model(x), y)          # matmuls in float16; softmax, norms and the loss in float32
    scaler.scale(loss).backward()            # gradients of loss * S
    scaler.step(optimizer)                   # unscale; skip the step if any gradient is inf/nan
    scaler.update()                          # S halves after a skipped step, doubles after N clean ones

The parameters stay float32 (the master weights): autocast's casts are ordinary differentiable ops, so the
gradients flow back into float32. ``allow_tf32()`` lets float32 matmuls use TF32 on Ampere+ GPUs
(a no-op on the CPU).
"""

from .autocast_mode import autocast, get_autocast_dtype, is_autocast_enabled
from .grad_scaler import GradScaler
from .tf32 import allow_tf32, tf32_allowed

__all__ = ["autocast", "GradScaler", "is_autocast_enabled", "get_autocast_dtype", "allow_tf32", "tf32_allowed"]
