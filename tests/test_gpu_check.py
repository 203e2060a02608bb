"""The prepared GPU check, ``benchmarks/gpu_check.sh``, in the parts a CPU can run: its syntax, its
``--cpu-smoke`` mode (every phase at tiny sizes on the CPU, the CUDA-only ones skipped with a line saying so,
then the summary), a failed phase not stopping the next, and the benchmark's checks of ``--device`` and
``--precision`` (a clear message, before any data is loaded, where they cannot run)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
BENCH = ROOT / "benchmarks" / "translator.py"
SHARED_MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"

needs_bash = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")
needs_data = pytest.mark.skipif(not (SHARED_MULTI30K / "train.de.gz").is_file(),
                                reason=f"shared Multi30k copy not found at {SHARED_MULTI30K}")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_CHECK_") and k not in ("OUT", "CUPY_CACHE_DIR")}
    env.update(PYTHON=sys.executable, **extra)
    return env


def _summary_rows(stdout: str) -> dict[str, tuple[str, str]]:
    """phase -> (status, result) from the summary table the script prints last."""
    summary = stdout[stdout.index("=== summary"):]
    rows = {}
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[2].isdigit():
            rows[cells[0]] = (cells[1], cells[3])
    return rows


@needs_bash
def test_the_script_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _has_amp() -> bool:  # what ``--precision fp16`` needs: ta.amp and the translator's mixed-precision step
    import models.translator.step as step

    return importlib.util.find_spec("tinygrad_attn.amp") is not None and hasattr(step, "make_scaler")


@needs_bash
@needs_data
def test_cpu_smoke_runs_every_phase_and_prints_the_summary(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = _env(GPU_CHECK_DATA_DIR=str(SHARED_MULTI30K), CUPY_CACHE_DIR=str(tmp_path / "cupy_cache"))
    proc = subprocess.run(["bash", str(SCRIPT), "--cpu-smoke", str(out)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _summary_rows(proc.stdout)
    assert list(rows) == ["install", "machine", "suite", "bench_fp32", "bench_fp16", "kernels", "train"], \
        proc.stdout[-3000:]
    status = {name: s for name, (s, _) in rows.items()}
    assert status["install"] == "skipped" and "CUDA-only" in rows["install"][1]
    assert status["kernels"] == "skipped" and "CUDA-only" in rows["kernels"][1]
    assert all(status[n] == "ok" for n in ("machine", "suite", "bench_fp32", "train")), rows
    assert re.search(r"\d+ passed", rows["suite"][1]), rows["suite"]
    assert re.search(r"step ours [\d.]+ ms", rows["bench_fp32"][1]), rows["bench_fp32"]
    train_result = r" min of training, 1 steps, [\d,]+ target tokens/s; BLEU val greedy [\d.]+ / beam2 [\d.]+"
    assert re.search(train_result, rows["train"][1]), rows["train"]
    if _has_amp():
        assert status["bench_fp16"] == "ok", (out / "bench_fp16.log").read_text()[-3000:]
    else:  # until tinygrad_attn.amp exists: the phase fails with the benchmark's own message, and the rest runs
        assert status["bench_fp16"] == "FAILED (exit 1)"
        assert "--precision fp16 needs tinygrad_attn.amp" in (out / "bench_fp16.log").read_text()
    # Everything under the output folder: one log per phase, the benchmark's JSON and the one table, the run.
    for name in rows:
        assert (out / f"{name}.log").is_file(), name
    bench = json.loads((out / "bench_fp32.json").read_text())
    assert bench["args"]["device"] == "cpu" and bench["args"]["precision"] == "fp32"
    assert set(bench["decoding"]) == {"greedy_cache", "beam4_cache"} and "rss" not in bench
    table = (out / "bench_table.md").read_text()
    assert "| training step, ms (median; lower is better)" in table and "cpu fp32 ours" in table
    assert table in (out / "summary.txt").read_text() and (out / "train_base" / "results.json").is_file()


@needs_bash
def test_a_failed_phase_does_not_stop_the_next(tmp_path: Path) -> None:
    # the phase after the failed one: install, which --cpu-smoke skips at once (machine would import torch: ~10 s)
    env = _env(GPU_CHECK_PHASES="suite install", GPU_CHECK_SMOKE_TESTS="tests/no_such_test_file.py")
    proc = subprocess.run(["bash", str(SCRIPT), "--cpu-smoke", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _summary_rows(proc.stdout)
    assert list(rows) == ["suite", "install"]
    assert rows["suite"][0].startswith("FAILED (exit ") and rows["install"][0] == "skipped"
    assert "--cpu-smoke installs nothing" in (tmp_path / "out" / "install.log").read_text()  # install did run


@needs_bash
@pytest.mark.parametrize(("argv", "phases", "message"), [
    (["--cpu-smoke", "a", "b"], None, "usage: benchmarks/gpu_check.sh [--cpu-smoke] [OUT_DIR]"),
    (["--bogus"], None, "usage: benchmarks/gpu_check.sh"),
    ([], "suite bench", "unknown phase 'bench' in GPU_CHECK_PHASES"),
])
def test_bad_invocations_are_refused(tmp_path: Path, argv: list[str], phases: str | None, message: str) -> None:
    env = _env(**({"GPU_CHECK_PHASES": phases} if phases else {}))
    proc = subprocess.run(["bash", str(SCRIPT), *argv, *([] if argv else [str(tmp_path / "out")])],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode == 2 and message in proc.stderr, proc.stdout + proc.stderr
    assert "=== " not in proc.stdout  # refused before any phase ran


# ---- benchmarks/translator.py: --device and --precision ------------------------------------------------------


def _no_cupy_env(tmp_path: Path) -> dict[str, str]:
    """An environment where ``import cupy`` fails (a stand-in package shadows any real CuPy)."""
    fake = tmp_path / "no_cupy" / "cupy"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("CuPy is not installed (test stand-in)")\n')
    return _env(PYTHONPATH=os.pathsep.join([str(fake.parent), os.environ.get("PYTHONPATH", "")]))


def _run_bench(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The benchmark without CuPy, with a data folder that does not exist: a check that comes after loading the
    data would fail on the data instead."""
    return subprocess.run([sys.executable, str(BENCH), "--quick", "--data-dir", str(tmp_path / "missing"), *argv],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=_no_cupy_env(tmp_path))


