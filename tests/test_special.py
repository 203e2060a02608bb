"""tinygrad_attn.special.erf against the standard library's math.erf."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tinygrad_attn.special import erf, erf_single

RTOL64 = 1e-14


def _ref(x):
    return np.array([math.erf(v) for v in np.asarray(x, dtype=np.float64).ravel()]).reshape(np.shape(x))


def _max_rel_err(got, ref):
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)))


@given(st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_float64_any_finite(x):
    # hypothesis draws tiny, subnormal and huge magnitudes as well as ordinary ones
    got = erf(np.float64(x))
    ref = math.erf(x)
    tol = RTOL64 * abs(ref) + 5e-324 * 4  # a few subnormal ulps where erf(x) itself is subnormal
    assert abs(float(got) - ref) <= tol


@given(st.floats(min_value=-8.0, max_value=8.0, width=64))
def test_float64_core_range(x):
    assert abs(float(erf(x)) - math.erf(x)) <= RTOL64 * abs(math.erf(x))


@given(st.lists(st.floats(min_value=1e-300, max_value=1e-3), min_size=1, max_size=20))
def test_float64_tiny(xs):
    x = np.array(xs) * np.array([1, -1] * 10)[: len(xs)]
    assert _max_rel_err(erf(x), _ref(x)) <= RTOL64


def test_float64_dense_grid():
    x = np.concatenate(
        [
            np.linspace(-30.0, 30.0, 600_001),
            np.geomspace(1e-300, 30.0, 20_001),
            -np.geomspace(1e-300, 30.0, 20_001),
            np.array([0.46875, np.nextafter(0.46875, 1), 4.0, np.nextafter(4.0, 5), 26.5, 27.0]),
        ]
    )
    assert _max_rel_err(erf(x), _ref(x)) <= RTOL64


def test_float32_within_an_ulp():
    x = np.linspace(-10.0, 10.0, 200_001, dtype=np.float32)
    got = erf(x)
    assert got.dtype == np.float32
    ref = _ref(x)
    ulp = np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
    assert np.all(np.abs(got.astype(np.float64) - ref) <= ulp)


def test_erf_single_within_its_bound():
    """The float32 evaluation (GELU's) stays within 4.2e-7 of erf, keeps the dtype, and is odd and bounded."""
    x = np.linspace(-10.0, 10.0, 200_001, dtype=np.float32)
    got = erf_single(x)
    assert got.dtype == np.float32
    assert np.max(np.abs(got.astype(np.float64) - _ref(x))) <= 4.2e-7
    assert np.array_equal(erf_single(-x), -got) and np.all(np.abs(got) <= 1)
    assert erf_single(np.float16([0.5])).dtype == np.float16
    assert erf_single(np.array([0.3, -2.0])).dtype == np.float64  # float64 goes to erf (to an ulp)
    np.testing.assert_array_equal(erf_single(np.array([0.3, -2.0])), erf(np.array([0.3, -2.0])))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_dtype_and_shape_preserved(dtype):
    x = np.linspace(-3, 3, 24, dtype=dtype).reshape(2, 3, 4)
    got = erf(x)
    assert got.dtype == dtype and got.shape == (2, 3, 4)
    s = erf(np.array(0.5, dtype=dtype))
    assert s.dtype == dtype and s.shape == ()
    assert abs(float(s) - math.erf(0.5)) <= 2 * float(np.finfo(dtype).eps)


def test_ints_and_python_scalars_become_float64():
    assert erf(np.arange(-2, 3)).dtype == np.float64
    assert erf(1.0, xp=np).shape == ()
    np.testing.assert_allclose(erf([-2, 0, 2]), [math.erf(-2), 0.0, math.erf(2)], rtol=RTOL64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype):
    x = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 1e30, -1e30], dtype=dtype)
    got = erf(x)
    assert got.dtype == dtype
    assert got[0] == 1 and got[1] == -1 and np.isnan(got[2])
    assert got[3] == 0 and not np.signbit(got[3]) and got[4] == 0 and np.signbit(got[4])
    assert got[5] == 1 and got[6] == -1


def test_odd_and_bounded():
    x = np.linspace(0, 10, 10_001)
    np.testing.assert_array_equal(erf(-x), -erf(x))
    assert np.all(np.abs(erf(x)) <= 1) and np.all(np.diff(erf(x)) >= 0)


def test_no_warnings():
    # under NumPy's default error state (underflow to 0 in exp is silent, as it should be)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        erf(np.array([0.0, 1e-310, 0.3, 3.0, 10.0, 1e300, np.inf, -np.inf, np.nan]))


def test_cupy_erf_float16_comes_back_float16(monkeypatch):
    """cupyx.scipy.special.erf has loops f->f and d->d only, so float16 input gives float64 (CuPy 14): an
    emulation of it, on the strict stand-in device, must still give float16 from special.erf."""
    import math
    import sys
    import types

    from tests.strict_device import xp as strict_xp

    calls = []

    def cupyx_erf(x):
        calls.append(x.dtype)
        out_dtype = np.float64 if x.dtype in (np.float16, np.float64) else x.dtype  # 'e->d', 'f->f', 'd->d'
        host = np.vectorize(math.erf)(x.get().astype(np.float64)).astype(out_dtype)
        return strict_xp.asarray(host)

    special_mod = types.ModuleType("cupyx.scipy.special")
    special_mod.erf = cupyx_erf
    for name, mod in (("cupyx", types.ModuleType("cupyx")), ("cupyx.scipy", types.ModuleType("cupyx.scipy")),
                      ("cupyx.scipy.special", special_mod)):
        monkeypatch.setitem(sys.modules, name, mod)
    x = np.linspace(-3, 3, 13).astype(np.float16)
    y = erf(strict_xp.asarray(x), xp=strict_xp)
    assert calls and y.dtype == np.float16
    np.testing.assert_allclose(y.get().astype(np.float64), [math.erf(v) for v in x.astype(np.float64)], atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_erf_and_gelu_keep_the_dtype_on_every_device(device, dtype):
    """ta.erf and exact GELU give the input's dtype on each backend (on CUDA through cupyx's erf, which has no
    float16 loop of its own)."""
    import tinygrad_attn as ta

    x = np.linspace(-3, 3, 11).astype(dtype)
    t = ta.tensor(x, device=device)
    y, g = ta.erf(t), ta.gelu(t)
    assert y.dtype == dtype and g.dtype == dtype and y.device == device
    tol = 2e-3 if dtype == np.float16 else 1e-6
    np.testing.assert_allclose(y.numpy().astype(np.float64), _ref(x), atol=tol)
