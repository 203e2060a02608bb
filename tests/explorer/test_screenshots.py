"""The docs' screenshot script drives every view of a live explorer in Chromium and writes one PNG per view."""

import subprocess
import sys
from pathlib import Path

from models.explorer.screenshots import main
from tests.explorer.conftest import ON_CI, browser_executable

ROOT = Path(__file__).resolve().parents[2]
VIEWS = ["translate", "translate-encoder", "translate-decoder", "head", "beam", "next", "autograd"]


def test_one_png_per_view(micro_run, tmp_path):
    executable = browser_executable(ON_CI)
    # its own process, as users run it: Playwright's sync API refuses to start inside the browser fixture's
    done = subprocess.run([sys.executable, "-m", "models.explorer.screenshots", "-c", str(micro_run),
                           "--out", str(tmp_path), "--browser", executable],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tmp_path / f"{view}.png") for view in VIEWS]
    for view in VIEWS:
        header = (tmp_path / f"{view}.png").read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(header[16:20], "big") >= 1280  # the width of the window it was taken in


def test_a_missing_browser_is_named(micro_run, tmp_path, capsys):
    assert main(["-c", str(micro_run), "--out", str(tmp_path), "--browser", ""]) == 2
    assert "no chromium found" in capsys.readouterr().err