def test_the_kernel_benchmark_without_cuda_is_a_clear_error(tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / "cuda_kernels.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env=_no_cupy_env(tmp_path))
    assert proc.returncode == 1 and "needs CuPy and a GPU" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, str(script), "--repeats", "0"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and "--repeats must be at least 1" in proc.stderr


def test_bench_device_cuda_without_cupy_is_a_clear_error(tmp_path: Path) -> None:
    proc = _run_bench(tmp_path, "--device", "cuda", "--no-torch")
    assert proc.returncode == 1
    assert "--device cuda: tinygrad_attn cannot use CUDA here: device 'cuda' is not available: ImportError: CuPy " \
           "is not installed (test stand-in)" in proc.stderr
    assert "pip install 'tinygrad_attn[gpu]'" in proc.stderr and "Or use --device cpu." in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(("argv", "message"), [
    (["--device", "cuda", "--workers", "2"], "--workers 2 is for the CPU"),
    (["--precision", "fp16", "--workers", "2"], "--workers 2: helper processes compute in fp32 only"),
    (["--device", "gpu"], "argument --device: invalid choice: 'gpu'"),
    (["--precision", "bf16"], "argument --precision: invalid choice: 'bf16'"),
])
def test_bench_rejects_bad_device_arguments(tmp_path: Path, argv: list[str], message: str) -> None:
    proc = _run_bench(tmp_path, *argv)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def bench():  # the benchmark as a module (importing it leaves threads and the environment alone)
    spec = importlib.util.spec_from_file_location("bench_translator_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_fp16_without_amp_is_a_clear_error(bench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tinygrad_attn.amp", None)  # as in a checkout without tinygrad_attn.amp
    args = bench.parse_args(["--precision", "fp16"])
    with pytest.raises(SystemExit, match=r"--precision fp16 needs tinygrad_attn.amp \(autocast and GradScaler\)"):
        bench.check_device_args(args)


def _result(device: str, precision: str, ours_s: float, torch_s: float | None, greedy: float | None = None) -> dict:
    training = {"ours": {"step_s_median": ours_s, "tokens_per_s_median": 1000 / ours_s}}
    decoding = {}
    if torch_s is not None:
        training["torch"] = {"step_s_median": torch_s, "tokens_per_s_median": 1000 / torch_s}
    if greedy is not None:
        decoding["greedy_cache"] = {"ours": {"sentences_per_s": greedy}, "torch": {"sentences_per_s": 2 * greedy}}
    return {"args": {"device": device, "precision": precision}, "model": {"preset": "base", "parameters": 1234567},
            "machine": {"commit": "abc1234"}, "training": training, "decoding": decoding}


def test_side_by_side_table_puts_runs_next_to_each_other(bench) -> None:
    runs = [_result("cuda", "fp32", 0.120, 0.100, greedy=50.0), _result("cuda", "fp16", 0.060, None)]
    table = bench.side_by_side(runs)
    lines = table.splitlines()
    assert lines[0] == ("preset base (1,234,567 parameters); columns: cuda fp32 (tinygrad_attn abc1234), "
                        "cuda fp16 (tinygrad_attn abc1234)")
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header == ["measure", "cuda fp32 ours", "cuda fp32 torch", "ours/torch", "cuda fp16 ours", "cuda fp16 torch",
                      "ours/torch"]
    rows = {r[0]: r[1:] for r in ([c.strip() for c in line.strip("|").split("|")] for line in lines[4:])}
    assert rows["training step, ms (median; lower is better)"] == ["120.0", "100.0", "1.20x", "60.0", "-", "-"]
    assert rows["training, target tokens/s (median)"] == ["8,333", "10,000", "0.83x", "16,667", "-", "-"]
    assert rows["greedy, with KV cache, sentences/s"] == ["50.0", "100.0", "0.50x", "-", "-", "-"]
