"""The code blocks of README.md and docs/*.md run, and print what they say they print.

Conventions (for whoever writes the docs):

- Every ```python block is run. The blocks of one file run in order, in one fresh namespace, inside an
  empty temporary directory, so a page can build up state from block to block and write files freely.
- A line ending in a comment ``# -> TEXT`` states what that statement prints: the test runs the page one
  top-level statement at a time, captures what each prints, and compares it with the ``# -> `` comments
  inside that statement (joined by spaces when there are several). Runs of whitespace compare equal
  (so a multi-line tensor can be written on one line), and ``...`` in TEXT matches anything. A remark may
  follow the expected text after a second ``#``: ``print(n)  # -> 0  # released by backward``.
  Statements without such a comment may print what they like.
- A ```python block whose first line is ``# excerpt from PATH`` is a quotation of the code, not a program:
  the rest of the block must appear verbatim in PATH (relative to the repository root), so that the page
  cannot drift from the code it quotes.
- Shell blocks (```bash) and diagrams are not run: the commands download data and train for minutes.
- Every relative link and image (``[text](path)``, ``![alt](path)``) outside code blocks must name a file or
  folder that git tracks: a picture that exists only in the writer's checkout is a broken page for everyone
  else.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
EXPECT = re.compile(r"#\s*->\s?(.*?)(?:\s+#.*)?$")
EXCERPT = re.compile(r"#\s*excerpt from (\S+)\s*$")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line number of the block's first code line, code) for every ```python block."""
    return [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def _matches(expected: str, printed: str) -> bool:
    want, got = " ".join(expected.split()), " ".join(printed.split())
    pattern = ".*".join(re.escape(part) for part in want.split("..."))
    return re.fullmatch(pattern, got, re.S) is not None


def check_excerpt(path: str, body: str, where: str) -> None:
    assert body.strip() and body.rstrip("\n") in (ROOT / path).read_text(encoding="utf-8"), (
        f"{where}: the excerpt is not (any more) in {path}: copy the current code into the page")


def run_block(code: str, namespace: dict, name: str, first_line: int) -> int:
    """Run ``code`` one top-level statement at a time in ``namespace``, checking ``# ->`` comments.
    Returns how many statements had an expected output."""
    lines = code.splitlines()
    checked = 0
    for stmt in ast.parse(code).body:
        assert stmt.end_lineno is not None
        expected = [m.group(1).strip() for line in lines[stmt.lineno - 1:stmt.end_lineno]
                    if (m := EXPECT.search(line))]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(ast.Module(body=[stmt], type_ignores=[]), f"{name}:{first_line}", "exec"), namespace)
        if expected:
            checked += 1
            want = " ".join(expected)
            assert _matches(want, out.getvalue()), (
                f"{name}, line {first_line + stmt.lineno - 1}: the page says it prints\n  {want}\n"
                f"but it printed\n  {out.getvalue().strip()}")
    return checked


def run_page(text: str, name: str) -> int:
    """Run every python block of a page; returns how many printed outputs were checked."""
    namespace: dict = {"__name__": "__doc_page__"}
    checked = 0
    for line, code in python_blocks(text):
        where = f"{name}:{line}"
        first, _, body = code.partition("\n")
        if excerpt := EXCERPT.match(first.strip()):
            check_excerpt(excerpt.group(1), body, where)
        else:
            checked += run_block(code, namespace, name, line)
    return checked


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_of_the_page_run_and_print_what_they_say(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_page(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))


def test_the_pages_have_blocks_with_checked_outputs():
    """Guards against a test that passes because it found nothing to run."""
    assert {p.name for p in PAGES} >= {"README.md", "autograd.md"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    autograd = (ROOT / "docs" / "autograd.md").read_text(encoding="utf-8")
    assert len(python_blocks(readme)) >= 1 and len(python_blocks(autograd)) >= 3
    assert sum(1 for line in readme.splitlines() if EXPECT.search(line) and "print" in line) >= 4


def test_a_wrong_expected_output_fails(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    page = "```python\nx = 2\nprint(x * 3)  # -> 6\n```\n"
    assert run_page(page, "ok.md") == 1
    with pytest.raises(AssertionError, match="says it prints"):
        run_page(page.replace("# -> 6", "# -> 7"), "wrong.md")
    multi = "```python\nimport numpy as np\nprint(np.eye(2))  # -> [[1. 0.] [0. ...]]\n```\n"
    assert run_page(multi, "ellipsis.md") == 1


def test_blocks_of_a_page_share_state_and_an_error_surfaces(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_page("```python\ny = 5\n```\ntext\n```python\nprint(y)  # -> 5\n```\n", "two.md") == 1
    with pytest.raises(NameError):
        run_page("```python\nprint(undefined_name)\n```\n", "broken.md")


def test_an_excerpt_must_match_the_code():
    path = "tinygrad_attn/host_memory.py"
    good = f"```python\n# excerpt from {path}\n_M_TRIM_THRESHOLD = -1\n_M_MMAP_THRESHOLD = -3\n```\n"
    run_page(good, "good.md")
    with pytest.raises(AssertionError, match="excerpt is not"):
        run_page(good.replace("-3", "-4"), "stale.md")


def test_a_remark_may_follow_the_expected_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_page("```python\nprint(0)  # -> 0  # a remark\n```\n", "remark.md") == 1
    with pytest.raises(AssertionError, match="remark.md, line 4:"):  # the line in the page
        run_page("text\n\n```python\nprint(1)  # -> 0  # a remark\n```\n", "remark.md")


def broken_links(text: str, page: Path, tracked: set[str]) -> list[str]:
    """The relative link targets of a page (outside code blocks) that name no tracked file or folder."""
    broken = []
    for target in LINK.findall(FENCE.sub("", text)):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):  # https:, mailto:, an anchor of the page
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else None
        if rel is None or not (rel in tracked or any(f.startswith(rel.rstrip("/") + "/") for f in tracked)):
            broken.append(target)
    return broken


def tracked_files() -> set[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: which files are shipped is unknown")
    return set(out.splitlines())


@pytest.mark.parametrize("page", [*PAGES, ROOT / "benchmarks" / "README.md"], ids=lambda p: str(p.relative_to(ROOT)))
def test_links_of_the_page_name_tracked_files(page):
    assert broken_links(page.read_text(encoding="utf-8"), page, tracked_files()) == []


def test_a_link_to_an_untracked_file_is_broken():
    page = ROOT / "docs" / "page.md"
    text = "![a view](explorer/view.png) [code](../models/) [web](https://example.org) [here](#top)\n"
    text += "```bash\n[not a link](nowhere.png)\n```\n"
    assert broken_links(text, page, {"docs/explorer/view.png", "models/bert.py"}) == []
    assert broken_links(text, page, {"models/bert.py"}) == ["explorer/view.png"]
    assert broken_links("[up](../../elsewhere.md)", page, {"models/bert.py"}) == ["../../elsewhere.md"]
