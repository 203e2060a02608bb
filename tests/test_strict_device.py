"""The strict stand-in device (tests/strict_device.py) keeps CuPy's rules: if it did not, the "strict" runs of the
suite would prove nothing. Each test below is a way NumPy code passes on the CPU and fails on a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from tests.strict_device import CUPY_NAMES, Device, StrictArray, host_reads, xp


def strict(values, dtype=np.float32) -> StrictArray:
    return xp.asarray(np.asarray(values, dtype=dtype))


def test_implicit_conversion_to_numpy_is_refused():
    a = strict([1.0, 2.0])
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.array([a, a])
    np.testing.assert_array_equal(a.get(), [1.0, 2.0])


def test_host_arrays_are_not_operands():
    a, host = strict([1.0, 2.0]), np.ones(2, np.float32)
    with pytest.raises(TypeError, match="Unsupported type"):
        a + host
    with pytest.raises(TypeError, match="Unsupported type"):
        host + a
    with pytest.raises(TypeError, match="Unsupported type"):
        xp.add(a, host)
    assert isinstance(a + np.float32(1), StrictArray) and isinstance(a * 2.0, StrictArray)


def test_numpy_functions_dispatch_like_cupys():
    a = strict([1.0, 4.0])
    assert isinstance(np.sqrt(a), StrictArray) and isinstance(np.concatenate([a, a]), StrictArray)
    assert "nanpercentile" not in CUPY_NAMES
    with pytest.raises(TypeError, match="no implementation found"):
        np.nanpercentile(a, 50.0)


def test_only_cupys_flags():
    flags = strict([1.0]).flags
    assert flags.c_contiguous and flags.f_contiguous and flags.owndata
    with pytest.raises(AttributeError):
        flags.writeable  # noqa: B018


def test_only_cupys_names():
    assert "errstate" not in CUPY_NAMES and "exp" in CUPY_NAMES
    with pytest.raises(AttributeError, match="module 'cupy' has no attribute 'errstate'"):
        xp.errstate  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'setflags'"):
        strict([1.0]).setflags  # noqa: B018


def test_scalars_stay_on_the_device():
    a = strict([1.0, 2.0])
    assert isinstance(a.sum(), StrictArray) and a.sum().shape == ()
    assert isinstance(a[0], StrictArray) and isinstance(xp.max(a), StrictArray)


def test_broadcast_views_are_writable():
    a = strict([1.0, 2.0])
    b = xp.broadcast_to(a, (3, 2))
    b[0, 0] = 5.0  # writes the one element every row shares, as on a GPU
    np.testing.assert_array_equal(a.get(), [5.0, 2.0])
    assert 0 in b.strides


def test_every_read_is_counted():
    a, mask = strict([1.0, -2.0, 3.0]), strict([True, False, True], np.bool_)
    with host_reads() as reads:
        y = xp.exp(a) * 2 + a.sum()
        y[1:] = 0.0
    assert reads.count == 0, reads
    reads_one_each = [lambda: a.get(), lambda: a.item() if a.size == 1 else a[0].item(), lambda: a.tolist(),
                      lambda: bool(a[0]), lambda: float(a[0]), lambda: int(a[0]), lambda: a[mask],
                      lambda: a.__setitem__(mask, 0.0), lambda: xp.nonzero(a), lambda: xp.where(mask),
                      lambda: repr(a)]
    for read in reads_one_each:
        with host_reads() as reads:
            read()
        assert reads.count == 1, reads


def test_an_array_computes_only_on_its_own_device():
    with Device(1):
        a = strict([1.0, 2.0])
    assert a.device.id == 1
    with pytest.raises(ValueError, match="on strict device 1 but the current device is 0"):
        a + 1.0
    with pytest.raises(ValueError, match="current device is 0"):
        xp.exp(a)
    with Device(1):
        assert (a + 1.0).device.id == 1 and xp.exp(a).device.id == 1
    assert a.reshape(2, 1).device.id == 1  # a view launches nothing


def test_an_upload_copies_the_host_memory():
    host = np.array([1.0, 2.0], np.float32)
    a = xp.asarray(host)
    host[0] = 9.0
    np.testing.assert_array_equal(a.get(), [1.0, 2.0])


def test_a_device_scalar_is_not_a_python_index():
    i = xp.asarray(np.array(1))
    with pytest.raises(TypeError):
        [10, 20][i]
    assert int(i) == 1  # explicit, and counted
