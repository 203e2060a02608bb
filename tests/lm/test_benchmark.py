"""``benchmarks/lm.py``: the nanoGPT twin is the same model as ours, and a short run reports every figure."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinygrad_attn as ta
from models.gpt import GPT, GPTConfig
from models.lm import data

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "lm.py"


@pytest.fixture(scope="module")
def bench():  # the benchmark as a module (importing it leaves threads and the environment alone)
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("bench_lm", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("gelu", ["exact", "tanh"])
def test_twin_is_nanogpts_model_with_our_weights(bench, gelu: str) -> None:
    import torch

    ta.manual_seed(0)
    config = GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16, gelu=gelu)
    ours = GPT(config)
    twin = bench.torch_twin(config)
    assert sum(p.numel() for p in twin.parameters()) == ours.num_parameters()
    bench.copy_into_twin(ours, twin)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 13, (3, 8)), rng.integers(0, 13, (3, 8))
    check = bench.check_twin(ours, twin, x, y)
    assert max(check.values()) < 1e-5, check
    assert all(p.grad is None for p in ours.parameters()) and all(p.grad is None for p in twin.parameters())
    with torch.no_grad():  # a 1% change of one LayerNorm gain in the last block must be caught
        twin.transformer.h[1].ln_2.weight.mul_(1.01)
    assert max(bench.check_twin(ours, twin, x, y).values()) > 1e-4


@pytest.mark.skipif(not (data.SHARED_DIR / data.FILE_NAME).is_file(), reason="shared Tiny Shakespeare not found")
def test_short_run_reports_every_figure(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(SCRIPT), "--iters", "4", "--eval-iters", "2", "--chunk", "2", "--rss-iters", "1",
           "--threads", "1", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| ms / iteration (mean of chunks) |" in proc.stdout
    res = json.loads(out.read_text())
    assert res["parameters"] == 801_664 and max(res["twin_check"].values()) < 1e-4
    for name in ("ours", "torch"):
        assert res[name]["ms_per_iter_mean"] > 0 and res[name]["rss"]["peak_mb"] > 0
        assert 3.0 < res[name]["val_loss"] < 4.5  # ln(65) = 4.17 at the start, a little lower after 4 iterations
    assert abs(res["val_loss_diff"]) < 1e-3  # the same model on the same batches
