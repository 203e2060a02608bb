"""Backends and devices: parsing device strings, what happens without a GPU, moving tensors, and the error for
an op whose inputs live on different devices.

Tests that need CuPy and a GPU take the ``device`` fixture (tests/conftest.py) or skip with a reason. The
mixed-device checks run everywhere: a fake third backend (NumPy arrays of a marked subclass) is registered
for the test, so the real ``device_of`` / ``to_device`` / ``Function.apply`` path is exercised.
"""

import importlib.util

import numpy as np
import pytest

import tinygrad_attn as ta
from tinygrad_attn import backend as backend_mod
from tinygrad_attn.backend import Backend, Device

CUDA = ta.cuda.is_available()
needs_no_cuda = pytest.mark.skipif(CUDA, reason="a CUDA device is available here")
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device: CuPy is not installed or no GPU was found")

# ---------------------------------------------------------------------------------------------------------
# Device strings
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec, kind, index, text", [
    ("cpu", "cpu", None, "cpu"),
    ("cuda", "cuda", None, "cuda"),
    ("cuda:0", "cuda", 0, "cuda:0"),
    ("cuda:1", "cuda", 1, "cuda:1"),
    ("CUDA:2", "cuda", 2, "cuda:2"),
    (" cpu ", "cpu", None, "cpu"),
    ("cpu:0", "cpu", None, "cpu"),
    (None, "cpu", None, "cpu"),
])
def test_device_parsing(spec, kind, index, text):
    d = ta.device(spec)
    assert isinstance(d, Device) and d.type == kind and d.index == index
    assert str(d) == text and repr(d) == f"device('{text}')"
    assert ta.device(d) is d


def test_device_equality_and_hashing():
    assert ta.device("cuda") == ta.device("cuda:0")  # no index means device 0
    assert ta.device("cuda") == "cuda:0" and ta.device("cuda:0") == "cuda"
    assert ta.device("cuda:1") != "cuda:0" and ta.device("cuda:1") != ta.device("cuda")
    assert ta.device("cpu") == "cpu" and ta.device("cpu") != "cuda"
    assert ta.device("cpu") != "gpu"  # a string that is no device compares unequal, it does not raise
    assert ta.device("cpu") != 3
    assert len({ta.device("cuda"), ta.device("cuda:0"), ta.device("cuda:1"), ta.device("cpu")}) == 3


@pytest.mark.parametrize("spec, error, message", [
    ("gpu", ValueError, r"unknown device 'gpu': expected one of \['cpu', 'cuda'(, 'strict')?\]"),
    ("", ValueError, "unknown device ''"),
    ("tpu:0", ValueError, "unknown device 'tpu:0'"),
    ("cuda:x", ValueError, "bad device index in 'cuda:x'"),
    ("cuda:-1", ValueError, "bad device index in 'cuda:-1'"),
    ("cuda:", ValueError, None),
    ("cpu:1", ValueError, "the CPU has no index"),
    (3, TypeError, "device must be a string like 'cpu' or 'cuda:0', got int"),
    (1.5, TypeError, "got float"),
])
def test_bad_device_specs_raise_clear_errors(spec, error, message):
    if spec == "cuda:":
        assert ta.device(spec) == "cuda"  # an empty index is the default device
        return
    with pytest.raises(error, match=message):
        ta.device(spec)


@pytest.mark.parametrize("make", [
    lambda: ta.zeros(2, device="npu"),
    lambda: ta.tensor([1.0], device="gpu:0"),
    lambda: ta.tensor([1.0]).to("cuda:one"),
])
def test_bad_device_in_factories_and_to(make):
    with pytest.raises(ValueError, match="device"):
        make()


def test_cpu_tensors():
    x = ta.tensor([1.0, 2.0], device="cpu")
    assert x.device == "cpu" and x.device.type == "cpu" and x.device.index is None
    assert isinstance(x.data, np.ndarray) and x.xp is np
    assert ta.zeros(2, device=ta.device("cpu")).device == "cpu"


# ---------------------------------------------------------------------------------------------------------
# Without a GPU
# ---------------------------------------------------------------------------------------------------------


@needs_no_cuda
def test_cuda_is_not_available_here():
    assert ta.cuda.is_available() is False
    assert ta.is_available("cuda") is False
    assert ta.is_available("cpu") is True


