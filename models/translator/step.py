"""One optimiser step: the model and optimiser a config describes, and the gradient of a step's batches.

    build                 the Transformer of a (resolved) config, on a device
    make_optimizer        Adam and the config's learning-rate schedule (Noam, or warmup + cosine)
    make_scaler           the loss scaler of ``train.precision`` (a disabled one for fp32)
    accumulate_gradients  forward and backward of some batches, each loss divided by the tokens of the whole step
    train_step            zero the gradients, accumulate them (here, or shared with helper processes), clip,
                          one Adam step, one schedule step

With ``train.precision = "fp16"`` the forward passes run under ``ta.amp.autocast`` and the loss is scaled
by the ``GradScaler``; the gradients are unscaled before clipping, and a step whose gradients hold an inf
or nan is skipped (the schedule still advances) while the scale halves.

Dividing every batch's summed loss by the target tokens of *all* the step's batches makes the summed
``.grad`` exactly the gradient of the mean loss over one big batch, however the step is cut into batches
(``train.accum_steps``) or shared between processes (``parallel.GradientWorkers``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

import tinygrad_attn as ta
from models.transformer import Transformer, build_model
from models.translator.batching import Batch
from models.translator.config import Config, ConfigError, peak_lr
from models.translator.vocab import PAD_ID
from tinygrad_attn.nn.utils import clip_grad_norm_
from tinygrad_attn.optim import Adam
from tinygrad_attn.optim.lr_scheduler import LinearWarmupCosineDecay, LRScheduler, NoamLR


class SharedGradients(Protocol):
    """Processes that compute a step's gradient together (``parallel.GradientWorkers``: forked CPU processes;
    ``ranks.MPIGradients``: MPI ranks): ``gradients`` leaves it in the parameters' ``.grad`` of this process
    and returns the summed loss (read already: a float)."""

    def gradients(self, batches: Sequence[Batch], n_tokens: int) -> float: ...


def build(config: Config, vocab_size: int, device: ta.Device) -> Transformer:
    """The Transformer of the (resolved) config, on ``device``."""
    model = build_model(vocab_size, pad_id=PAD_ID, **config.model_hparams())
    model.to(device)
    return model


def make_optimizer(config: Config, model: ta.nn.Module, clock: Callable[[], float] | None = None
                   ) -> tuple[Adam, LRScheduler]:
    """Adam with the config's betas/eps and its schedule, which sets the lr of every step: the paper's Noam
    schedule, or the same warmup and peak followed by a cosine decay to 0 at ``train.max_steps`` or at the end
    of ``train.max_minutes``, whichever comes first. The minutes count only with a ``clock`` (training
    seconds so far, as the training loop measures them); without one the cosine needs ``max_steps``."""
    t = config.train
    optimizer = Adam(model.parameters(), lr=peak_lr(config), betas=t.betas, eps=t.eps)
    if t.schedule == "cosine":
        seconds = 60.0 * t.max_minutes if t.max_minutes is not None and clock is not None else None
        if t.max_steps is None and seconds is None:
            raise ConfigError("train.schedule = 'cosine' with train.max_steps = null decays over "
                              "train.max_minutes, which needs a clock: pass make_optimizer(..., clock=...)")
        return optimizer, LinearWarmupCosineDecay(optimizer, warmup_steps=t.warmup, total_steps=t.max_steps,
                                                  total_seconds=seconds, clock=clock if seconds is not None else None)
    d_model = config.model.d_model
    assert d_model is not None  # peak_lr above raised ConfigError for an unresolved config
    return optimizer, NoamLR(optimizer, d_model=d_model, warmup=t.warmup, factor=t.lr_factor)


def make_scaler(config: Config) -> ta.amp.GradScaler:
    """The ``GradScaler`` of ``train.precision``: PyTorch's defaults for fp16, a disabled one (a pass-through)
    for fp32."""
    return ta.amp.GradScaler(enabled=config.train.precision == "fp16")


def _tensor(array: np.ndarray, device: ta.Device) -> ta.Tensor:
    return ta.tensor(array, device=device)


def accumulate_gradients(model: Transformer, batches: Sequence[Batch], n_tokens: int, label_smoothing: float,
                         device: ta.Device, scaler: ta.amp.GradScaler | None = None) -> ta.Tensor:
    """Forward and backward of each batch, its summed loss divided by ``n_tokens`` (the target tokens of the
    whole step, however it is split into batches or between processes), so that the ``.grad`` sums are
    exactly the gradient of the step's mean loss. Returns the summed (undivided) loss as a 0-d tensor on
    ``device``, added up there: reading it (``.item()``) is the caller's choice, a wait for the GPU's queue.

    With an enabled ``scaler`` the forward runs under autocast and the gradients are those of the loss
    times the scaler's scale (``GradScaler.unscale_`` or ``step`` divides them back)."""
    total = ta.zeros((), device=device)
    mixed = scaler is not None and scaler.is_enabled()
    for b in batches:
        with ta.amp.autocast("cpu" if device.type == "cpu" else "cuda") if mixed else contextlib.nullcontext():
            logits = model(_tensor(b.src, device), _tensor(b.tgt_in, device))
            loss_sum, _ = model.loss(logits, _tensor(b.tgt_out, device), label_smoothing=label_smoothing)
        loss = loss_sum / n_tokens
        (scaler.scale(loss) if scaler is not None and mixed else loss).backward()
        total = total + loss_sum.detach()
    return total


def train_step(model: Transformer, optimizer: Adam, scheduler: LRScheduler, batches: Sequence[Batch],
               config: Config, device: ta.Device, workers: SharedGradients | None = None,
               scaler: ta.amp.GradScaler | None = None) -> tuple[ta.Tensor, int]:
    """One optimiser step on ``batches`` (gradients accumulated); returns (summed loss, target tokens), the loss
    a 0-d tensor on ``device``, not read: a fp32 step reads nothing from a GPU (fp16: the scaler's inf check).

    With ``workers`` (a ``parallel.GradientWorkers``) the batches are shared with helper processes. With an
    enabled ``scaler`` (``make_scaler`` for ``train.precision = "fp16"``) the step is mixed precision.
    """
    model.train()
    optimizer.zero_grad()
    n_tokens = sum(b.n_tgt_tokens for b in batches)
    mixed = scaler is not None and scaler.is_enabled()
    if mixed and workers is not None:
        raise ConfigError("train.precision = 'fp16' cannot share batches between processes (train.workers > 1 or "
                          "MPI ranks): train in fp32 there, or fp16 in one process")
    if workers is None:
        # In fp16 an overflow is expected now and then (the scaler skips that step): no NumPy warnings for it.
        with np.errstate(over="ignore", invalid="ignore") if mixed else contextlib.nullcontext():
            total = accumulate_gradients(model, batches, n_tokens, config.train.label_smoothing, device, scaler)
    else:
        total = ta.tensor(workers.gradients(batches, n_tokens), dtype=ta.float32)
    if mixed:
        assert scaler is not None
        scaler.unscale_(optimizer)  # clip (and step) on the true gradients
    if config.train.clip_norm is not None:
        clip_grad_norm_(model.parameters(), config.train.clip_norm)
    if mixed:
        assert scaler is not None
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    return total, n_tokens
