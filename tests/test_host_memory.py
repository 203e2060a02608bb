"""Freed host memory stays in the process for reuse (glibc): freeing a big array does not shrink it."""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the malloc thresholds are a glibc setting")

# Allocate and touch a 64 MiB array, free it; print how much resident memory the free gave back (MiB).
SCRIPT = """
import os, numpy as np
import tinygrad_attn as ta
def resident_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
a = np.empty(16 * 1024 * 1024, dtype=np.float32)
a.fill(1.0)
before = resident_mib()
del a
print(ta.cache_freed_memory(), before - resident_mib())
"""


def freed_mib(env_value: str) -> tuple[str, float]:
    env = {"TINYGRAD_ATTN_CACHE_HOST_MEMORY": env_value, "PATH": ""}
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, env=env,
                         cwd=root).stdout.split()
    return out[0], float(out[1])


def test_freed_memory_stays_for_reuse():
    applied, returned = freed_mib("1")
    assert applied == "True"
    assert returned < 8, f"freeing a 64 MiB array gave {returned:.0f} MiB back to the kernel"


def test_opting_out_leaves_malloc_alone():
    applied, returned = freed_mib("0")
    assert applied == "False"
    assert returned > 56  # glibc unmaps the big block: keeping it above is the setting's doing
