"""The machine a run uses: the compute device a config names, checked to work, and the process's peak memory."""

from __future__ import annotations

import sys

import tinygrad_attn as ta
from models.translator.config import ConfigError, check_device


def resolve_device(spec: str) -> ta.Device:
    """``ta.Device`` for ``spec``; a ``ConfigError`` that says why when the device cannot be used."""
    check_device(spec)
    try:
        dev = ta.device(spec)
        ta.zeros(1, device=dev)  # imports CuPy and touches the GPU
    except RuntimeError as e:
        raise ConfigError(
            f"device {spec!r} is not usable: {e}\nOn a machine with an NVIDIA GPU install the CuPy backend "
            "(pip install -e '.[gpu]'); otherwise use --device cpu."
        ) from None
    return dev


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (0 where the OS does not say)."""
    try:
        import resource  # POSIX only
    except ImportError:  # Windows
        return 0.0
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)  # macOS reports bytes, Linux kilobytes
