"""Host memory: keep the memory of freed NumPy arrays in the process, so the next step reuses it.

NumPy takes every array's memory from C's ``malloc``. glibc's malloc serves a large request (above a
threshold that grows with use but stays below 32 MiB) with a fresh ``mmap`` and gives it back to the kernel
on ``free``; it also trims a large free block at the top of the heap. A training step allocates and frees
the same large activations and gradients every time, so every step the kernel maps them in again and zeroes
each 4 KiB page on first touch: page faults that cost a noticeable share of a CPU training step
(docs/experiments.md has the measurement).

``keep_freed_memory()`` raises malloc's mmap and trim thresholds, so freed blocks stay in the heap, where the
next step's arrays of the same sizes find them: the idea of PyTorch's caching allocator for GPU memory, done
by the C library. The cost is that the process does not shrink after a peak (its peak size is unchanged).

It is an opt-in, because it changes malloc for the whole process, not only for this library: importing
``tinygrad_attn`` changes nothing; the translator's command line turns it on. It works on glibc systems only
(elsewhere it does nothing), and the environment variable ``TINYGRAD_ATTN_CACHE_HOST_MEMORY=0`` disables it.
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt(3) parameter numbers, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 1 << 30  # blocks below 1 GiB come from the heap, not from their own mmap
TRIM_THRESHOLD = (1 << 31) - 1  # keep up to 2 GiB of free heap (mallopt takes a C int: this is its maximum)

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in the process for reuse, for the rest of the process.

    Call it once at the start of a training script. Idempotent: later calls change nothing and return the
    first call's answer. Returns whether the setting is in effect (False off glibc, when mallopt refuses,
    or with ``TINYGRAD_ATTN_CACHE_HOST_MEMORY=0`` in the environment).
    """
    global _applied
    if _applied is None:
        _applied = _set_thresholds()
    return _applied


def _set_thresholds() -> bool:
    if os.environ.get("TINYGRAD_ATTN_CACHE_HOST_MEMORY", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # mallopt returns 1 on success and 0 when it refuses a value.
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD,
                                                                                        TRIM_THRESHOLD))
