"""Smoke tests of ``benchmarks/translator.py``: the ``--quick`` run works end to end (tiny model, a few
seconds), and its check that the PyTorch twin is the same model fails when it is not."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinygrad_attn as ta

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "translator.py"
SHARED_MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"

pytestmark = pytest.mark.skipif(not (SHARED_MULTI30K / "train.de.gz").is_file(),
                                reason=f"shared Multi30k copy not found at {SHARED_MULTI30K}")


def _has_torch() -> bool:
    return importlib.util.find_spec("torch") is not None


def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--data-dir", str(SHARED_MULTI30K),
           "--json", str(out)]
    if not _has_torch():
        cmd.append("--no-torch")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    names = ["ours", "torch"] if _has_torch() else ["ours"]
    assert "| training, target tokens/s" in proc.stdout  # the table was printed

    for name in names:
        t = res["training"][name]
        assert t["steps"] == 3 and t["tokens_per_s_median"] > 0 and t["tokens_per_s_overall"] > 0
        rss = res["rss"][name]
        assert rss["peak_mb"] >= rss["before_steps_mb"] > 0
    assert set(res["decoding"]) == {"greedy_cache", "greedy_nocache", "beam4_cache", "beam4_nocache"}
    for entry in res["decoding"].values():
        for name in names:
            assert entry[name]["sentences_per_s"] > 0 and entry[name]["mean_output_tokens"] > 0
    if _has_torch():
        check = res["twin_check"]
        assert check["loss_rel_diff"] < 1e-9 and check["grad_rel_diff"] < 1e-9
        # Same weights and the same search: the cache must not change outputs, and the twin's must match ours.
        for entry in res["decoding"].values():
            assert entry["same_output"] == 1.0


@pytest.fixture(scope="module")
def bench():  # the benchmark as a module (importing it leaves threads and the environment alone)
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("bench_translator", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _batch(vocab_size: int, rng: np.random.Generator):
    from models.translator.batching import Batch

    src = rng.integers(4, vocab_size, size=(3, 7))
    tgt = rng.integers(4, vocab_size, size=(3, 6))
    src[0, 5:] = 0  # some padding on both sides
    tgt[1, 4:] = 0
    tgt_out = np.concatenate([tgt[:, 1:], np.full((3, 1), 3)], axis=1)
    tgt_out[1, 3:] = 0
    return Batch(src=src, tgt_in=tgt, tgt_out=tgt_out, indices=np.arange(3), n_src_tokens=int((src != 0).sum()),
                 n_tgt_tokens=int((tgt_out != 0).sum()))


def test_twin_check_accepts_the_copy_and_rejects_a_changed_twin(bench) -> None:
    import torch

    from models.transformer import build_model

    rng = np.random.default_rng(0)
    ours = build_model(50, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=2, d_ff=32)
    twin = bench.build_twin(ours)
    batch = _batch(50, rng)
    before = {k: v.numpy().copy() for k, v in ours.state_dict().items()}
    check = bench.check_twin(ours, twin, batch, 0.1)
    assert check["loss_rel_diff"] < 1e-9 and check["grad_rel_diff"] < 1e-9  # float64: rounding is no excuse
    # The check runs in float64 and hands both models back as they were: float32, the same weights, no grads.
    for name, value in ours.state_dict().items():
        assert value.dtype == ta.float32 and np.array_equal(value.numpy(), before[name]), name
    assert all(p.dtype == torch.float32 and p.grad is None for p in twin.parameters())
    assert all(p.grad is None for p in ours.parameters())
    with torch.no_grad():  # a 1% change of one LayerNorm gain deep in the decoder must be caught
        twin.decoder_layers[1].norm1.weight.mul_(1.01)
    with pytest.raises(SystemExit, match="not the same model"):
        bench.check_twin(ours, twin, batch, 0.1)


def test_twin_decoding_matches_ours_with_and_without_cache(bench) -> None:
    from models.transformer import build_model
    from models.translator.search import beam_search, greedy_decode

    rng = np.random.default_rng(1)
    ours = build_model(40, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32)
    twin = bench.build_twin(ours)
    twin.eval()
    src = rng.integers(4, 40, size=(5, 6))
    src[:, -1] = 3  # eos
    src[2, 3:] = 0
    src[2, 2] = 3
    import torch

    with torch.inference_mode():
        for use_cache in (True, False):
            assert bench.twin_greedy(twin, src, use_cache, max_len_b=8) == greedy_decode(ours, src, 2, 3, max_len_b=8)
            assert bench.twin_beam(twin, src, use_cache, 3, max_len_b=8) == beam_search(ours, src, 2, 3, 3,
                                                                                        max_len_b=8)


def test_twin_decoding_through_device_logits_matches(bench) -> None:
    """On a GPU the twin's decoder hands search.py ``TwinDeviceLogits`` (argmax on the device, ``numpy()`` to
    the host): the same loops over them give the same outputs as over the plain CPU tensors."""
    import torch

    from models.transformer import build_model
    from models.translator.search import beam_loop, greedy_loop

    class WrappedDecoder(bench.TwinDecoder):
        def logits(self):
            return bench.TwinDeviceLogits(super().logits())

    rng = np.random.default_rng(2)
    twin = bench.build_twin(build_model(40, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32))
    twin.eval()
    src = rng.integers(4, 40, size=(4, 6))
    src[:, -1] = 3
    max_len = bench._max_lengths(src, 1.0, 8)
    with torch.inference_mode():
        memory, keep = twin.encode(bench.twin_tensor(twin, src))
        for use_cache in (True, False):
            assert greedy_loop(WrappedDecoder(twin, memory, keep, use_cache), max_len, 3) == \
                bench.twin_greedy(twin, src, use_cache, max_len_b=8)
            rows = torch.from_numpy(np.repeat(np.arange(4), 3))
            assert beam_loop(WrappedDecoder(twin, memory[rows], keep[rows], use_cache), max_len, 3, 3, 0.6) == \
                bench.twin_beam(twin, src, use_cache, 3, max_len_b=8)
