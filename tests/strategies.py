"""Shared hypothesis strategies for the op tests: shapes, dims, arrays inside an op's domain, index expressions.

Everything is small on purpose. ``gradcheck`` runs two forward passes per input element, so arrays meant
for gradient checks have at most ``GRAD_ELEMS`` elements; sizes are 1-4 and shapes have at most 3 dims.

The edges are drawn too: 0-d shapes (whose ``dim`` is 0 or -1, as PyTorch accepts), and now and then a dim
of size 0 (``empty=False`` where an op or a strategy needs every dim to hold something, such as indexing).

Arrays are float64 NumPy arrays (the op tests cast them to float32 themselves). An op's *domain* is the
set of values where it is smooth enough for finite differences: positives for log/sqrt, values away from
the kink of abs/relu/clamp, values away from ties for max/min. Those are the element strategies below.
"""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import strategies as st

GRAD_ELEMS = 24  # the most elements an array meant for a gradient check may have
MAX_SIDE = 4
MAX_DIMS = 3
EMPTY_ODDS = 6  # about one shape in EMPTY_ODDS (of those with dims) gets a dim of size 0

Shape = tuple[int, ...]


# ---- shapes ---------------------------------------------------------------------------------------------


def _small(shape: Shape, max_elems: int) -> bool:
    return math.prod(shape) <= max_elems


def _emptied(shape: Shape, pick: int, dim: int) -> Shape:
    """``shape`` with its dim ``dim`` (mod ndim) set to 0 when ``pick`` is 0 (one draw in ``EMPTY_ODDS``)."""
    if pick or not shape:
        return shape
    d = dim % len(shape)
    return shape[:d] + (0,) + shape[d + 1:]


def _empty_draw() -> st.SearchStrategy[tuple[int, int]]:
    """(pick, dim) for ``_emptied``; pick is last in the range, so examples shrink towards non-empty shapes."""
    return st.tuples(st.integers(0, EMPTY_ODDS - 1).map(lambda i: EMPTY_ODDS - 1 - i), st.integers(0, MAX_DIMS - 1))


def shapes(min_dims: int = 0, max_dims: int = MAX_DIMS, min_side: int = 1, max_side: int = MAX_SIDE,
           max_elems: int = GRAD_ELEMS, empty: bool = True) -> st.SearchStrategy[Shape]:
    """Array shapes with ``min_dims..max_dims`` dims of size ``min_side..max_side``, at most ``max_elems`` elements;
    with ``empty``, now and then one dim has size 0."""
    full = hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side).filter(
        lambda s: _small(s, max_elems))
    if not empty:
        return full
    return st.tuples(full, _empty_draw()).map(lambda t: _emptied(t[0], *t[1]))


def _emptied_together(shapes_: tuple[Shape, ...], pick: int, dim: int) -> tuple[Shape, ...]:
    """Shapes that broadcast together, with one dim of the result set to 0 when ``pick`` is 0: the inputs that
    are not 1 there become 0 (a 1 still broadcasts), or the first one that has the dim if all are 1."""
    ndim = max(len(s) for s in shapes_)
    if pick or not ndim:
        return shapes_
    d = dim % ndim - ndim  # counted from the right, where broadcasting aligns shapes
    has = [i for i, s in enumerate(shapes_) if len(s) >= -d]
    zero = [i for i in has if shapes_[i][d] != 1] or has[:1]
    return tuple(s[:len(s) + d] + (0,) + s[len(s) + d + 1:] if i in zero else s for i, s in enumerate(shapes_))


def broadcastable_shapes(num_shapes: int = 2, min_dims: int = 0, max_dims: int = MAX_DIMS, max_side: int = 3,
                         max_elems: int = GRAD_ELEMS, empty: bool = True) -> st.SearchStrategy[tuple[Shape, ...]]:
    """``num_shapes`` shapes that broadcast together (some dims 1, some missing), as a tuple of shapes; with
    ``empty``, now and then one dim of the result has size 0."""
    full = hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=1, max_side=max_side,
    ).filter(lambda b: _small(b.result_shape, max_elems)).map(lambda b: tuple(b.input_shapes))
    if not empty:
        return full
    return st.tuples(full, _empty_draw()).map(lambda t: _emptied_together(t[0], *t[1]))


