"""Draw the autograd graph behind a tensor, as Graphviz DOT source.

    import tinygrad_attn as ta
    w = ta.randn(3, 2, requires_grad=True)
    x = ta.randn(4, 3)
    loss = (x @ w).relu().sum()
    print(ta.viz.to_dot(loss, params={"w": w}))       # paste into https://dreampuf.github.io/GraphvizOnline
    ta.viz.render(loss, "graph.svg", params={"w": w})  # needs `pip install graphviz` and the `dot` program

The picture is the graph ``backward()`` walks (see ``autograd.py``), drawn in the direction the data
flowed: leaves at the top, one box per ``Function`` node, the output at the bottom. An edge a -> b
means "b's ``next_functions`` points at a": the gradient of b's input flows from b back to a.

- A Function node shows its ``name`` (``MulBackward``), its output's shape and dtype, and how much
  memory it keeps alive for backward (the arrays in its saved tensors). After ``backward()`` without
  ``retain_graph`` the saved tensors are released and the node shows ``saved 0 B (freed)``.
- A leaf node is a tensor the user made that requires grad (a parameter); pass
  ``params={"name": tensor}`` (e.g. ``dict(model.named_parameters())``) to see names instead of "leaf".
  Inputs that do not require grad are not part of the graph, so they are not drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .autograd import Function
from .tensor import Tensor

__all__ = ["to_dot", "render", "saved_bytes"]

_FUNCTION_STYLE = 'shape=box, style=filled, fillcolor="#e8e8e8"'
_LEAF_STYLE = 'shape=box, style="filled,rounded", fillcolor="#cfe2ff"'
_CONSTANT_STYLE = 'shape=box, style="filled,rounded", fillcolor="#ffffff"'
_OUTPUT_EXTRA = ', penwidth=2, color="#2f7d32"'


def saved_bytes(fn: Function) -> int:
    """Bytes of array memory ``fn`` keeps saved for backward (0 once released).

    Reads the ``SavedTensor`` records directly (no unpacking, so no version check and no error for a
    freed node). An array saved twice (``x * x`` saves x as both operands) is counted once.
    """
    seen: set[int] = set()
    total = 0
    for s in getattr(fn, "_saved", ()):
        array = s.tensor.data if s.tensor is not None else s.array
        if array is None or id(array) in seen:
            continue
        seen.add(id(array))
        total += int(getattr(array, "nbytes", 0))
    return total


def to_dot(tensor: Tensor | Sequence[Tensor], params: Mapping[str, Tensor] | None = None,
           show_saved: bool = True) -> str:
    """Graphviz DOT source of the graph behind ``tensor`` (or several output tensors).

    One node per Function (name, output shape and dtype, and with ``show_saved`` the bytes it keeps for
    backward) and one per leaf that requires grad (its name from ``params``, shape, dtype). The walk
    is iterative, so a graph of any depth works.
    """
    outputs = list(tensor) if isinstance(tensor, (list, tuple)) else [tensor]
    for t in outputs:
        if not isinstance(t, Tensor):
            raise TypeError(f"to_dot expects a Tensor (or a list of them), got {type(t).__name__}")
    names = {id(p): name for name, p in (params or {}).items()}

    ids: dict[int, str] = {}  # id(node or leaf) -> DOT node name, in discovery order
    keep: list[Any] = []  # holds what we numbered, so ids stay unique while we work
    lines: list[str] = []
    edges: list[str] = []

    def declare(obj: Any, label: str, style: str) -> str:
        node = f"n{len(ids)}"
        ids[id(obj)] = node
        keep.append(obj)
        lines.append(f'  {node} [label="{_escape(label)}", {style}];')
        return node

    def visit(obj: Any, extra: str = "") -> tuple[str, bool]:
        """The DOT name of a Function or leaf, declaring it the first time; True if it is new."""
        if id(obj) in ids:
            return ids[id(obj)], False
        if isinstance(obj, Function):
            return declare(obj, _function_label(obj, show_saved), _FUNCTION_STYLE + extra), True
        style = _LEAF_STYLE if obj.requires_grad else _CONSTANT_STYLE
        return declare(obj, _leaf_label(obj, names), style + extra), True

    stack: list[Function] = []
    for t in outputs:  # outputs first, drawn with a thick border
        root = t.grad_fn if t.grad_fn is not None else t
        _, new = visit(root, _OUTPUT_EXTRA)
        if new and isinstance(root, Function):
            stack.append(root)
    while stack:
        fn = stack.pop()
        target = ids[id(fn)]
        for nxt in fn.next_functions:
            if nxt is None:
                continue
            source, new = visit(nxt)
            edges.append(f"  {source} -> {target};")
            if new and isinstance(nxt, Function):
                stack.append(nxt)

    header = ["digraph autograd {", '  graph [rankdir=TB, fontname="Helvetica"];',
              '  node [fontname="Helvetica", fontsize=10];', '  edge [color="#555555"];']
    return "\n".join(header + lines + edges + ["}"]) + "\n"


def render(tensor: Tensor | Sequence[Tensor], path: str | Path, format: str = "svg",
           params: Mapping[str, Tensor] | None = None, show_saved: bool = True) -> Path:
    """Draw the graph behind ``tensor`` into ``path`` (``.{format}`` is appended if ``path`` has no
    suffix) with the optional ``graphviz`` package. Returns the path written."""
    try:
        import graphviz
    except ImportError as e:
        raise ImportError(
            "ta.viz.render needs the optional 'graphviz' Python package and the Graphviz 'dot' program: "
            "pip install 'tinygrad_attn[viz]' and e.g. apt-get install graphviz. "
            "ta.viz.to_dot(tensor) gives the DOT source without either."
        ) from e
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(f".{format}")
    source = graphviz.Source(to_dot(tensor, params=params, show_saved=show_saved))
    try:
        data = source.pipe(format=format)
    except graphviz.ExecutableNotFound as e:
        raise RuntimeError("ta.viz.render: the Graphviz 'dot' program was not found on PATH "
                           "(install Graphviz, e.g. apt-get install graphviz)") from e
    path.write_bytes(data)
    return path


# ---- labels --------------------------------------------------------------------------------------------


def _function_label(fn: Function, show_saved: bool) -> str:
    lines = [fn.name, f"{_shape(fn.output_shape)} {_dtype(fn.output_dtype)}"]
    if show_saved:
        lines.append(f"saved {_fmt_bytes(saved_bytes(fn))}" + (" (freed)" if fn.freed else ""))
    return "\n".join(lines)


def _leaf_label(t: Tensor, names: Mapping[int, str]) -> str:
    name = names.get(id(t), "leaf")
    grad = "requires_grad" if t.requires_grad else "no grad"
    return f"{name}\n{_shape(t.shape)} {_dtype(t.dtype)}\n{grad}"


def _shape(shape: Sequence[int]) -> str:
    return str(tuple(int(n) for n in shape))  # as ``tensor.shape`` prints: (3,), (4, 2), ()


def _dtype(dtype: Any) -> str:
    return str(dtype) if dtype is not None else "?"


def _fmt_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"
    raise AssertionError  # unreachable


def _escape(label: str) -> str:
    """DOT string escaping: backslash and quote escaped, newlines as centred line breaks."""
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
