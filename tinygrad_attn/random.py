"""Random numbers: one seeded generator per device, so runs are reproducible on each backend.

``ta.manual_seed(n)`` reseeds all of them. Each backend has its own generator (NumPy's PCG64 on the
CPU, CuPy's on the GPU): the same seed gives reproducible, but not identical, numbers across devices.

Saving the state for an exact resume: the CPU generator's state is exported as it is. A GPU generator keeps
its state in device memory and CuPy cannot export it, so each device draws from numbered streams instead:
stream ``k`` of device ``d`` is a generator seeded from (seed, d, k). ``get_rng_state`` moves every device
to its next stream and records the numbers; the run that goes on and the run that resumes from the saved
state then draw the same numbers on every device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import BACKENDS, Device, device, device_of, module_for

_seed: int | None = None
_generators: dict[Device, Any] = {}
_streams: dict[Device, int] = {}  # the stream each device (not the CPU) draws from; 0 when absent


def manual_seed(seed: int) -> None:
    """Seed every device's generator (those made later too)."""
    global _seed
    _seed = int(seed)
    _generators.clear()
    _streams.clear()


def _device_seed(dev: Device) -> int | None:
    if _seed is None:
        return None
    base = _seed + 7919 * (dev.index or 0)
    stream = _streams.get(dev, 0)
    return base if stream == 0 else int(np.random.SeedSequence([base, stream]).generate_state(1, np.uint64)[0])


def generator(device: Device) -> Any:
    """The generator for ``device``, made on first use from the last ``manual_seed``."""
    gen = _generators.get(device)
    if gen is None:
        xp = module_for(device)
        if xp is np:
            gen = np.random.default_rng(_seed)
        else:
            with BACKENDS[device.type].on(device.index):  # a GPU generator lives in its device's memory
                gen = xp.random.default_rng(_device_seed(device))
        _generators[device] = gen
    return gen


def get_rng_state() -> dict:
    """The random state as a plain dict, for checkpoints that must resume exactly: the seed, the CPU generator's
    state, and the stream of every other device, each of which moves on to a fresh stream here."""
    global _seed
    devices = [d for d in _generators if d.type != "cpu"]
    if devices and _seed is None:  # an unseeded run: a seed from the OS, from now on, so that it can resume
        _seed = int(np.random.SeedSequence().generate_state(1, np.uint32)[0])
    for d in devices:
        _streams[d] = _streams.get(d, 0) + 1
        del _generators[d]
    return {"seed": _seed, "cpu": generator(Device("cpu")).bit_generator.state,
            "streams": {str(d): k for d, k in _streams.items()}}


def set_rng_state(state: dict) -> None:
    global _seed
    _seed = state.get("seed")
    _generators.clear()
    _streams.clear()
    _streams.update({device(d): int(k) for d, k in state.get("streams", {}).items()})
    generator(Device("cpu")).bit_generator.state = state["cpu"]


def dropout_mask(shape: tuple[int, ...], p: float, like: Any) -> Any:
    """The multiplier of inverted dropout: 0 with probability ``p``, else 1 / (1 - p) (so E[x * mask] = x),
    an array of ``like``'s dtype on ``like``'s device, drawn from that device's generator.

    Keeping the scale inside the mask makes dropout one multiply forward and one backward (dL/dx = g * mask),
    at the price of a float mask where booleans would take a quarter of the memory."""
    dev = device_of(like)
    xp = module_for(dev)
    with BACKENDS[dev.type].on(dev.index):
        u = generator(dev).random(shape, dtype=np.float32)
        mask = u if like.dtype == np.float32 else xp.empty(shape, dtype=like.dtype)  # u's buffer, where it fits
        return xp.multiply(u >= p, 0.0 if p == 1 else 1.0 / (1.0 - p), out=mask, dtype=mask.dtype)