@st.composite
def shapes_broadcastable_to(draw: st.DrawFn, shape: Shape) -> Shape:
    """A shape that broadcasts *to* ``shape`` (never beyond it): a suffix of it with some sizes set to 1."""
    keep = draw(st.integers(0, len(shape)))
    suffix = shape[len(shape) - keep:]
    return tuple(n if draw(st.booleans()) else 1 for n in suffix)


# ---- dims -----------------------------------------------------------------------------------------------


def dim(ndim: int) -> st.SearchStrategy[int]:
    """One valid dim of an ``ndim``-dim tensor, negative or not. A 0-d tensor has dim 0 = -1, as in PyTorch."""
    return st.integers(-ndim, ndim - 1) if ndim else st.sampled_from([0, -1])


@st.composite
def dim_tuples(draw: st.DrawFn, ndim: int, min_size: int = 1) -> tuple[int, ...]:
    """Several distinct dims of an ``ndim``-dim tensor, each written negative or not at random ((0,) or (-1,) for
    a 0-d tensor)."""
    if not ndim:
        return draw(st.sampled_from([(0,), (-1,)]))
    chosen = draw(st.lists(st.integers(0, ndim - 1), min_size=min_size, max_size=ndim, unique=True))
    return tuple(d - ndim if draw(st.booleans()) else d for d in chosen)


def dims(ndim: int, allow_none: bool = True) -> st.SearchStrategy[int | tuple[int, ...] | None]:
    """What a reduction accepts as ``dim``: None (every dim), one dim, or a tuple of distinct dims."""
    options = [dim(ndim), dim_tuples(ndim)]
    if allow_none:
        options.append(st.none())
    return st.one_of(*options)


# ---- element domains ------------------------------------------------------------------------------------


def reals(lo: float = -3.0, hi: float = 3.0) -> st.SearchStrategy[float]:
    """Finite floats in [lo, hi], no subnormals."""
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def positives(lo: float = 0.1, hi: float = 3.0) -> st.SearchStrategy[float]:
    """Floats in [lo, hi] with lo > 0: the domain of log, sqrt, and the base of a tensor power."""
    return reals(lo, hi)


def away_from(*points: float, gap: float = 1e-2, lo: float = -3.0, hi: float = 3.0) -> st.SearchStrategy[float]:
    """Floats in [lo, hi] at least ``gap`` from every point: keeps finite differences off a kink."""
    return reals(lo, hi).filter(lambda v: all(abs(v - p) >= gap for p in points))


def nonzero(gap: float = 0.5, hi: float = 3.0) -> st.SearchStrategy[float]:
    """Floats with gap <= |v| <= hi (divisors, bases of negative powers)."""
    return st.tuples(st.booleans(), reals(gap, hi)).map(lambda t: t[1] if t[0] else -t[1])


def grid(step: float = 0.1, lo: int = -30, hi: int = 30, offset: float = 0.0) -> st.SearchStrategy[float]:
    """Multiples of ``step`` (plus ``offset``): values that are equal or at least ``step`` apart, never nearly
    equal. With ``unique=True`` in ``arrays`` they give tie-free arrays for max/min."""
    return st.integers(lo, hi).map(lambda i: i * step + offset)


# ---- arrays ---------------------------------------------------------------------------------------------


