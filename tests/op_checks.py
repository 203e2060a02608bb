"""A test factory: checking an op is one declaration.

    TestExp = op_tests(ta.exp, np.exp, unary(arrays(shapes())), torch_fn=lambda x: x.exp())

builds a test class whose tests draw inputs with hypothesis and check that

- ``test_forward``: the op agrees with its NumPy reference, in float64 and in float32, keeps the input
  dtype (no float32 -> float64 upcast) and the device;
- ``test_gradcheck``: its first derivatives agree with finite differences (``ta.gradcheck``, float64);
- ``test_gradgradcheck``: so do its second derivatives (``ta.gradgradcheck``). The op's outputs are squared
  first: a linear op has a zero second derivative, but the derivative of its backward with respect to the
  incoming gradient is still exercised once that gradient depends on the input;
- ``test_inputs_unchanged``: forward and backward leave the input tensors (values and version counters)
  and the index arrays alone;
- ``test_matches_torch``: with ``torch_fn``, outputs and gradients match PyTorch (skipped without torch).

The idea is MyGrad's ``fwdprop_test_factory`` / ``backprop_test_factory``. Inputs are drawn as ``Case``s:
the arrays passed positionally to the op (float arrays are differentiated; bool and int arrays such as
masks and gather indices are constants) and keyword options such as ``dim``. Options use the PyTorch
names, so ``torch_fn`` usually takes the same keywords; the NumPy reference translates them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_attn as ta

# (rtol, atol) for comparing a forward result with the float64 reference
TOL64 = (1e-10, 1e-12)
TOL32 = (1e-5, 1e-6)


@dataclass(frozen=True)
class Case:
    """One drawn input: arrays passed positionally, options passed as keywords."""

    arrays: tuple[np.ndarray, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def case(*arrays: np.ndarray, **kwargs: Any) -> Case:
    return Case(tuple(np.asarray(a) for a in arrays), kwargs)


def examples(weight: float = 1.0) -> int:
    """``max_examples`` for a test that costs ``1/weight`` times the usual: a share of the loaded profile's."""
    return max(1, round(settings.default.max_examples * weight))


# ---- strategies for the common shapes of input --------------------------------------------------------------


def unary(arrays: st.SearchStrategy[np.ndarray], **kwargs: st.SearchStrategy) -> st.SearchStrategy[Case]:
    """One array, plus keyword options each drawn from its strategy."""
    return st.builds(lambda a, kw: case(a, **kw), arrays, st.fixed_dictionaries(kwargs))


def nary(*arrays: st.SearchStrategy[np.ndarray]) -> st.SearchStrategy[Case]:
    """Several independently drawn arrays, no options."""
    return st.tuples(*arrays).map(lambda xs: case(*xs))


# ---- helpers -------------------------------------------------------------------------------------------------


