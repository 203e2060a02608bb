"""The import graph of tinygrad_attn/ and models/: the framework never imports the models, and the models'
modules import each other one way only (no cycle, not even through an import inside a function).

Every ``import`` and ``from ... import`` statement is read from the source (``ast``), at module level or
inside a function, relative imports resolved; an edge goes to the deepest module of the two packages that
the statement names (``from models.translator import config`` -> ``models.translator.config``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tinygrad_attn", "models")


def _module_files() -> dict[str, Path]:
    files = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join(parts)] = path
    return files


FILES = _module_files()


def _named(target: str) -> str | None:
    """The deepest module of ours that the dotted name ``target`` is or lies in, else None."""
    parts = target.split(".")
    while parts and ".".join(parts) not in FILES:
        parts.pop()
    return ".".join(parts) or None


def imports_of(module: str) -> set[str]:
    """The modules of ours that ``module`` imports, anywhere in its source."""
    path = FILES[module]
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # from . import x, from ..y import z
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" for alias in node.names]  # a submodule, or a name in base
        else:
            continue
        found.update(m for m in map(_named, targets) if m is not None and m != module)
    return found


GRAPH = {module: imports_of(module) for module in FILES}


def cycles(modules: set[str]) -> list[list[str]]:
    """The import cycles among ``modules``: each strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(GRAPH[v] & modules):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = [stack.pop()]
            while group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return found


def _in(package: str) -> set[str]:
    return {m for m in FILES if m == package or m.startswith(package + ".")}


def test_the_graph_sees_module_level_function_level_and_relative_imports():
    """The reader finds what is there (else the tests below would pass on an empty graph)."""
    assert {"models.translator.step", "models.translator.parallel", "models.transformer"} <= \
        GRAPH["models.translator.train"]
    assert "models.translator.plots" in GRAPH["models.translator.train"]  # imported inside a function
    assert "tinygrad_attn.tensor" in GRAPH["tinygrad_attn"]  # tinygrad_attn/__init__.py: from .tensor import ...
    assert len(_in("models.translator")) >= 14


def test_the_models_import_each_other_one_way():
    assert cycles(_in("models")) == []


def test_tinygrad_attn_never_imports_the_models():
    offending = sorted((m, d) for m in _in("tinygrad_attn") for d in GRAPH[m] if d in _in("models"))
    assert offending == []