def arrays(shape: Shape | st.SearchStrategy[Shape], elements: st.SearchStrategy[float] | None = None,
           unique: bool = False) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays of ``shape`` (a shape or a strategy for one) with the given elements (default: ``reals()``)."""
    return hnp.arrays(np.float64, shape, elements=elements if elements is not None else reals(), unique=unique)


def distinct_arrays(shape: Shape | st.SearchStrategy[Shape]) -> st.SearchStrategy[np.ndarray]:
    """Arrays whose elements are pairwise at least 0.1 apart: no ties for max/min/sort-like ops."""
    return arrays(shape, grid(), unique=True)


@st.composite
def broadcastable_arrays(draw: st.DrawFn, *elements: st.SearchStrategy[float] | None) -> tuple[np.ndarray, ...]:
    """One float64 array per element strategy (None: ``reals()``), of shapes that broadcast together."""
    shapes_ = draw(broadcastable_shapes(len(elements)))
    return tuple(draw(arrays(s, e)) for s, e in zip(shapes_, elements))


def masks(shape: Shape) -> st.SearchStrategy[np.ndarray]:
    """Boolean arrays of ``shape``."""
    return hnp.arrays(np.bool_, shape)


# ---- index expressions for getitem / setitem ---------------------------------------------------------------


def _int_arrays(n: int, shape: Shape, unique: bool) -> st.SearchStrategy[np.ndarray]:
    """int64 index arrays into a dim of size ``n`` (negative indices too); repeats unless ``unique``."""
    if not unique:
        return hnp.arrays(np.int64, shape, elements=st.integers(-n, n - 1))
    size = min(math.prod(shape), n)
    picks = st.lists(st.integers(0, n - 1), min_size=size, max_size=size, unique=True)
    signs = st.lists(st.booleans(), min_size=size, max_size=size)
    return st.tuples(picks, signs).map(lambda t: np.array([i - n if neg else i for i, neg in zip(*t)], np.int64))


@st.composite
def _advanced_index(draw: st.DrawFn, shape: Shape, unique: bool) -> tuple:
    """Integer arrays (all of one shape, so they broadcast) into some dims, ints or slices into others,
    sometimes behind an Ellipsis."""
    k = draw(st.integers(1, len(shape)))
    leading_ellipsis = k < len(shape) and draw(st.booleans())
    dims_ = range(len(shape) - k, len(shape)) if leading_ellipsis else range(k)
    array_shape = draw(hnp.array_shapes(min_dims=0 if not unique else 1, max_dims=1 if unique else 2,
                                        min_side=1, max_side=4))
    array_dims = draw(st.lists(st.sampled_from(list(dims_)), min_size=1, max_size=1 if unique else 2, unique=True))
    items: list = []
    for d in dims_:
        n = shape[d]
        if d in array_dims:
            items.append(draw(_int_arrays(n, array_shape, unique)))
        else:
            items.append(draw(st.one_of(st.integers(-n, n - 1), _slices(n))))
    return ((Ellipsis,) if leading_ellipsis else ()) + tuple(items)


def _slices(n: int) -> st.SearchStrategy[slice]:
    """Slices of a dim of size ``n`` with any start/stop (None too) and a nonzero step."""
    bound = st.none() | st.integers(-n - 1, n + 1)
    return st.builds(slice, bound, bound, st.none() | st.integers(-3, 3).filter(bool))


@st.composite
def _mask_index(draw: st.DrawFn, shape: Shape) -> tuple:
    """A boolean mask over the first k dims, then slices (or nothing) for the rest."""
    k = draw(st.integers(1, len(shape)))
    mask = draw(masks(shape[:k]))
    rest = tuple(draw(_slices(n)) for n in shape[k:]) if draw(st.booleans()) else ()
    return (mask,) + rest


def indices(shape: Shape, unique: bool = False) -> st.SearchStrategy:
    """Index expressions for ``x[index]`` with x of ``shape`` (at least 1 dim):

    - basic: ints (negative too), slices with steps, None, Ellipsis;
    - advanced: integer arrays, with repeated entries unless ``unique`` (repeats must accumulate in backward;
      ``setitem`` with repeats is ill-defined, so it asks for ``unique``), mixed with ints and slices;
    - a boolean mask over leading dims.
    """
    return st.one_of(
        hnp.basic_indices(shape, min_dims=0, allow_newaxis=True, allow_ellipsis=True),
        _advanced_index(shape, unique),
        _mask_index(shape),
    )


def sizes_summing_to(n: int) -> st.SearchStrategy[list[int]]:
    """Lists of positive sizes that add up to ``n`` (``split`` sections)."""
    cuts = st.lists(st.integers(1, max(n - 1, 1)), unique=True, max_size=max(n - 1, 0)) if n > 1 else st.just([])
    return cuts.map(lambda c: [b - a for a, b in zip([0, *sorted(c)], [*sorted(c), n])])


def reshape_targets(shape: Shape) -> st.SearchStrategy[tuple[int, ...]]:
    """Shapes with as many elements as ``shape`` (one entry may be -1, inferred)."""
    n = math.prod(shape)
    divisors = [d for d in range(1, n + 1) if n % d == 0]

    @st.composite
    def build(draw: st.DrawFn) -> tuple[int, ...]:
        out, left = [], n
        for _ in range(draw(st.integers(0, 3))):
            d = draw(st.sampled_from([d for d in divisors if left % d == 0]))
            out.append(d)
            left //= d
        out.append(left)
        out = draw(st.permutations(out))
        if draw(st.booleans()):
            out[draw(st.integers(0, len(out) - 1))] = -1
        return tuple(out)

    return build()
