"""Fixtures for the explorer's tests: a micro translator trained here, the app, a live server, a browser.

The browser tests drive the system's Chromium (Debian's ``chromium``) through Playwright; without either
they skip, except on CI (``CI=true``), where ``.ci/run`` installs both and a missing one is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.explorer.sessions import TranslatorSession, load_session
from models.translator.__main__ import main as translator_main

ROOT = Path(__file__).resolve().parents[2]
SHARED_MULTI30K = ROOT.parent / "shared" / "data" / "multi30k"
ON_CI = os.environ.get("CI", "").lower() in ("true", "1")

# A 1+2-layer model of width 32 on a 300-piece vocabulary, 3 training steps: enough to have real weights,
# decoding at most 6 tokens so that every request is quick.
MICRO = ["model.preset=tiny", "model.d_model=32", "model.n_heads=2", "model.n_encoder_layers=1",
         "model.n_decoder_layers=2", "model.d_ff=64", "data.vocab_size=300", "data.train_subset=200",
         "data.max_tokens=400", "train.eval_subset=4", "train.final_eval=false", "train.progress=false",
         "decode.max_len_a=0", "decode.max_len_b=6"]


@pytest.fixture(scope="session")
def micro_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (SHARED_MULTI30K / "train.de.gz").is_file():
        pytest.skip(f"shared Multi30k copy not found at {SHARED_MULTI30K}")
    run = tmp_path_factory.mktemp("explorer") / "micro"
    args = ["train", "--run-dir", str(run), "--data-dir", str(SHARED_MULTI30K), "--max-steps", "3", "--no-progress"]
    assert translator_main(args + [a for o in MICRO for a in ("--set", o)]) == 0
    return run


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-layer character GPT (``models/gpt.py``) trained for 3 iterations on Tiny Shakespeare."""
    from models.lm import data
    from models.lm.__main__ import main as lm_main

    if not (data.SHARED_DIR / data.FILE_NAME).is_file():
        pytest.skip(f"shared Tiny Shakespeare copy not found at {data.SHARED_DIR}")
    run = tmp_path_factory.mktemp("explorer") / "gpt"
    tiny = {"model.n_layer": 1, "model.n_embd": 16, "model.n_head": 2, "data.block_size": 16, "data.batch_size": 4,
            "train.eval_iters": 1, "train.eval_every": 3, "train.checkpoint_every": 3, "train.warmup": 1}
    args = ["train", "--run-dir", str(run), "--max-iters", "3", "--no-progress"]
    assert lm_main(args + [a for k, v in tiny.items() for a in ("--set", f"{k}={v}")]) == 0
    return run


@pytest.fixture(scope="session")
def session(micro_run: Path) -> TranslatorSession:
    loaded = load_session(micro_run)
    assert isinstance(loaded, TranslatorSession)
    return loaded


@pytest.fixture(scope="session")
def server(micro_run: Path, lm_run: Path) -> Iterator[str]:
    """``python -m models.explorer -c <micro run> -c <gpt run> --port 0`` in a subprocess; yields its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "models.explorer", "-c", str(micro_run), "-c", str(lm_run),
                             "--port", "0"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if not found:
            proc.kill()
            raise AssertionError(f"the server did not print its address: {line!r} {proc.stderr.read()!r}")
        yield found.group(0)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def browser_executable(on_ci: bool) -> str:
    """The system's Chromium for Playwright; without playwright or a chromium on PATH: skip the test, or on
    CI (where ``.ci/run`` installs both) fail it."""
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "playwright is not installed (pip install playwright)"
    executable = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    if missing is None and executable is None:
        missing = "no chromium on PATH (apt-get install chromium)"
    if missing is not None:
        if on_ci:
            pytest.fail(f"CI=true but {missing}: .ci/run installs it")
        pytest.skip(missing)
    assert executable is not None
    return executable


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Chromium under Playwright (skipped without them locally, a failure on CI)."""
    executable = browser_executable(ON_CI)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield instance
        instance.close()
