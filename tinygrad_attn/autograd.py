"""Reverse-mode automatic differentiation: the graph, the Function node, and the backward engine.

Every op is a subclass of ``Function``. Calling ``SomeOp.apply(x, y)``

1. runs ``forward`` on the raw arrays (fast: plain NumPy/CuPy calls),
2. wraps the result in a Tensor whose ``grad_fn`` is the Function instance (only when grad mode is on,
   some input requires grad and the output is floating point: otherwise nothing is recorded), and
3. remembers, in ``next_functions``, where each input's gradient must go next: the input's own
   ``grad_fn``, or the input itself if it is a leaf that requires grad.

That is the whole graph: Function nodes pointing backwards at the nodes that made their inputs.
``loss.backward()`` walks it from the loss towards the leaves (``run_backward``): each node's
``backward`` turns the gradient of its output into gradients of its inputs (the chain rule, one local
derivative at a time), and the engine adds up the contributions that meet at a node before calling it.

``backward`` is written with Tensor ops, not raw arrays. Normally it runs under ``no_grad``: it does the
same array work as hand-written NumPy, but each Tensor op in it is a full ``Function.apply`` taking its
early return, microseconds of Python per op, which dominates on small tensors (the fused ops therefore do
their backward in one backward ``Function`` whose forward is array code). With ``create_graph=True`` it
records a graph of its own, and that graph can be differentiated again: gradients of gradients come for free.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from numpy import ndarray as _ndarray

from .backend import array_module, device_of, on_device_of

if TYPE_CHECKING:
    from .tensor import Tensor

# --------------------------------------------------------------------------------------------------
# Grad mode: is the graph being recorded?
# --------------------------------------------------------------------------------------------------

_grad_enabled = True


def is_grad_enabled() -> bool:
    """True while ops record the graph (the default); False inside ``no_grad``."""
    return _grad_enabled


class set_grad_enabled:
    """Context manager and decorator that turns graph recording on or off, restoring it on exit."""

    def __init__(self, mode: bool) -> None:
        self.mode = bool(mode)

    def __enter__(self) -> None:
        global _grad_enabled
        self.prev, _grad_enabled = _grad_enabled, self.mode

    def __exit__(self, *exc: object) -> None:
        global _grad_enabled
        _grad_enabled = self.prev

    def __call__(self, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with set_grad_enabled(self.mode):
                return fn(*args, **kwargs)

        return wrapper


class no_grad(set_grad_enabled):
    """``with ta.no_grad():`` (or ``@ta.no_grad()``): run ops without recording a graph."""

    def __init__(self) -> None:
        super().__init__(False)


class enable_grad(set_grad_enabled):
    """Turn recording back on inside a ``no_grad`` block."""

    def __init__(self) -> None:
        super().__init__(True)


# --------------------------------------------------------------------------------------------------
# Version counters and saved tensors: catching in-place changes to what backward needs
# --------------------------------------------------------------------------------------------------


class VersionCounter:
    """How many times a tensor's memory was changed in place. Views share their base's counter."""

    __slots__ = ("value", "saved")

    def __init__(self) -> None:
        self.value = 0
        self.saved = False  # has a Function kept this memory for backward?


class SavedTensor:
    """A tensor kept for backward, with the version it had when it was saved.

    Three kinds: an input of the op (kept as the Tensor, so gradients of gradients can flow through it),
    the op's own output (kept as the bare array: keeping the Tensor would make a cycle
    output -> grad_fn -> saved output; the Tensor is rebuilt on unpacking), or an intermediate array
    computed in forward (a constant to autograd).
    """

    __slots__ = ("tensor", "array", "version", "counter", "is_output")

    def __init__(self, tensor: Tensor | None, array: Any, counter: VersionCounter | None, is_output: bool):
        self.tensor, self.array, self.counter, self.is_output = tensor, array, counter, is_output
        self.version = counter.value if counter is not None else 0
        if counter is not None:
            counter.saved = True

    def unpack(self, node: Function) -> Tensor:
        if self.counter is not None and self.counter.value != self.version:
            raise RuntimeError(
                f"one of the tensors that {node.name} saved for backward was modified by an in-place "
                f"operation (it is at version {self.counter.value}, it was saved at version {self.version}). "
                "Use the out-of-place form of the op that changed it (e.g. x = x + 1 instead of x += 1)."
            )
        if self.tensor is not None:
            return self.tensor
        Tensor = _tensor_module.Tensor
        if self.is_output:
            assert self.counter is not None  # _save gives an output its version counter
            out = Tensor._make(self.array, requires_grad=True, grad_fn=node)
            out._version = self.counter
            return out
        return Tensor._make(self.array)


# --------------------------------------------------------------------------------------------------
# Function: one op, one node of the graph
# --------------------------------------------------------------------------------------------------


class Function:
    """Base class of every differentiable op.

    A subclass writes two methods:

    - ``forward(self, *arrays, **params) -> array``: compute the output from the inputs' arrays, and call
      ``self.save_for_backward(...)`` with exactly the arrays backward will need (inputs, the output, or
      intermediates); nothing else is kept alive.
    - ``backward(self, grad) -> grad_input or tuple of them``: given the gradient of the loss with
      respect to the output (a Tensor), return the gradient with respect to each tensor input (a Tensor,
      or None where ``self.needs_input_grad[i]`` is False). Write it with Tensor ops, so that it is
      differentiable in turn.

    Every tensor argument of ``apply`` is positional; options (dims, shapes, flags) are keywords.
    """

    # Class-level defaults: an op node is made once per op call, so it sets only what differs from these.
    needs_input_grad: tuple[bool, ...] = ()
    next_functions: tuple[Any, ...] = ()
    output_shape: tuple[int, ...] = ()
    output_dtype: Any = None
    hooks: Sequence[Callable] = ()  # gradient hooks of the output tensor (register_hook makes it a list)
    retain_hook: Callable | None = None  # set by retain_grad; runs after the user's hooks
    freed = False
    _to_save: tuple[Any, ...] = ()
    _saved: tuple[SavedTensor, ...] = ()

    @property
    def name(self) -> str:
        return type(self).__name__ + "Backward"

    # ---- what subclasses implement ----------------------------------------------------------------
    def forward(self, *arrays: Any, **params: Any) -> Any:
        raise NotImplementedError

    def backward(self, grad: Tensor) -> Tensor | None | tuple[Tensor | None, ...]:
        raise NotImplementedError

    # ---- saving for backward ----------------------------------------------------------------------
    def save_for_backward(self, *arrays: Any) -> None:
        """Called in ``forward`` with the arrays backward needs; read them back as ``saved_tensors``."""
        self._to_save = arrays

    @property
    def saved_tensors(self) -> tuple[Tensor, ...]:
        """The saved arrays as Tensors: inputs and the output stay connected to the graph."""
        if self.freed:
            raise RuntimeError(
                f"trying to backward through {self.name} a second time, but its saved tensors were "
                "already freed. Pass retain_graph=True to the first backward() (or autograd.grad) "
                "if you need to backward through the graph twice."
            )
        return tuple([s.unpack(self) for s in self._saved])

    def release(self) -> None:
        """Drop everything saved for backward (called once the engine has used this node)."""
        self._saved = ()
        self.freed = True

    # ---- recording --------------------------------------------------------------------------------
    @classmethod
    def apply(cls, *inputs: Tensor, **params: Any) -> Tensor:
        """Run the op on tensors and, if grad mode is on and any input requires grad, record it in the graph
        (a non-floating-point output is never recorded: it has no gradient)."""
        Tensor = _tensor_module.Tensor
        record = False
        on_cpu = True  # every input a NumPy array: then all are on the one CPU device
        arrays, requires, nexts = [], [], []  # per input: its array, requires_grad, where its gradient goes
        for t in inputs:
            if type(t) is not Tensor and not isinstance(t, Tensor):
                raise TypeError(f"{cls.__name__} expects Tensor inputs, got {type(t).__name__}")
            data = t.data
            arrays.append(data)
            requires_grad = t.requires_grad
            requires.append(requires_grad)
            if requires_grad:
                record = True
                nexts.append(t.grad_fn if t.grad_fn is not None else t)
            else:
                nexts.append(t.grad_fn)  # None for a tensor that needs no gradient
            if type(data) is not _ndarray:
                on_cpu = False
            if t._base is not None and t._base.grad_fn is not t._base_fn and _grad_enabled:
                raise RuntimeError(
                    f"{cls.__name__}: an input of shape {tuple(t.shape)} is a view of a tensor that was changed "
                    "in place (with autograd recording) after the view was made, so the view's graph is stale. "
                    "Take the view again after the in-place change."
                )
        record = record and _grad_enabled
        if not on_cpu and len(inputs) > 1:
            _check_same_device(cls.__name__, inputs)
        fn = cls()
        if record:
            fn.needs_input_grad = tuple(requires)
        elif len(inputs) < len(_NO_GRADS):
            fn.needs_input_grad = _NO_GRADS[len(inputs)]
        else:
            fn.needs_input_grad = (False,) * len(inputs)
        if on_cpu:
            raw = fn.forward(*arrays, **params)
        else:  # a GPU computes on its current device: make it the inputs' (cuda:1 data launches on GPU 1)
            with on_device_of(arrays[0]):
                raw = fn.forward(*arrays, **params)
        if type(raw) is _ndarray or (hasattr(raw, "shape") and hasattr(raw, "__array_priority__")):
            out_data = raw
        else:
            out_data = _as_array(raw)
        if not record or out_data.dtype.kind != "f":  # integer/bool results carry no gradient
            return Tensor._make(out_data)
        out = Tensor._make(out_data, True, fn)
        fn.next_functions = tuple(nexts)
        fn.output_shape, fn.output_dtype = out_data.shape, out_data.dtype
        if fn._to_save:
            fn._saved = tuple([_save(a, inputs, raw, out) for a in fn._to_save])
            fn._to_save = ()
        return out


_NO_GRADS = tuple((False,) * n for n in range(8))  # needs_input_grad of an op that records nothing


def _as_array(x: Any) -> Any:
    """Reductions of NumPy arrays to a scalar return NumPy scalars; tensors always hold arrays."""
    return array_module(x).asarray(x)


def _save(array: Any, inputs: Sequence[Tensor], raw_out: Any, out: Tensor) -> SavedTensor:
    for t in inputs:
        if array is t.data:
            return SavedTensor(t, None, t._version, is_output=False)
    if array is raw_out or array is out.data:
        return SavedTensor(None, out.data, out._version, is_output=True)
    return SavedTensor(None, array, None, is_output=False)


def _check_same_device(op: str, inputs: Sequence[Tensor]) -> None:
    devices = [device_of(t.data) for t in inputs]
    if any(d != devices[0] for d in devices):
        names = ", ".join(f"{str(d)} {tuple(t.shape)}" for d, t in zip(devices, inputs))
        raise RuntimeError(
            f"{op}: expected all tensors on the same device, got {names}. Move them with .to(device)."
        )


# --------------------------------------------------------------------------------------------------
# The backward engine
# --------------------------------------------------------------------------------------------------


def run_backward(
    outputs: Sequence[Tensor],
    grad_outputs: Sequence[Tensor],
    retain_graph: bool,
    create_graph: bool,
    inputs: Sequence[Tensor] | None = None,
) -> list[Tensor | None] | None:
    """Propagate ``grad_outputs`` from ``outputs`` back through the graph.

    With ``inputs=None`` gradients are accumulated into the ``.grad`` of every leaf reached (what
    ``Tensor.backward`` does); otherwise they are returned for ``inputs`` and no ``.grad`` is touched
    (what ``grad`` does).

    The walk is iterative, so graph depth is limited only by memory. First count, for every node
    reachable from the outputs, how many edges lead into it (its consumers). Then process nodes whose
    consumers have all been processed (Kahn's algorithm): by then its gradient is complete.
    """
    tensor_cls = _tensor_module.Tensor  # not named Tensor: the nested functions' annotations mean the type
    wanted_leaves = {id(t) for t in inputs if t.grad_fn is None} if inputs is not None else None
    capture_node: dict[Function, Tensor | None] = (
        {t.grad_fn: None for t in inputs if t.grad_fn is not None} if inputs is not None else {})
    handed_out: set[int] = {id(g.data) for g in grad_outputs}  # arrays a leaf .grad must not alias
    # Gradients meeting at a node or a leaf are summed before it runs (a leaf's hooks see the whole gradient).
    # Without create_graph the sum is array code: the first sum makes a new array that only the engine holds
    # ("owned"), and later contributions are added into it in place.
    grads: dict[Function, Tensor] = {}
    owned: set[Function] = set()
    leaf_grads: dict[int, tuple[Tensor, Tensor, bool]] = {}

    def add(a: Tensor, b: Tensor, a_owned: bool) -> Tensor:
        if create_graph:
            return a + b
        if type(a.data) is not _ndarray:
            with on_device_of(a.data):
                return _add_arrays(tensor_cls, a, b, a_owned)
        return _add_arrays(tensor_cls, a, b, a_owned)

    def collect_for_leaf(leaf: Tensor, g: Tensor) -> None:
        if wanted_leaves is not None and id(leaf) not in wanted_leaves:
            return
        prev = leaf_grads.get(id(leaf))
        leaf_grads[id(leaf)] = (leaf, g, False) if prev is None else (leaf, add(prev[1], g, prev[2]), True)

    def deliver_to_leaf(leaf: Tensor, g: Tensor) -> Tensor:
        for hook in leaf._hooks:
            g = _run_hook(hook, g, leaf.shape)
        if inputs is not None:
            return g
        with on_device_of(g.data):
            if not create_graph:
                g = tensor_cls._make(_own(g.data, handed_out))
            if leaf.grad is None:
                leaf.grad = g
            else:
                leaf.grad = leaf.grad + g if create_graph else tensor_cls._make(leaf.grad.data + g.data)
        return g

    with set_grad_enabled(create_graph):
        roots: list[Function] = []
        for t, g_out in zip(outputs, grad_outputs):
            if t.grad_fn is None:
                if t.requires_grad:
                    collect_for_leaf(t, g_out)
                continue
            if t.grad_fn in grads:
                grads[t.grad_fn] = add(grads[t.grad_fn], g_out, t.grad_fn in owned)
                owned.add(t.grad_fn)
            else:
                grads[t.grad_fn] = g_out
                roots.append(t.grad_fn)

        # 1. count the consumers of every reachable node (a node's count exists once it is seen)
        consumers: dict[Function, int] = dict.fromkeys(roots, 0)
        stack = list(roots)
        while stack:
            for nxt in stack.pop().next_functions:
                if isinstance(nxt, Function):
                    if nxt in consumers:
                        consumers[nxt] += 1
                    else:
                        consumers[nxt] = 1
                        stack.append(nxt)

        # grad(): only nodes on a path to a requested input run (the rest stay untouched, not freed)
        useful = _leading_to(roots, wanted_leaves, capture_node) if wanted_leaves is not None else None

        # 2. process nodes once all their consumers are done
        ready = [n for n in roots if consumers[n] == 0]
        while ready:
            node = ready.pop()
            g = grads.pop(node, None)
            if g is not None and useful is not None and node not in useful:
                if node in capture_node:
                    capture_node[node] = _hooked(node, g)
                g = None
            if g is not None:
                if node.hooks or node.retain_hook is not None:
                    g = _hooked(node, g)
                if capture_node and node in capture_node:
                    capture_node[node] = g
                if node.freed:
                    node.saved_tensors  # raises the "backward a second time" error  # noqa: B018
                if type(g.data) is _ndarray:
                    input_grads = node.backward(g)
                else:
                    with on_device_of(g.data):
                        input_grads = node.backward(g)
                if not isinstance(input_grads, tuple):
                    input_grads = (input_grads,)
                if len(input_grads) != len(node.next_functions):
                    raise RuntimeError(f"{node.name} returned {len(input_grads)} gradients for "
                                       f"{len(node.next_functions)} inputs")
                if not retain_graph:
                    node.release()
            else:  # no gradient reached this node (e.g. every path to it was non-differentiable)
                input_grads = (None,) * len(node.next_functions)
            for nxt, gi in zip(node.next_functions, input_grads):
                if nxt is None:
                    continue
                if isinstance(nxt, Function):
                    if gi is not None:
                        data = gi.data
                        if data.shape != nxt.output_shape or (data.dtype is not nxt.output_dtype
                                                              and data.dtype != nxt.output_dtype):
                            gi = _check_grad(node, nxt.output_shape, nxt.output_dtype, gi)
                        if nxt in grads:
                            grads[nxt] = add(grads[nxt], gi, nxt in owned)
                            owned.add(nxt)
                        else:
                            grads[nxt] = gi
                    count = consumers[nxt] - 1
                    consumers[nxt] = count
                    if count == 0:
                        ready.append(nxt)
                        owned.discard(nxt)
                elif gi is not None:
                    collect_for_leaf(nxt, _check_grad(node, nxt.data.shape, nxt.data.dtype, gi))
        delivered = {key: deliver_to_leaf(leaf, g) for key, (leaf, g, _) in leaf_grads.items()}
    if inputs is None:
        return None
    return [capture_node.get(t.grad_fn) if t.grad_fn is not None else delivered.get(id(t)) for t in inputs]


def _add_arrays(tensor_cls: type[Tensor], a: Tensor, b: Tensor, a_owned: bool) -> Tensor:
    """a + b as array code: into a's memory if the engine made it (``owned``), else into a new array."""
    if a_owned:
        a.data += b.data
        return a
    return tensor_cls._make(a.data + b.data)


def _leading_to(roots: Sequence[Function], leaves: set[int], targets: dict) -> set[Function]:
    """The nodes from which some target node or leaf (by id) is reachable: the ones ``grad`` must run.

    A depth-first walk that marks a node once all of its inputs' nodes are decided (post-order),
    iterative like the engine."""
    useful: set[Function] = set()
    visited: set[Function] = set()
    stack: list[tuple[Function, bool]] = [(r, False) for r in roots]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            if any(nxt in useful or nxt in targets if isinstance(nxt, Function) else
                   nxt is not None and id(nxt) in leaves for nxt in node.next_functions):
                useful.add(node)
        elif node not in visited:
            visited.add(node)
            stack.append((node, True))
            stack.extend((nxt, False) for nxt in node.next_functions
                         if isinstance(nxt, Function) and nxt not in visited)
    return useful


def _hooked(node: Function, g: Tensor) -> Tensor:
    """Run the hooks of a node's output tensor on its gradient (then retain_grad's, on the final value)."""
    for hook in node.hooks:
        g = _run_hook(hook, g, node.output_shape)
    if node.retain_hook is not None:
        node.retain_hook(g)
    return g


def _run_hook(hook: Callable, g: Tensor, shape: tuple[int, ...]) -> Tensor:
    result = hook(g)
    if result is None:
        return g
    if tuple(result.shape) != tuple(shape):
        raise RuntimeError(f"a gradient hook returned shape {tuple(result.shape)}, expected {tuple(shape)}")
    return result


def _own(array: Any, handed_out: set[int]) -> Any:
    """A leaf's ``.grad`` must be writable memory of its own: optimizers update it in place. (Only NumPy arrays
    have a ``writeable`` flag; CuPy's broadcast views are writable, and caught by their zero strides.)"""
    if id(array) in handed_out or 0 in array.strides or (isinstance(array, _ndarray) and not array.flags.writeable):
        array = array.copy()
    handed_out.add(id(array))
    return array


def _check_grad(node: Function, shape: tuple[int, ...], dtype: Any, g: Tensor) -> Tensor:
    """An op's backward must return gradients shaped like its inputs; say which op did not. A gradient in
    another dtype (a float32 input of an op that computed in float64) is cast back to the input's dtype."""
    data = g.data
    if data.shape != shape and tuple(data.shape) != tuple(shape):
        raise RuntimeError(f"{node.name} returned a gradient of shape {tuple(data.shape)} for an input of "
                           f"shape {tuple(shape)} (this is a bug in that op)")
    return g if data.dtype == dtype else g.to(dtype)


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------


def _as_list(x: Any) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _default_grads(outputs: list[Tensor], grad_outputs: list[Any]) -> list[Tensor]:
    Tensor = _tensor_module.Tensor
    result = []
    for t, g in zip(outputs, grad_outputs):
        if not t.requires_grad:
            raise RuntimeError(
                f"element of the outputs (shape {tuple(t.shape)}) does not require grad and has no grad_fn: "
                "did you create it under no_grad, or from tensors without requires_grad=True?"
            )
        if g is None:
            if t.numel() != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs, but the output has shape "
                    f"{tuple(t.shape)}: pass gradient= (a tensor of that shape), or reduce it first (e.g. .sum())"
                )
            with on_device_of(t.data):
                g = Tensor._make(t.xp.ones_like(t.data))
        elif not isinstance(g, Tensor):
            with on_device_of(t.data):
                g = Tensor._make(t.xp.asarray(g, dtype=t.dtype))
        if tuple(g.shape) != tuple(t.shape):
            raise RuntimeError(f"gradient has shape {tuple(g.shape)} but the output has shape {tuple(t.shape)}")
        result.append(g if g.dtype == t.dtype else g.to(t.dtype))
    return result


