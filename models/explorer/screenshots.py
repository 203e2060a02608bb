"""Screenshots of every view of the explorer, for the docs: ``docs/explorer/<view>.png``.

    python -m models.explorer.screenshots -c runs/tiny [--out docs/explorer] [--browser /usr/bin/chromium]

Starts the explorer on a free local port (``python -m models.explorer``), drives the system's Chromium
through Playwright (``pip install playwright``; Playwright's own browser download is not needed) through
each view as a user would, and saves one PNG per view.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SENTENCE = "Ein kleines Mädchen spielt im Wasser, während ihr Vater zuschaut."
PRONOUN = "\u2581ihr"  # the Inside one head view follows this token's query (else the middle one's)


def _start_server(checkpoint: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "models.explorer", "-c", checkpoint, "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    found = re.search(r"http://\S+/", proc.stdout.readline())
    if not found:
        proc.kill()
        raise SystemExit("error: the explorer did not start (see its message above)")
    return proc, found.group(0)


def _shoot(page: Any, out: Path) -> list[Path]:
    written = []

    def save(name: str) -> None:
        page.set_viewport_size({"width": 1280, "height": 860})
        wide = page.eval_on_selector_all(".view:not([hidden]) .figure",  # a wide figure: widen the window
                                         "els => Math.max(0, ...els.map(e => e.scrollWidth))")
        page.set_viewport_size({"width": max(1280, int(wide) + 60), "height": 860})
        path = out / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        written.append(path)

    page.fill("#sentence", SENTENCE)
    page.select_option("#search", "4")
    page.click("#translate-form button[type=submit]")
    page.wait_for_selector("#heatmap svg")
    page.hover("#query-tokens .token[data-index='2']")
    save("translate")
    for kind in ("encoder", "decoder"):
        page.select_option("#map-kind", kind)
        page.select_option("#map-layer", "0")
        page.hover("#query-tokens .token[data-index='2']")
        save(f"translate-{kind}")
    for view, ready in (("head", "#positional canvas"), ("beam", "#beam-tree svg"), ("next", "#next-bars .prob"),
                        ("autograd", "#graph svg")):
        page.click(f"#tabs button[data-view={view}]")
        page.wait_for_selector(ready)
        if view == "head":  # the encoder's self-attention from the pronoun, in its first layer's last head
            page.select_option("#head-kind", "encoder")
            page.select_option("#head-head", str(page.locator("#head-head option").count() - 1))
            with page.expect_response("**/api/head"):
                pick = "(os, p) => (os.find(o => o.textContent.endsWith(': ' + p)) || os[os.length >> 1]).value"
                page.select_option("#head-query", page.eval_on_selector_all("#head-query option", pick, PRONOUN))
        if view == "autograd":
            for _ in range(4):
                page.click("#step")
        save(view)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Screenshots of every view of the explorer.")
    p.add_argument("-c", "--checkpoint", required=True, help="a run directory or checkpoint file")
    p.add_argument("--out", default=str(ROOT / "docs" / "explorer"), help="folder for the PNGs")
    p.add_argument("--browser", default=shutil.which("chromium"), help="the Chromium executable")
    args = p.parse_args(argv)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("error: screenshots need Playwright: pip install playwright", file=sys.stderr)
        return 2
    if not args.browser:
        print("error: no chromium found: apt-get install chromium, or pass --browser", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    proc, url = _start_server(args.checkpoint)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=args.browser, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(url)
            for path in _shoot(page, out):
                print(path)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
