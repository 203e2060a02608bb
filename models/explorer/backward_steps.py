"""The autograd view: evaluate a parsed expression over small named tensors, draw its graph, and watch
``backward()`` deliver each gradient.

``evaluate`` maps the tree of ``expression.parse`` onto ``tinygrad_attn`` ops (and only those: the
operations of the grammar). ``backward_steps`` then describes the graph the way ``ta.viz.to_dot`` does
(``ta.viz.graph``: op, output shape and dtype, bytes saved for backward), hangs a hook on every node and
leaf, and runs ``backward()`` once: the hooks fire in the engine's own order (a node fires when all its
consumers have passed their gradients back, Kahn's algorithm; a leaf once its contributions are summed),
so the list of steps is the walk itself, each with the gradient that arrived.
"""

from __future__ import annotations

from typing import Any

import numpy as np

import tinygrad_attn as ta
import tinygrad_attn.functional as F
from models.explorer.expression import ExpressionError, Node, parse
from tinygrad_attn import Tensor, viz
from tinygrad_attn.autograd import Function

__all__ = ["TENSORS", "make_tensors", "evaluate", "backward_steps"]

# The view's tensors: name -> (shape, what it stands for). Values are fixed (seeded) so a page reload
# shows the same numbers.
TENSORS: dict[str, tuple[tuple[int, ...], str]] = {
    "x": ((2, 3), "a batch of 2 inputs with 3 features"),
    "w": ((3, 2), "a weight matrix, 3 features -> 2"),
    "b": ((2,), "a bias"),
    "y": ((2, 2), "targets"),
}


def make_tensors() -> dict[str, Tensor]:
    """Fresh leaves (requires_grad) with the view's fixed values, rounded to one decimal to read easily."""
    rng = np.random.default_rng(0)
    return {name: ta.tensor(np.round(rng.normal(size=shape), 1).astype(np.float32), requires_grad=True)
            for name, (shape, _) in TENSORS.items()}


def evaluate(tree: Node, tensors: dict[str, Tensor]) -> Tensor | float:
    """The value of ``tree``: numbers stay Python floats until they meet a tensor."""
    kind = tree[0]
    if kind == "number":
        return float(tree[1])
    if kind == "tensor":
        return tensors[tree[1]]
    if kind == "neg":
        return -evaluate(tree[1], tensors)
    if kind == "pow":
        return evaluate(tree[1], tensors) ** tree[2]
    if kind == "call":
        x = evaluate(tree[2], tensors)
        if not isinstance(x, Tensor):
            raise ExpressionError(f"{tree[1]}() needs a tensor, got the number {x:g}")
        return _FUNCTIONS[tree[1]](x)
    op, left, right = tree[1], evaluate(tree[2], tensors), evaluate(tree[3], tensors)
    if op == "@":
        if not (isinstance(left, Tensor) and isinstance(right, Tensor)):
            raise ExpressionError("@ multiplies two tensors (matrix product), not a number")
        return left @ right
    if op == "+":
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    return left / right


_FUNCTIONS = {
    "relu": lambda t: t.relu(), "tanh": lambda t: t.tanh(), "sigmoid": lambda t: t.sigmoid(),
    "exp": lambda t: t.exp(), "log": lambda t: t.log(), "sum": lambda t: t.sum(), "mean": lambda t: t.mean(),
    "softmax": lambda t: F.softmax(t, dim=-1),
}


def backward_steps(text: str) -> dict[str, Any]:
    """Parse and evaluate ``text``, then ``backward()`` from its result (a non-scalar result starts from a
    gradient of ones, as ``y.sum().backward()`` would). Returns the tensors, the graph (``nodes``: kind,
    label, shape, dtype, saved bytes, value; ``edges``: [from, to] in the data's direction) and ``steps``:
    in backward's order, the node that received its gradient and that gradient."""
    tensors = make_tensors()
    tree = parse(text, tuple(tensors))
    with ta.enable_grad():
        try:
            out = evaluate(tree, tensors)
        except (ValueError, RuntimeError, TypeError) as e:
            raise ExpressionError(str(e)) from e
        if not isinstance(out, Tensor):
            raise ExpressionError("the expression is a number: use at least one tensor "
                                  f"({', '.join(tensors)}) so there is something to differentiate")
        nodes, edges, _ = viz.graph(out)
        names = {id(t): name for name, t in tensors.items()}
        described = [_describe(obj, names) for obj in nodes]
        steps: list[dict[str, Any]] = []
        for i, obj in enumerate(nodes):
            hook = _recorder(steps, i)
            if isinstance(obj, Function):
                obj.hooks = [*obj.hooks, hook]  # a node's hooks start as a shared empty tuple
            elif obj.requires_grad:
                obj.register_hook(hook)
        out.backward(ta.ones_like(out))
    for node, obj in zip(described, nodes):
        node["saved_after"] = viz.saved_bytes(obj) if isinstance(obj, Function) else 0
    return {"expression": text, "tensors": {name: _values(t) for name, t in tensors.items()},
            "nodes": described, "edges": [list(e) for e in edges], "steps": steps, "output": _values(out),
            "saved_total": sum(n["saved"] for n in described)}


def _recorder(steps: list[dict[str, Any]], node: int) -> Any:
    def record(grad: Tensor) -> None:
        steps.append({"node": node, "grad": _values(grad)})
    return record


def _describe(obj: Any, names: dict[int, str]) -> dict[str, Any]:
    if isinstance(obj, Function):
        return {"kind": "op", "label": obj.name, "shape": list(obj.output_shape), "dtype": str(obj.output_dtype),
                "saved": viz.saved_bytes(obj)}
    return {"kind": "leaf", "label": names.get(id(obj), "leaf"), "shape": list(obj.shape), "dtype": str(obj.dtype),
            "saved": 0}


def _values(t: Tensor) -> Any:
    return np.round(t.numpy().astype(np.float64), 4).tolist()
