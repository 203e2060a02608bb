"""``benchmarks/ops.py --only block``: the transformer-block case runs, and its check that the PyTorch twin
computes the same gradients rejects a twin that does not (each in a child process: the benchmark sets thread
counts when it is imported)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "ops.py"


def test_block_case_reports_every_figure(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "ops.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--only", "block", "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    block = json.loads(out.read_text())["block"]
    assert block["grad_rel_diff"] < 1e-4
    for key in ("ours_fwd_ms", "torch_fwd_ms", "ours_fwd_bwd_ms", "torch_fwd_bwd_ms"):
        assert block[key] > 0
    assert "| pre-LN GELU block" in proc.stdout


def test_block_twin_check_rejects_a_changed_twin() -> None:
    pytest.importorskip("torch")
    code = (
        "import sys, torch; sys.path.insert(0, 'benchmarks'); import ops\n"
        "twins = ops.BlockTwins()\n"
        "print('same', twins.check())\n"
        "with torch.no_grad():\n"
        "    twins.twin.linear2.weight.mul_(1.01)\n"
        "try:\n"
        "    twins.check()\n"
        "    print('accepted')\n"
        "except AssertionError as e:\n"
        "    print('rejected:', e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rejected: transformer block: the gradients of" in proc.stdout, proc.stdout