def _flat(out: Any) -> list[Any]:
    """An op's result(s) as a list: a Tensor or array alone, or the items of a tuple (``split``, ``max(dim)``)."""
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _is_float(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def _tensors(c: Case, device: str, dtype: Any = np.float64, requires_grad: bool = False) -> list[ta.Tensor]:
    """The case's arrays as tensors on ``device``: float arrays cast to ``dtype`` (and requiring grad)."""
    return [ta.tensor(a.astype(dtype), device=device, requires_grad=requires_grad) if _is_float(a)
            else ta.tensor(a, device=device) for a in c.arrays]


def _float_outputs(out: Any) -> list[ta.Tensor]:
    return [o for o in _flat(out) if isinstance(o, ta.Tensor) and o.dtype.kind == "f"]


def _arrays_in(obj: Any) -> list[np.ndarray]:
    """Every NumPy array inside nested options (index tuples hold arrays)."""
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [a for item in obj for a in _arrays_in(item)]
    if isinstance(obj, dict):
        return [a for item in obj.values() for a in _arrays_in(item)]
    return []


def _upstream(outs: list[Any], seed: int = 0) -> list[np.ndarray]:
    """Random upstream gradients, one per output: a fixed direction to compare backward passes along."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(tuple(o.shape)) for o in outs]


def check_close(got: ta.Tensor, want: Any, dtype: Any, tol: tuple[float, float], what: str = "output") -> None:
    """``got`` has the shape of ``want``, the expected dtype, and values within ``tol`` (exact for ints/bools)."""
    want = np.asarray(want)
    assert isinstance(got, ta.Tensor), f"{what}: expected a Tensor, got {type(got).__name__}"
    assert tuple(got.shape) == want.shape, f"{what}: shape {tuple(got.shape)}, expected {want.shape}"
    if want.dtype.kind == "f":
        assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {np.dtype(dtype)}"
        np.testing.assert_allclose(got.numpy(), want, rtol=tol[0], atol=tol[1], err_msg=what)
    else:
        assert got.dtype.kind == want.dtype.kind, f"{what}: dtype {got.dtype}, expected the kind of {want.dtype}"
        np.testing.assert_array_equal(got.numpy(), want, err_msg=what)


# ---- the factory -----------------------------------------------------------------------------------------------


def op_tests(
    op: Callable[..., Any],
    ref: Callable[..., Any],
    inputs: st.SearchStrategy[Case],
    *,
    torch_fn: Callable[..., Any] | None = None,
    grad: bool = True,
    tol32: tuple[float, float] = TOL32,
    tol64: tuple[float, float] = TOL64,
    weight: float = 2.0,
) -> type:
    """Build the test class of one op.

    op:        ``op(*tensors, **kwargs)``, the tinygrad_attn function under test (returns a Tensor or a tuple).
    ref:       ``ref(*arrays, **kwargs)``, its NumPy reference, given float64 arrays.
    inputs:    a strategy of ``Case`` (see ``unary``, ``nary``, ``case``).
    torch_fn:  ``torch_fn(*torch_tensors, **kwargs)`` for the PyTorch parity test (None: no such test).
    grad:      False for ops without a gradient (argmax): only the forward and no-mutation tests.
    weight:    each test draws ``weight`` times the profile's ``max_examples`` (the second-derivative,
               no-mutation and PyTorch tests half that); the tensors are tiny, so the default is 2.
    """

    @pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
    @settings(max_examples=examples(weight))
    @given(c=inputs)
    def test_forward(self: Any, device: str, dtype: Any, c: Case) -> None:
        xs = _tensors(c, device, dtype)
        got = _flat(op(*xs, **c.kwargs))
        # the reference sees exactly the values the op saw (rounded to dtype), computed in float64
        want = _flat(ref(*[a.astype(dtype).astype(np.float64) if _is_float(a) else a for a in c.arrays],
                         **c.kwargs))
        assert len(got) == len(want), f"{len(got)} outputs, the reference gives {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            check_close(g, w, dtype, tol64 if dtype == np.float64 else tol32, f"output {i}")
            assert g.device == device

    @settings(max_examples=examples(weight))
    @given(c=inputs)
    def test_gradcheck(self: Any, device: str, c: Case) -> None:
        ta.gradcheck(lambda *xs: op(*xs, **c.kwargs), _tensors(c, device, requires_grad=True))

    @settings(max_examples=examples(weight / 2))
    @given(c=inputs)
    def test_gradgradcheck(self: Any, device: str, c: Case) -> None:
        def squared(*xs: ta.Tensor) -> tuple[ta.Tensor, ...]:
            return tuple(o * o for o in _float_outputs(op(*xs, **c.kwargs)))

        ta.gradgradcheck(squared, _tensors(c, device, requires_grad=True))

    @settings(max_examples=examples(weight / 2))
    @given(c=inputs)
    def test_inputs_unchanged(self: Any, device: str, c: Case) -> None:
        options = copy.deepcopy(c.kwargs)
        xs = _tensors(c, device, requires_grad=grad)
        outs = [o for o in _float_outputs(op(*xs, **c.kwargs)) if o.requires_grad]
        if outs:
            ta.backward(outs, [ta.tensor(v, device=device) for v in _upstream(outs)])
        for i, (x, a) in enumerate(zip(xs, c.arrays)):
            np.testing.assert_array_equal(x.numpy(), a.astype(x.dtype), err_msg=f"input {i} was modified")
            assert x._version.value == 0, f"input {i} was modified in place"
        for got, want in zip(_arrays_in(c.kwargs), _arrays_in(options)):
            np.testing.assert_array_equal(got, want, err_msg="an index/option array was modified")

    @settings(max_examples=examples(weight / 2))
    @given(c=inputs)
    def test_matches_torch(self: Any, c: Case) -> None:
        torch = pytest.importorskip("torch")
        xs = _tensors(c, "cpu", requires_grad=grad)
        txs = [torch.tensor(a, requires_grad=grad and _is_float(a)) for a in c.arrays]
        got, want = _flat(op(*xs, **c.kwargs)), _flat(torch_fn(*txs, **c.kwargs))
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            check_close(g, w.detach().numpy(), np.float64, tol64, f"output {i} vs torch")
        if not grad:
            return
        pairs = [(g, w) for g, w in zip(got, want) if g.dtype.kind == "f" and g.requires_grad]
        vs = _upstream([g for g, _ in pairs], seed=1)
        leaves = [(x, tx) for x, tx in zip(xs, txs) if x.requires_grad]
        ours = ta.grad([g for g, _ in pairs], [x for x, _ in leaves], [ta.tensor(v) for v in vs], allow_unused=True)
        theirs = torch.autograd.grad([w for _, w in pairs], [tx for _, tx in leaves], [torch.tensor(v) for v in vs],
                                     allow_unused=True)
        for i, (a, b, (x, _)) in enumerate(zip(ours, theirs, leaves)):
            a = np.zeros(x.shape) if a is None else a.numpy()
            b = np.zeros(x.shape) if b is None else b.numpy()
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=f"gradient of input {i} vs torch")

    tests: dict[str, Any] = {"test_forward": test_forward, "test_inputs_unchanged": test_inputs_unchanged}
    if grad:
        tests.update(test_gradcheck=test_gradcheck, test_gradgradcheck=test_gradgradcheck)
    if torch_fn is not None:
        tests["test_matches_torch"] = test_matches_torch
    name = "TestOp_" + "".join(ch for ch in getattr(op, "__name__", "op") if ch.isalnum() or ch == "_")
    tests["__doc__"] = f"Generated checks of {getattr(op, '__qualname__', op)!s} (see tests/op_checks.py)."
    return type(name, (), tests)
