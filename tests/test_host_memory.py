"""Host memory: importing tinygrad_attn leaves malloc alone; ``ta.keep_freed_memory()`` keeps freed memory.

Each case runs in a fresh interpreter, since the malloc setting lasts for the whole process. It allocates and
touches a 64 MiB array, frees it, and reports how much resident memory the free gave back to the kernel:
glibc unmaps a block that big unless the thresholds were raised.
"""

import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="the malloc thresholds are a glibc setting")

SCRIPT = """
import os, sys, numpy as np
import tinygrad_attn as ta
def resident_mib():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
applied = [ta.keep_freed_memory() for _ in range(int(sys.argv[1]))]
a = np.empty(16 * 1024 * 1024, dtype=np.float32)
a.fill(1.0)
before = resident_mib()
del a
print(",".join(map(str, applied)) or "-", before - resident_mib())
"""


def freed_mib(calls: int, env_value: str | None = None) -> tuple[str, float]:
    """Run SCRIPT calling keep_freed_memory() ``calls`` times; its return values and the MiB the free gave back."""
    env = {"PATH": ""}
    if env_value is not None:
        env["TINYGRAD_ATTN_CACHE_HOST_MEMORY"] = env_value
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(calls)], capture_output=True, text=True, check=True,
                         env=env, cwd=root).stdout.split()
    return out[0], float(out[1])


def test_import_leaves_malloc_alone():
    applied, returned = freed_mib(0)
    assert applied == "-"
    assert returned > 56, f"after a bare import, freeing a 64 MiB array gave only {returned:.0f} MiB back"


def test_keep_freed_memory_keeps_it_for_reuse():
    applied, returned = freed_mib(2)
    assert applied == "True,True"  # idempotent: the second call reports the setting still in effect
    assert returned < 8, f"freeing a 64 MiB array gave {returned:.0f} MiB back to the kernel"


def test_environment_variable_disables_it():
    applied, returned = freed_mib(1, "0")
    assert applied == "False"
    assert returned > 56