@needs_no_cuda
@pytest.mark.parametrize("make", [
    lambda: ta.tensor([1.0]).to("cuda"),
    lambda: ta.tensor([1.0]).to(device="cuda:1"),
    lambda: ta.tensor([1.0]).cuda(),
    lambda: ta.tensor([1.0], device="cuda"),
    lambda: ta.zeros(2, device="cuda"),
    lambda: ta.randn(2, device="cuda"),
    lambda: ta.arange(3, device="cuda"),
    lambda: ta.eye(2, device="cuda:0"),
])
def test_using_cuda_without_gpu_raises_clear_error(make):
    with pytest.raises(RuntimeError, match=r"device 'cuda' is not available.*pip install"):
        make()


@needs_no_cuda
def test_failed_move_leaves_tensor_usable():
    x = ta.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError):
        x.to("cuda")
    (x * 2).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0])


def test_numpy_only_install_does_not_import_cupy():
    """Asking a NumPy array for its device must never import CuPy (a NumPy-only user must not pay for it)."""
    import sys

    if "cupy" in sys.modules:
        pytest.skip("CuPy is already imported in this process")
    x = ta.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    _ = x.device, repr(x), x.numpy()
    assert "cupy" not in sys.modules


# ---------------------------------------------------------------------------------------------------------
# A fake third backend: the seam, moving tensors, and mixed-device errors
# ---------------------------------------------------------------------------------------------------------


class FakeArray(np.ndarray):
    """NumPy memory that pretends to live on another device; ``index`` says which one."""

    def __array_finalize__(self, obj):
        self.index = getattr(obj, "index", 0)


class FakeBackend(Backend):
    name = "fake"

    def import_module(self):
        return np

    def owns(self, array):
        return isinstance(array, FakeArray)

    def index_of(self, array):
        return array.index

    def from_numpy(self, array, index):
        out = np.array(array, copy=True).view(FakeArray)
        out.index = index or 0
        return out

    def to_numpy(self, array):
        return np.array(array.view(np.ndarray), copy=True)


@pytest.fixture
def fake_backend(monkeypatch):
    # first, so that it claims its arrays before the NumPy backend (which owns every ndarray)
    monkeypatch.setattr(backend_mod, "BACKENDS", {"fake": FakeBackend(), **backend_mod.BACKENDS})
    return "fake"


def test_fake_backend_device_strings(fake_backend):
    assert ta.device("fake:3") == Device("fake", 3)
    with pytest.raises(ValueError, match=r"expected one of \['cpu', 'cuda', 'fake'(, 'strict')?\]"):
        ta.device("tpu")


def test_moving_between_backends_and_gradients_come_back(fake_backend):
    x = ta.tensor([1.0, 2.0, 3.0], requires_grad=True)
    w = ta.tensor([4.0, 5.0, 6.0], requires_grad=True)
    xf, wf = x.to("fake"), w.to("fake:0")
    assert xf.device == "fake:0" and isinstance(xf.data, FakeArray) and xf.grad_fn is not None
    assert "device='fake:0'" in repr(xf)
    np.testing.assert_array_equal(xf.numpy(), [1.0, 2.0, 3.0])
    assert type(xf.numpy()) is np.ndarray
    yf = xf * wf
    assert yf.device == "fake:0"
    yf.to("cpu").sum().backward()
    assert type(x.grad.data) is np.ndarray and x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), [4.0, 5.0, 6.0])
    np.testing.assert_allclose(w.grad.numpy(), [1.0, 2.0, 3.0])
    assert ta.tensor(x.data, device="fake:2").device == "fake:2"


@pytest.mark.parametrize("op, name", [
    (lambda a, b: a + b, "Add"),
    (lambda a, b: a * b, "Mul"),
    (lambda a, b: a @ b, "MatMul"),
    (lambda a, b: ta.maximum(a, b), "Maximum"),
    (lambda a, b: ta.cat([a, b]), "Cat"),
    (lambda a, b: ta.where(a > 0, a, b), "Where"),
])
def test_mixed_device_op_names_both_devices(fake_backend, op, name):
    a = ta.tensor([1.0, 2.0], requires_grad=True)
    b = ta.tensor([3.0, 4.0]).to("fake:1")
    with pytest.raises(RuntimeError, match=rf"{name}: expected all tensors on the same device, got (cpu \(2,\), )+"
                                           r"fake:1 \(2,\)\. Move them"):
        op(a, b)
    with pytest.raises(RuntimeError, match=r"fake:1 \(2,\), cpu \(2,\)"):
        op(b, a)