def backward(tensors: Tensor | Sequence[Tensor], grad_tensors: Any = None, retain_graph: bool | None = None,
             create_graph: bool = False) -> None:
    """Accumulate d(tensors)/d(leaf) into the ``.grad`` of every leaf that requires grad."""
    outputs = _as_list(tensors)
    grads = _default_grads(outputs, _as_list(grad_tensors) if grad_tensors is not None else [None] * len(outputs))
    run_backward(outputs, grads, create_graph if retain_graph is None else retain_graph, create_graph)


def grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Tensor | Sequence[Tensor],
    grad_outputs: Any = None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
) -> tuple[Tensor | None, ...]:
    """Return d(outputs)/d(inputs) without touching any ``.grad``. With ``create_graph=True`` the result
    is itself differentiable (Hessian-vector products, gradient penalties)."""
    outs, ins = _as_list(outputs), _as_list(inputs)
    for i, t in enumerate(ins):
        if not t.requires_grad:
            raise RuntimeError(f"input {i} (shape {tuple(t.shape)}) does not require grad")
    gos = _default_grads(outs, _as_list(grad_outputs) if grad_outputs is not None else [None] * len(outs))
    result = run_backward(outs, gos, create_graph if retain_graph is None else retain_graph, create_graph, ins)
    assert result is not None
    for i, g in enumerate(result):
        if g is None and not allow_unused:
            raise RuntimeError(f"input {i} (shape {tuple(ins[i].shape)}) was not used to compute the outputs; "
                               "pass allow_unused=True if that is expected")
    return tuple(result)


def weak_hook_target(tensor: Tensor) -> Callable[[], Tensor | None]:
    """A weak reference for hooks that must point back at a tensor without keeping it alive."""
    return weakref.ref(tensor)


# Tensor imports this module, and we need Tensor only at call time: import it last.
from . import tensor as _tensor_module  # noqa: E402
