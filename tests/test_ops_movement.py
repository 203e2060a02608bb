"""Movement ops (tinygrad_attn/ops/movement.py): reshape, reorder, select and combine elements. Forward vs NumPy,
first and second derivatives, no mutation, PyTorch parity (tests/op_checks.py builds those); then indexing with
tensors and repeated indices, setitem, and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygrad_attn as ta
from tests.op_checks import Case, case, examples, op_tests
from tests.strategies import (
    arrays,
    dim,
    dim_tuples,
    indices,
    masks,
    reals,
    reshape_targets,
    shapes,
    shapes_broadcastable_to,
    sizes_summing_to,
)
from tinygrad_attn.ops import movement


def _torch(name: str):
    """``torch.<name>`` looked up at call time, so the module imports without torch."""
    return lambda *xs, **kw: getattr(__import__("torch"), name)(*xs, **kw)


# ---- reshape, flatten, transpose, permute, expand, squeeze, unsqueeze --------------------------------------------

@st.composite
def _reshape_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes(empty=False)))  # -1 cannot be inferred from 0 elements
    return case(x, shape=draw(reshape_targets(x.shape)))


TestReshape = op_tests(lambda x, shape: x.reshape(shape), lambda x, shape: np.reshape(x, shape), _reshape_inputs(),
                       torch_fn=lambda x, shape: x.reshape(shape))
TestView = op_tests(lambda x, shape: x.view(*shape), lambda x, shape: np.reshape(x, shape), _reshape_inputs(),
                    torch_fn=lambda x, shape: x.view(*shape))


@st.composite
def _flatten_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes(min_dims=1)))
    a, b = sorted(draw(st.lists(st.integers(0, x.ndim - 1), min_size=2, max_size=2)))
    return case(x, start_dim=a - x.ndim if draw(st.booleans()) else a, end_dim=b - x.ndim if draw(st.booleans()) else b)


def _flatten_ref(x, start_dim, end_dim):
    s, e = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])


TestFlatten = op_tests(lambda x, **kw: x.flatten(**kw), _flatten_ref, _flatten_inputs(),
                       torch_fn=lambda x, **kw: x.flatten(**kw))


@st.composite
def _two_dims(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes()))  # a 0-d tensor too: dims 0 and -1
    return case(x, dim0=draw(dim(x.ndim)), dim1=draw(dim(x.ndim)))


def _transpose(x, dim0, dim1):
    return x.transpose(dim0, dim1)


TestTranspose = op_tests(_transpose, lambda x, dim0, dim1: np.swapaxes(x, dim0, dim1) if x.ndim else x, _two_dims(),
                        torch_fn=_transpose)


@st.composite
def _permute_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes()))
    order = draw(st.permutations(range(x.ndim)))
    return case(x, dims=tuple(d - x.ndim if draw(st.booleans()) else d for d in order))


TestPermute = op_tests(lambda x, dims: x.permute(*dims), lambda x, dims: np.transpose(x, dims), _permute_inputs(),
                       torch_fn=lambda x, dims: x.permute(dims))
TestTransposeProperties = op_tests(lambda x: (x.T, x.mT), lambda x: (x.T, np.swapaxes(x, -1, -2)),
                                   st.builds(case, arrays(shapes(min_dims=2))), torch_fn=lambda x: (x.permute(
                                       *reversed(range(x.ndim))), x.mT))


@st.composite
def _expand_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes(max_side=3, max_elems=12)))
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    own = tuple(draw(st.integers(1, 3)) if n == 1 else n for n in x.shape)
    own = tuple(-1 if draw(st.booleans()) else n for n in own) if x.ndim else own  # -1 keeps the size
    return case(x, shape=lead + own)


def _expand_ref(x, shape):
    lead = len(shape) - x.ndim
    return np.broadcast_to(x, tuple(x.shape[i - lead] if n == -1 else n for i, n in enumerate(shape)))


TestExpand = op_tests(lambda x, shape: x.expand(*shape), _expand_ref, _expand_inputs(),
                      torch_fn=lambda x, shape: x.expand(shape))


@st.composite
def _squeeze_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes(max_side=2)))
    options = [st.none(), dim(x.ndim), dim_tuples(x.ndim)] if x.ndim else [st.none()]
    return case(x, dim=draw(st.one_of(*options)))


def _squeeze_ref(x, dim):
    if dim is None:
        return np.squeeze(x)
    dims = {d % x.ndim for d in ((dim,) if isinstance(dim, int) else dim)}
    return x.reshape(tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1)))


TestSqueeze = op_tests(lambda x, dim: x.squeeze(dim), _squeeze_ref, _squeeze_inputs(),
                       torch_fn=lambda x, dim: x.squeeze() if dim is None else x.squeeze(dim))


@st.composite
def _unsqueeze_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes()))
    return case(x, dim=draw(st.integers(-x.ndim - 1, x.ndim)))


TestUnsqueeze = op_tests(lambda x, dim: x.unsqueeze(dim), lambda x, dim: np.expand_dims(x, dim), _unsqueeze_inputs(),
                         torch_fn=lambda x, dim: x.unsqueeze(dim))

# ---- cat, stack, split, chunk --------------------------------------------------------------------------------------


@st.composite
def _cat_inputs(draw: st.DrawFn) -> Case:
    base = draw(shapes(min_dims=1, max_elems=8))
    d = draw(dim(len(base)))
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    xs = [draw(arrays(base[:d % len(base)] + (n,) + base[d % len(base) + 1:])) for n in sizes]
    return case(*xs, dim=d)


TestCat = op_tests(lambda *xs, dim: ta.cat(xs, dim), lambda *xs, dim: np.concatenate(xs, axis=dim), _cat_inputs(),
                   torch_fn=lambda *xs, dim: __import__("torch").cat(xs, dim))


@st.composite
def _stack_inputs(draw: st.DrawFn) -> Case:
    shape = draw(shapes(max_elems=8))
    xs = draw(st.lists(arrays(shape), min_size=1, max_size=3))
    return case(*xs, dim=draw(st.integers(-len(shape) - 1, len(shape))))


TestStack = op_tests(lambda *xs, dim: ta.stack(xs, dim), lambda *xs, dim: np.stack(xs, axis=dim), _stack_inputs(),
                     torch_fn=lambda *xs, dim: __import__("torch").stack(xs, dim))


@st.composite
def _split_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes(min_dims=1)))
    d = draw(dim(x.ndim))
    n = x.shape[d]
    sections = draw(st.integers(1, n + 1) | sizes_summing_to(n))
    return case(x, split_size_or_sections=sections, dim=d)


def _split_ref(x, split_size_or_sections, dim):
    n, s = x.shape[dim], split_size_or_sections
    sizes = [min(s, n - i) for i in range(0, n, s)] if isinstance(s, int) else s
    return tuple(np.split(x, np.cumsum(sizes)[:-1], axis=dim))


def _split(x, split_size_or_sections, dim):
    return x.split(split_size_or_sections, dim)


TestSplit = op_tests(_split, _split_ref, _split_inputs(), torch_fn=_split)


@st.composite
def _chunk_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes(min_dims=1)))
    return case(x, chunks=draw(st.integers(1, 5)), dim=draw(dim(x.ndim)))


def _chunk_ref(x, chunks, dim):
    if x.shape[dim] == 0:  # PyTorch: ``chunks`` empty pieces
        return (x,) * chunks
    return _split_ref(x, -(-x.shape[dim] // chunks), dim)


TestChunk = op_tests(lambda x, chunks, dim: ta.chunk(x, chunks, dim), _chunk_ref, _chunk_inputs(),
                     torch_fn=lambda x, chunks, dim: x.chunk(chunks, dim))

# ---- pad, repeat, triu, tril --------------------------------------------------------------------------------------


@st.composite
def _pad_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes(min_dims=1, max_elems=12)))
    k = draw(st.integers(1, x.ndim))
    return case(x, pad=tuple(draw(st.lists(st.integers(0, 2), min_size=2 * k, max_size=2 * k))), value=draw(reals()))


def _pad_ref(x, pad, value):
    widths = [(0, 0)] * x.ndim
    for i in range(len(pad) // 2):
        widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return np.pad(x, widths, constant_values=value)


def _torch_pad(x, pad, value):
    import torch.nn.functional as F

    return F.pad(x, pad, value=value)


TestPad = op_tests(ta.pad, _pad_ref, _pad_inputs(), torch_fn=_torch_pad)


@st.composite
def _repeat_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes(max_elems=12)))
    return case(x, sizes=tuple(draw(st.lists(st.integers(1, 3), min_size=max(x.ndim, 1), max_size=x.ndim + 1))))


TestRepeat = op_tests(lambda x, sizes: x.repeat(*sizes), lambda x, sizes: np.tile(x, sizes), _repeat_inputs(),
                      torch_fn=lambda x, sizes: x.repeat(*sizes))


@st.composite
def _triangle_inputs(draw: st.DrawFn) -> Case:
    return case(draw(arrays(shapes(min_dims=2))), diagonal=draw(st.integers(-3, 3)))


TestTriu = op_tests(lambda x, diagonal: x.triu(diagonal), lambda x, diagonal: np.triu(x, diagonal), _triangle_inputs(),
                    torch_fn=lambda x, diagonal: x.triu(diagonal))
TestTril = op_tests(ta.tril, lambda x, diagonal: np.tril(x, diagonal), _triangle_inputs(),
                    torch_fn=lambda x, diagonal: x.tril(diagonal))

# ---- getitem, setitem, gather, masked_fill --------------------------------------------------------------------------


@st.composite
def _getitem_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes(min_dims=1, empty=False)))
    return case(x, index=draw(indices(x.shape)))


def _getitem(x, index):
    return x[index]


def _torch_move(index, ndim: int):
    """(source, destination) axes that take NumPy's ``x[index]`` to PyTorch's layout, or None where they agree.

    NumPy counts ints as index arrays, so ints and arrays separated by a slice, None or Ellipsis put the arrays'
    dims first. PyTorch applies the ints first: if the arrays are then next to each other, their dims stay where
    the first one is, after the dims of the slices, Nones and Ellipsis before it."""
    items = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, bool) or (isinstance(i, np.ndarray) and i.ndim == 0 and i.dtype == bool) for i in items):
        return None
    arrays = [k for k, i in enumerate(items) if isinstance(i, np.ndarray) and i.ndim > 0]
    is_int = [isinstance(i, int) or (isinstance(i, np.ndarray) and i.ndim == 0) for i in items]
    advanced = [k for k in range(len(items)) if k in arrays or is_int[k]]
    if not arrays or not any(is_int) or advanced[-1] - advanced[0] + 1 == len(advanced):
        return None  # no ints, or NumPy keeps the dims in place too
    if not all(is_int[k] for k in range(arrays[0], arrays[-1] + 1) if k not in arrays):
        return None  # the arrays themselves are apart: both put their dims first
    used = sum(i.ndim if isinstance(i, np.ndarray) and i.dtype == bool else 1 for i in items
               if i is not None and i is not Ellipsis)
    before = sum(ndim - used if i is Ellipsis else 0 if is_int[k] else 1 for k, i in enumerate(items[:arrays[0]]))
    n = len(np.broadcast_shapes(*((int(items[k].sum()),) if items[k].dtype == bool else items[k].shape
                                  for k in arrays)))
    return list(range(n)), list(range(before, before + n))


def _getitem_ref(x, index):
    out = x[index]
    move = _torch_move(index, x.ndim)
    return out if move is None else np.moveaxis(out, *move)


# NumPy moved to PyTorch's layout is the reference; the parity test below draws indices PyTorch accepts
TestGetitem = op_tests(_getitem, _getitem_ref, _getitem_inputs())


@st.composite
def _setitem_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes(min_dims=1, empty=False)))
    index = draw(indices(x.shape, unique=True))  # repeated targets of an assignment are ill-defined
    v = draw(arrays(shapes_broadcastable_to(_getitem_ref(np.empty(x.shape), index).shape)))
    return case(x, v, index=index)


def _setitem_ref(x, v, index):
    out = x.copy()
    move = _torch_move(index, x.ndim)
    if move is not None:  # v is in PyTorch's layout: back to NumPy's before writing
        v = np.moveaxis(np.broadcast_to(v, _getitem_ref(x, index).shape), move[1], move[0])
    out[index] = v
    return out


def _setitem(x, v, index):
    y = x * 1  # a non-leaf copy: a leaf that requires grad cannot be written in place
    y[index] = v
    return y


TestIndexPut = op_tests(lambda x, v, index: movement.index_put(x, index, v), _setitem_ref, _setitem_inputs())
TestSetitem = op_tests(_setitem, _setitem_ref, _setitem_inputs())


@st.composite
def _gather_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes(min_dims=1, empty=False)))
    d = draw(dim(x.ndim))
    index_shape = tuple(draw(st.integers(1, 3)) if i == d % x.ndim else draw(st.integers(1, n))
                        for i, n in enumerate(x.shape))
    index = draw(arrays(index_shape, st.integers(0, x.shape[d] - 1).map(float))).astype(np.int64)
    return case(x, index, dim=d)


def _gather_ref(x, index, dim):
    d = dim % x.ndim
    sub = x[tuple(slice(0, n) if i != d else slice(None) for i, n in enumerate(index.shape))]
    return np.take_along_axis(sub, index, axis=d)


TestGather = op_tests(lambda x, index, dim: x.gather(dim, index), _gather_ref, _gather_inputs(),
                      torch_fn=lambda x, index, dim: x.gather(dim, index))


@st.composite
def _masked_fill_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes()))
    return case(x, draw(masks(draw(shapes_broadcastable_to(x.shape)))), value=draw(reals()))


def _masked_fill(x, mask, value):
    return x.masked_fill(mask, value)


TestMaskedFill = op_tests(_masked_fill, lambda x, mask, value: np.where(mask, value, x), _masked_fill_inputs(),
                          torch_fn=_masked_fill)


@st.composite
def _copy_into_inputs(draw: st.DrawFn) -> Case:
    x = draw(arrays(shapes()))
    return case(x, draw(arrays(shapes_broadcastable_to(x.shape))))


# x.copy_(v) / x.fill_(v) compute this, then write it into x: x's old values get no gradient, v gets it summed
TestCopyInto = op_tests(movement.copy_into, lambda x, v: np.broadcast_to(v, x.shape).copy(), _copy_into_inputs())
TestClone = op_tests(lambda x: x.clone(), np.copy, st.builds(case, arrays(shapes())), torch_fn=lambda x: x.clone())


def test_clone_and_contiguous_copy():
    x = ta.tensor([[1.0, 2.0], [3.0, 4.0]])
    y = x.clone()
    y.data[0, 0] = 9.0
    assert x.numpy()[0, 0] == 1.0
    t = x.T
    assert not t.data.flags.c_contiguous and t.contiguous().data.flags.c_contiguous
    assert x.contiguous() is x


def test_shape_methods(device):
    data = np.arange(6.0).reshape(2, 3)
    x = ta.tensor(data, device=device, requires_grad=True)
    other = ta.zeros(3, 2, device=device)
    outs = [x.unflatten(1, (3, 1)), x.view_as(other), x.reshape_as(other), x[:1].expand_as(x),
            x[:, :1].broadcast_to((2, 2, 3)), x.type_as(ta.zeros(1, dtype=ta.float64))]
    refs = [data.reshape(2, 3, 1), data.reshape(3, 2), data.reshape(3, 2), np.broadcast_to(data[:1], (2, 3)),
            np.broadcast_to(data[:, :1], (2, 2, 3)), data]
    for out, ref in zip(outs, refs):
        np.testing.assert_array_equal(out.numpy(), ref)
    sum(o.sum().to(ta.float32) for o in outs).backward()
    # 4 from the four reshapes and the cast; row 0 is expanded twice; column 0 broadcast 2 * 3 times
    np.testing.assert_array_equal(x.grad.numpy(), [[4 + 2 + 6, 4 + 2, 4 + 2], [4 + 6, 4, 4]])


def test_to_device_round_trip_carries_the_gradient(device):
    x = ta.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(device)
    assert y.device == device
    (y * y).sum().backward()
    assert x.grad.device == "cpu"
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])


def test_repeated_indices_accumulate(device):
    x = ta.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    x[[0, 0, 2, 0]].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 0.0, 1.0])


def test_repeated_index_pairs_accumulate_in_2d(device):
    x = ta.zeros(2, 3, device=device, requires_grad=True)
    rows, cols = ta.tensor([1, 1, 0], device=device), ta.tensor([2, 2, 0], device=device)
    x[rows, cols].backward(ta.tensor([1.0, 10.0, 100.0], device=device))
    np.testing.assert_array_equal(x.grad.numpy(), [[100.0, 0.0, 0.0], [0.0, 0.0, 11.0]])


def test_gather_repeated_indices_accumulate(device):
    x = ta.tensor([[1.0, 2.0], [3.0, 4.0]], device=device, requires_grad=True)
    x.gather(1, ta.tensor([[0, 0, 0], [1, 0, 1]], device=device)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[3.0, 0.0], [1.0, 2.0]])


def test_index_with_tensors_and_lists(device):
    data = np.arange(12.0).reshape(3, 4)
    x = ta.tensor(data, device=device, requires_grad=True)
    mask = x > 5
    np.testing.assert_array_equal(x[mask].numpy(), data[data > 5])
    np.testing.assert_array_equal(x[ta.tensor([2, 0], device=device)].numpy(), data[[2, 0]])
    np.testing.assert_array_equal(x[[True, False, True]].numpy(), data[[True, False, True]])
    np.testing.assert_array_equal(x[:, ta.tensor(1, device=device)].numpy(), data[:, 1])
    np.testing.assert_array_equal(x[..., [-1, 0]].numpy(), data[..., [-1, 0]])
    x[mask].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), (data > 5).astype(float))


def test_setitem_gradients(device):
    x = ta.tensor([1.0, 2.0, 3.0, 4.0], device=device, requires_grad=True)
    v = ta.tensor([10.0, 20.0], device=device, requires_grad=True)
    y = x * 1
    y[1:3] = v
    np.testing.assert_array_equal(y.numpy(), [1.0, 10.0, 20.0, 4.0])
    (y * ta.tensor([1.0, 2.0, 3.0, 4.0], device=device)).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 0.0, 0.0, 4.0])  # overwritten elements get nothing
    np.testing.assert_array_equal(v.grad.numpy(), [2.0, 3.0])


def test_setitem_broadcast_value_gets_summed_gradient():
    x = ta.zeros(2, 3, requires_grad=True)
    v = ta.tensor([5.0], requires_grad=True)
    y = x + 0
    y[:, 1:] = v
    y.sum().backward()
    np.testing.assert_array_equal(v.grad.numpy(), [4.0])
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])


def test_setitem_python_scalar_keeps_dtype():
    y = ta.zeros(3, dtype=ta.float32)
    y[1] = 2.5
    assert y.dtype == ta.float32
    np.testing.assert_array_equal(y.numpy(), [0.0, 2.5, 0.0])


@settings(max_examples=examples(0.5))
@given(x=arrays(shapes(min_dims=1)), data=st.data())
def test_split_and_cat_are_inverse(x, data):
    d = data.draw(dim(x.ndim))
    sections = data.draw(sizes_summing_to(x.shape[d]))
    t = ta.tensor(x)
    np.testing.assert_array_equal(ta.cat(t.split(sections, d), d).numpy(), x)
    np.testing.assert_array_equal(ta.cat(t.chunk(2, d), d).numpy(), x)


@settings(max_examples=examples(0.5))
@given(x=arrays(shapes(min_dims=1)), data=st.data())
def test_unsqueeze_then_squeeze_is_identity(x, data):
    d = data.draw(st.integers(-x.ndim - 1, x.ndim))
    t = ta.tensor(x)
    np.testing.assert_array_equal(t.unsqueeze(d).squeeze(d).numpy(), x)


# ---- errors ----------------------------------------------------------------------------------------------------------

def test_index_out_of_range_names_the_op_and_shape():
    x = ta.ones(3, 2)
    with pytest.raises(IndexError, match=r"getitem.*\(3, 2\)"):
        x[3]
    with pytest.raises(IndexError, match=r"getitem.*\(3, 2\)"):
        x[[0, -4]]
    with pytest.raises(IndexError, match=r"getitem.*\(3, 2\)"):
        x[:, 2]
    with pytest.raises(IndexError, match="getitem.*float"):
        x[ta.tensor([0.0])]
    with pytest.raises(IndexError, match="gather.*size 2"):
        x.gather(1, ta.tensor([[2]]))


@pytest.mark.parametrize("call, name", [
    (lambda x: x.transpose(0, 3), "transpose"),
    (lambda x: x.permute(0, 1, 5), "permute"),
    (lambda x: x.unsqueeze(4), "unsqueeze"),
    (lambda x: x.squeeze(-4), "squeeze"),
    (lambda x: x.flatten(0, 3), "flatten"),
    (lambda x: x.split(1, 3), "split"),
    (lambda x: x.chunk(2, -4), "chunk"),
    (lambda x: ta.cat([x, x], 3), "cat"),
    (lambda x: ta.stack([x, x], 4), "stack"),
    (lambda x: x.gather(3, ta.zeros(1, 1, 1, dtype=ta.int64)), "gather"),
])
def test_dim_out_of_range_names_the_op(call, name):
    with pytest.raises(IndexError, match=rf"{name}: dim -?\d is out of range"):
        call(ta.ones(2, 3, 4))


@pytest.mark.parametrize("call, pattern", [
    (lambda x: x.reshape(5, 5), r"reshape.*\(2, 3\).*\(5, 5\)"),
    (lambda x: x.permute(0, 0), r"permute.*\(2, 3\)"),
    (lambda x: x.expand(4, 3), r"expand.*\(2, 3\).*\(4, 3\)"),
    (lambda x: x.expand(3), r"expand.*\(2, 3\)"),
    (lambda x: x.expand(-1, 2, 3), r"expand"),  # -1 is only allowed for existing dims
    (lambda x: ta.cat([x, ta.ones(3, 3)], 1), r"cat.*\(2, 3\).*\(3, 3\)"),
    (lambda x: ta.stack([x, ta.ones(3, 2)]), r"stack.*\(2, 3\).*\(3, 2\)"),
    (lambda x: x.split([1, 1], 1), r"split.*\[1, 1\].*size 3"),
    (lambda x: ta.pad(x, (1,)), "pad"),
    (lambda x: x.repeat(2), r"repeat.*\(2, 3\)"),
    (lambda x: x.gather(0, ta.zeros(3, dtype=ta.int64)), r"gather.*\(2, 3\)"),
    (lambda x: ta.triu(x[0]), r"triu.*\(3,\)"),
])
def test_bad_shapes_name_the_op_and_shapes(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(ta.ones(2, 3))


def test_setitem_shape_mismatch_names_both_shapes():
    y = ta.zeros(2, 3)
    with pytest.raises(ValueError, match=r"setitem.*\(2, 3\).*\(4,\)"):
        y[:, :] = ta.ones(4)


# ---- PyTorch's rule for ints mixed with index arrays ----------------------------------------------------------------

def test_int_and_array_index_keep_the_array_dims_in_place():
    data = np.arange(5 * 6 * 7.0).reshape(5, 6, 7)
    x = ta.tensor(data, requires_grad=True)
    idx = [0, 2, 4]
    y = x[1, :, idx]  # NumPy: (3, 6); PyTorch: the int selects first, then idx indexes the last dim
    assert y.shape == (6, 3)
    np.testing.assert_array_equal(y.numpy(), data[1][:, idx])
    assert x[:, 1, None, idx].shape == (5, 1, 3) and x[None, 1, ..., idx].shape == (1, 6, 3)
    assert x[idx, :, 1].shape == (3, 6)  # the arrays' dims are first in both: nothing between them moved
    assert x[1, :, ta.tensor([[0, 1], [2, 3]])].shape == (6, 2, 2)
    y.backward(ta.tensor(np.arange(18.0).reshape(6, 3)))
    expected = np.zeros((5, 6, 7))
    expected[1][:, idx] = np.arange(18.0).reshape(6, 3)
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_setitem_with_int_and_array_index_follows_pytorch():
    y = ta.zeros(5, 6, 7)
    v = ta.tensor(np.arange(18.0).reshape(6, 3), requires_grad=True)
    y[1, :, [0, 2, 4]] = v  # a (6, 3) value fits; NumPy's layout would want (3, 6)
    np.testing.assert_array_equal(y.numpy()[1][:, [0, 2, 4]], np.arange(18.0).reshape(6, 3))
    assert y.numpy().sum() == np.arange(18.0).sum()
    (y * y).sum().backward()
    np.testing.assert_array_equal(v.grad.numpy(), 2 * np.arange(18.0).reshape(6, 3))
    with pytest.raises(ValueError, match="setitem"):
        y[1, :, [0, 2, 4]] = ta.ones(3, 6)


def _no_negative_steps(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return not any(isinstance(i, slice) and i.step is not None and i.step < 0 for i in items)


def _to_torch_index(torch, index):
    items = index if isinstance(index, tuple) else (index,)
    out = tuple(torch.tensor(i) if isinstance(i, np.ndarray) else i for i in items)
    return out if isinstance(index, tuple) else out[0]


@settings(max_examples=examples())
@given(data=st.data())
def test_getitem_and_setitem_match_torch(data):
    torch = pytest.importorskip("torch")
    x = data.draw(arrays(shapes(min_dims=1, empty=False)))
    index = data.draw(indices(x.shape, unique=True).filter(_no_negative_steps))  # PyTorch has no negative steps
    _check_indexing_against_torch(torch, x, index)


def _check_indexing_against_torch(torch, x, index):
    """x[index] (forward and backward) and x[index] = g agree with PyTorch exactly."""
    ours, theirs = ta.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = ours[index], theirs[_to_torch_index(torch, index)]
    np.testing.assert_array_equal(y.numpy(), ty.detach().numpy())
    g = np.random.default_rng(0).standard_normal(tuple(ty.shape))
    y.backward(ta.tensor(g))
    ty.backward(torch.tensor(g))
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())
    z, tz = ta.tensor(x), torch.tensor(x)
    z[index] = ta.tensor(g)
    tz[_to_torch_index(torch, index)] = torch.tensor(g)
    np.testing.assert_array_equal(z.numpy(), tz.numpy())


_MIXED = [(1, slice(None), [0, 2, 4]), (slice(None), 1, None, [0, 2]), ([0, 2], slice(None), 1), (1, Ellipsis, [6, 0]),
          (None, 1, slice(1, 5, 2), [3]), (1, [True, False, True, False, True, True], 2),
          (1, slice(None), [[0, 1], [2, 3]]), (np.array(2), slice(None), [1, 4]), (Ellipsis, 1, [0, 1]),
          (1, [0, 2, 4], slice(1, 3)), ([1, 3], slice(None), 2)]


@pytest.mark.parametrize("index", _MIXED, ids=[str(i) for i in range(len(_MIXED))])
def test_mixed_int_and_array_indexing_matches_torch(index):
    torch = pytest.importorskip("torch")
    data = np.arange(5 * 6 * 7.0).reshape(5, 6, 7)
    index = tuple(np.array(i) if isinstance(i, list) else i for i in index)
    _check_indexing_against_torch(torch, data, index)


# ---- 0-d tensors and empty dims, written out by hand -------------------------------------------------------------

def test_0d_tensor_transpose_and_gather_as_pytorch():
    x = ta.tensor(2.5, dtype=ta.float64, requires_grad=True)
    assert x.transpose(0, -1).shape == () and x.transpose(0, -1).item() == 2.5
    y = x.gather(0, ta.tensor(0))
    assert y.shape == () and y.item() == 2.5
    z = x.gather(-1, ta.tensor([0, 0, 0]))
    np.testing.assert_array_equal(z.numpy(), [2.5, 2.5, 2.5])
    (y + z.sum()).backward()
    assert x.grad.item() == 4.0
    with pytest.raises(IndexError, match="gather.*size 1"):
        x.gather(0, ta.tensor(1))
    with pytest.raises(IndexError, match="transpose: dim 1 is out of range"):
        x.transpose(0, 1)


def test_empty_dims_chunk_and_empty_index_lists_as_pytorch():
    x = ta.zeros(2, 0, requires_grad=True)
    assert [tuple(p.shape) for p in x.chunk(3, 1)] == [(2, 0)] * 3  # PyTorch: `chunks` empty pieces
    assert x[:, []].shape == (2, 0)  # [] is an empty list of indices
    y = ta.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert y[[]].shape == (0, 2) and y[[], 1].shape == (0,)
