"""Random numbers: one seeded generator per device, so runs are reproducible on each backend.

``ta.manual_seed(n)`` reseeds all of them. Each backend has its own generator (NumPy's PCG64 on the
CPU, CuPy's on the GPU): the same seed gives reproducible, but not identical, numbers across devices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backend import Device, module_for

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
