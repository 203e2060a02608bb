"""Random numbers: one seeded generator per device, so runs are reproducible on each backend.

``ta.manual_seed(n)`` reseeds all of them. Each backend has its own generator (NumPy's PCG64 on the
CPU, CuPy's on the GPU): the same seed gives reproducible, but not identical, numbers across devices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import Device, device_of, module_for

_seed: int | None = None
_generators: dict[Device, Any] = {}


def manual_seed(seed: int) -> None:
    """Seed every device's generator (those made later too)."""
    global _seed
    _seed = int(seed)
    _generators.clear()


def generator(device: Device) -> Any:
    """The generator for ``device``, made on first use from the last ``manual_seed``."""
    gen = _generators.get(device)
    if gen is None:
        xp = module_for(device)
        seed = None if _seed is None else _seed + 7919 * (device.index or 0)
        if xp is np:
            gen = np.random.default_rng(seed)
        else:
            with xp.cuda.Device(device.index or 0):
                gen = xp.random.default_rng(seed)
        _generators[device] = gen
    return gen


def get_rng_state() -> dict:
    """The CPU generator's state (a plain dict), for checkpoints that must resume exactly."""
    return {"seed": _seed, "cpu": generator(Device("cpu")).bit_generator.state}


def set_rng_state(state: dict) -> None:
    global _seed
    _seed = state.get("seed")
    _generators.clear()
    generator(Device("cpu")).bit_generator.state = state["cpu"]


def dropout_mask(shape: tuple[int, ...], p: float, like: Any) -> Any:
    """The multiplier of inverted dropout: 0 with probability ``p``, else 1 / (1 - p) (so E[x * mask] = x),
    an array of ``like``'s dtype on ``like``'s device, drawn from that device's generator.

    Keeping the scale inside the mask makes dropout one multiply forward and one backward (dL/dx = g * mask),
    at the price of a float mask where booleans would take a quarter of the memory."""
    device = device_of(like)
    xp = module_for(device)
    u = generator(device).random(shape, dtype=np.float32)
    mask = u if like.dtype == np.float32 else xp.empty(shape, dtype=like.dtype)  # u's buffer, where it fits
    return xp.multiply(u >= p, 0.0 if p == 1 else 1.0 / (1.0 - p), out=mask, dtype=mask.dtype)
