"""Draw the autograd graph behind a tensor, as Graphviz DOT source.

    import tinygrad_attn as ta
    w = ta.randn(3, 2, requires_grad=True)
    x = ta.randn(4, 3)
    loss = (x @ w).relu().sum()
    print(ta.viz.to_dot(loss, params={"w": w}))       # paste into https://dreampuf.github.io/GraphvizOnline
    ta.viz.render(loss, "graph.svg", params={"w": w})  # needs `pip install graphviz` and the `dot` program

Draw it *before* ``loss.backward()``: backward (without ``retain_graph``) releases what each node saved,
and the drawing then shows ``saved 0 B (freed)`` everywhere.

The picture is the graph ``backward()`` walks (see ``autograd.py``), drawn in the direction the data
flowed: leaves at the top, one box per ``Function`` node, the output at the bottom. An arrow a -> b means
"a's value went into b" (b's ``next_functions`` points at a); the gradient travels the arrows in reverse.
A legend under the graph says so, with the colours and the total memory saved for backward.

- A Function node (grey) shows its ``name`` (``MulBackward``), its output's shape and dtype, and how much
  memory it keeps alive for backward (the arrays in its saved tensors). After ``backward()`` without
  ``retain_graph`` the saved tensors are released and the node shows ``saved 0 B (freed)``.
- A leaf node (blue) is a tensor the user made that requires grad (a parameter); pass
  ``params={"name": tensor}`` (e.g. ``dict(model.named_parameters())``) to see names instead of "leaf".
  Inputs that do not require grad are not part of the graph, so they are not drawn (a white box appears
  only when the tensor drawn is itself one).
- The output (or each of several) has a thick green border.
- The legend's total counts each array once, however many nodes keep it (``h = x.exp(); h * h``: Exp
  keeps its output and Mul keeps the same array as its input).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .autograd import Function
from .tensor import Tensor

__all__ = ["to_dot", "graph", "render", "saved_bytes", "total_saved_bytes"]

_FUNCTION_STYLE = 'shape=box, style=filled, fillcolor="#e8e8e8"'
_LEAF_STYLE = 'shape=box, style="filled,rounded", fillcolor="#cfe2ff"'
_CONSTANT_STYLE = 'shape=box, style="filled,rounded", fillcolor="#ffffff"'
_OUTPUT_EXTRA = ', penwidth=2, color="#2f7d32"'
_LEGEND = ("Arrows follow the data forwards (input -> the op that used it); backward() walks them in reverse.\n"
           "Blue: a leaf that requires grad (a parameter). Grey: an op's node (its output's shape and dtype, "
           "and the bytes it keeps for backward).\nWhite: a tensor without grad. Thick green border: the output.")


def saved_bytes(fn: Function) -> int:
    """Bytes of array memory ``fn`` keeps saved for backward (0 once released).

    Reads the ``SavedTensor`` records directly (no unpacking, so no version check and no error for a
    freed node). An array saved twice (``x * x`` saves x as both operands) is counted once.
    """
    return sum(int(getattr(a, "nbytes", 0)) for a in _saved_arrays(fn).values())


def total_saved_bytes(tensor: Tensor | Sequence[Tensor]) -> int:
    """Bytes kept for backward by the whole graph behind ``tensor``, each array counted once even when
    several nodes keep it (an op's output saved by the op itself and by the op that consumes it)."""
    arrays: dict[int, Any] = {}
    for fn in _functions(_as_outputs(tensor)):
        arrays.update(_saved_arrays(fn))
    return sum(int(getattr(a, "nbytes", 0)) for a in arrays.values())


def _saved_arrays(fn: Function) -> dict[int, Any]:
    """The arrays a node keeps for backward, by id (one entry per array, however often it was saved)."""
    arrays: dict[int, Any] = {}
    for s in getattr(fn, "_saved", ()):
        array = s.tensor.data if s.tensor is not None else s.array
        if array is not None:
            arrays[id(array)] = array
    return arrays


def _as_outputs(tensor: Tensor | Sequence[Tensor]) -> list[Tensor]:
    outputs: list[Any] = list(tensor) if isinstance(tensor, (list, tuple)) else [tensor]
    for t in outputs:
        if not isinstance(t, Tensor):
            raise TypeError(f"to_dot expects a Tensor (or a list of them), got {type(t).__name__}")
    return outputs


def _functions(outputs: Sequence[Tensor]) -> list[Function]:
    """Every Function node reachable from ``outputs``, each once (an iterative walk)."""
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    seen: dict[int, Function] = {id(fn): fn for fn in stack}
    while stack:
        for nxt in stack.pop().next_functions:
            if isinstance(nxt, Function) and id(nxt) not in seen:
                seen[id(nxt)] = nxt
                stack.append(nxt)
    return list(seen.values())


def graph(tensor: Tensor | Sequence[Tensor]) -> tuple[list[Any], list[tuple[int, int]], int]:
    """The graph behind ``tensor`` (or several outputs) as ``to_dot`` draws it: ``(nodes, edges, n_outputs)``.

    ``nodes``: each Function node and leaf once, in the order a walk from the outputs meets them (the
    outputs' own nodes first: ``n_outputs`` of them; a tensor without ``grad_fn`` stands for itself);
    ``edges``: (i, j) when node i's value went into node j. The walk is iterative (any depth works)."""
    outputs = _as_outputs(tensor)
    index: dict[int, int] = {}  # id(node or leaf) -> position in nodes
    nodes: list[Any] = []  # also keeps what we numbered alive, so ids stay unique while we work
    edges: list[tuple[int, int]] = []

    def visit(obj: Any) -> tuple[int, bool]:
        """The position of a Function or leaf, numbering it the first time; True if it is new."""
        if id(obj) in index:
            return index[id(obj)], False
        index[id(obj)] = len(nodes)
        nodes.append(obj)
        return len(nodes) - 1, True

    stack: list[Function] = []
    for t in outputs:
        root = t.grad_fn if t.grad_fn is not None else t
        _, new = visit(root)
        if new and isinstance(root, Function):
            stack.append(root)
    n_outputs = len(nodes)
    while stack:
        fn = stack.pop()
        target = index[id(fn)]
        for nxt in fn.next_functions:
            if nxt is None:
                continue
            source, new = visit(nxt)
            edges.append((source, target))
            if new and isinstance(nxt, Function):
                stack.append(nxt)
    return nodes, edges, n_outputs


def to_dot(tensor: Tensor | Sequence[Tensor], params: Mapping[str, Tensor] | None = None,
           show_saved: bool = True) -> str:
    """Graphviz DOT source of the graph behind ``tensor`` (or several output tensors).

    One node per Function (name, output shape and dtype, and with ``show_saved`` the bytes it keeps for
    backward) and one per leaf that requires grad (its name from ``params``, shape, dtype), and a legend
    (what the arrows and colours mean; with ``show_saved`` the graph's total, each array counted once).
    The walk is iterative, so a graph of any depth works.
    """
    outputs = _as_outputs(tensor)
    names = {id(p): name for name, p in (params or {}).items()}
    nodes, edges, n_outputs = graph(outputs)
    lines = []
    for i, obj in enumerate(nodes):
        extra = _OUTPUT_EXTRA if i < n_outputs else ""
        if isinstance(obj, Function):
            label, style = _function_label(obj, show_saved), _FUNCTION_STYLE
        else:
            label, style = _leaf_label(obj, names), _LEAF_STYLE if obj.requires_grad else _CONSTANT_STYLE
        lines.append(f'  n{i} [label="{_escape(label)}", {style + extra}];')
    edges_dot = [f"  n{source} -> n{target};" for source, target in edges]

    legend = _LEGEND + (f"\nSaved for backward in all: {_fmt_bytes(total_saved_bytes(outputs))} "
                        "(an array kept by several nodes counted once)" if show_saved else "")
    header = ["digraph autograd {",
              f'  graph [rankdir=TB, fontname="Helvetica", fontsize=10, labelloc=b, labeljust=l, '
              f'label="{_escape(legend)}"];',
              '  node [fontname="Helvetica", fontsize=10];', '  edge [color="#555555"];']
    return "\n".join(header + lines + edges_dot + ["}"]) + "\n"


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
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}"
    raise AssertionError  # unreachable


def _escape(label: str) -> str:
    """DOT string escaping: backslash and quote escaped, newlines as centred line breaks."""
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