def test_two_indices_of_one_backend_do_not_mix(fake_backend):
    a, b = ta.tensor([1.0]).to("fake:0"), ta.tensor([2.0]).to("fake:1")
    with pytest.raises(RuntimeError, match=r"fake:0 \(1,\), fake:1 \(1,\)"):
        a * b
    np.testing.assert_array_equal((a * b.to("fake:0")).numpy(), [2.0])


def test_index_tensor_on_another_device_is_refused(fake_backend):
    x = ta.tensor([1.0, 2.0, 3.0])
    index = ta.tensor([0, 2]).to("fake")
    with pytest.raises(RuntimeError, match="getitem: the index is on fake:0 but the tensor is on cpu"):
        x[index]


def test_mixed_device_check_through_patched_device_of(monkeypatch):
    """The check asks ``device_of`` about each input: make it report a GPU for one marked array type."""
    from tinygrad_attn import autograd

    class Marked(np.ndarray):
        pass

    real = autograd.device_of
    monkeypatch.setattr(autograd, "device_of", lambda a: Device("cuda", 0) if isinstance(a, Marked) else real(a))
    a = ta.tensor([[1.0, 2.0]])
    b = ta.from_numpy(np.array([[3.0], [4.0]], dtype=np.float32).view(Marked))
    with pytest.raises(RuntimeError, match=r"MatMul: .* got cpu \(1, 2\), cuda:0 \(2, 1\).*\.to\(device\)"):
        a @ b


# ---------------------------------------------------------------------------------------------------------
# With a GPU (skipped cleanly without CuPy or a GPU)
# ---------------------------------------------------------------------------------------------------------


def test_device_fixture_tensors_compute_and_differentiate(device):
    x = ta.tensor([1.0, 2.0, 3.0], device=device, requires_grad=True)
    assert x.device == device and x.device.type == device
    y = (x * x).sum()
    y.backward()
    assert x.grad.device == device
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0, 6.0])
    assert type(x.numpy()) is np.ndarray
    for make in (ta.zeros, ta.ones, ta.randn, ta.rand):
        assert make(2, 3, device=device).device == device
    assert ta.arange(4, device=device).device == device and ta.eye(2, device=device).device == device


@needs_cuda
def test_cuda_round_trip_and_gradient_back_to_cpu():
    cupy = pytest.importorskip("cupy")
    x = ta.tensor([1.0, 2.0], requires_grad=True)
    g = x.to("cuda")
    assert isinstance(g.data, cupy.ndarray) and g.device == "cuda:0" and "device='cuda:0'" in repr(g)
    (g * g).sum().backward()
    assert x.grad.device == "cpu"
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])
    assert g.cpu().device == "cpu" and x.cuda().device == "cuda"


@needs_cuda
def test_cuda_and_cpu_do_not_mix():
    a, b = ta.tensor([1.0]), ta.tensor([2.0], device="cuda")
    with pytest.raises(RuntimeError, match=r"Mul: expected all tensors on the same device, got cpu \(1,\), cuda:0"):
        a * b


@needs_cuda
def test_manual_seed_reproducible_on_cuda():
    ta.manual_seed(7)
    a = ta.randn(5, device="cuda").numpy()
    ta.manual_seed(7)
    np.testing.assert_array_equal(ta.randn(5, device="cuda").numpy(), a)


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed")
def test_missing_cupy_is_named_in_the_error():
    with pytest.raises(RuntimeError, match="No module named 'cupy'"):
        ta.zeros(1, device="cuda")


def test_python_scalars_enter_ops_as_shared_read_only_constants_that_keep_their_value():
    """x * c reuses one read-only 0-d array per (value, dtype) on the CPU; 0.0 and -0.0, 1 and True, float32
    and float64 each keep their own, and no op's result is one of them."""
    from tinygrad_attn.backend import scalar_like

    like32, like64 = np.zeros(2, np.float32), np.zeros(2)
    a = scalar_like(0.5, like32.dtype, like32)
    assert scalar_like(0.5, like32.dtype, like32) is a and not a.flags.writeable
    assert scalar_like(0.5, like64.dtype, like64).dtype == np.float64
    x = ta.tensor([1.0, -2.0])
    assert np.array_equal(np.signbit((x * 0.0).numpy()), [False, True])
    assert np.array_equal(np.signbit((x * -0.0).numpy()), [True, False])  # not the cached 0.0
    assert scalar_like(True, np.dtype(bool), np.zeros(1, bool)).dtype == np.bool_
    y = x * 0.5
    y += 1  # results are the op's own memory, writable
    assert np.allclose(y.numpy(), [1.5, 0.0])
