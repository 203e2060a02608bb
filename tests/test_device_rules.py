"""The core on a GPU-like device, on the strict stand-in (tests/strict_device.py) and, where there is one, on CUDA:
raw device arrays mixed with tensors, a second device ("strict:1", "cuda:1": everything must run on the array's
own device), random state that resumes exactly on every device, and the host reads of a training step (pinned at
zero, on the stand-in, which counts them)."""

from __future__ import annotations

import numpy as np
import pytest

import tinygrad_attn as ta
import tinygrad_attn.functional as F
from tests.strict_device import StrictArray, host_reads
from tinygrad_attn import nn


def _cuda_count() -> int:
    if not ta.cuda.is_available():
        return 0
    import cupy

    return int(cupy.cuda.runtime.getDeviceCount())


GPUS = _cuda_count()
ONE_GPU = pytest.mark.skipif(GPUS < 1, reason="no CUDA device: CuPy is not installed or no GPU was found")
TWO_GPUS = pytest.mark.skipif(GPUS < 2, reason="fewer than two CUDA devices")
DEVICES = ["strict", pytest.param("cuda", marks=ONE_GPU)]
SECOND_DEVICES = ["strict:1", pytest.param("cuda:1", marks=TWO_GPUS)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("order", ["tensor first", "array first"])
def test_a_raw_device_array_mixes_with_a_device_tensor(order, device):
    t = ta.tensor([1.0, 2.0], device=device)
    a = ta.tensor([10.0, 20.0], device=device).data  # a raw cupy.ndarray (or strict array)
    out = t + a if order == "tensor first" else a + t
    assert isinstance(out, ta.Tensor) and out.device == device and out.dtype == ta.float32
    np.testing.assert_array_equal(out.numpy(), [11.0, 22.0])
    np.testing.assert_array_equal((t * a).numpy(), [10.0, 40.0])


@pytest.mark.parametrize("second", SECOND_DEVICES)
def test_factories_make_tensors_on_the_second_device(second):
    ta.manual_seed(0)
    made = [ta.zeros(2, 3, device=second), ta.ones(2, device=second), ta.full((2,), 3.0, device=second),
            ta.arange(4, device=second), ta.eye(3, device=second), ta.rand(2, device=second),
            ta.randn(2, device=second), ta.randint(0, 5, (3,), device=second),
            ta.tensor([1.0, 2.0], device=second), ta.tensor(np.ones(2), device=second),
            ta.zeros_like(ta.ones(2, device=second))]
    for t in made:
        assert t.device == second and t.data.device.id == 1


@pytest.mark.parametrize("second", SECOND_DEVICES)
def test_a_training_step_runs_on_the_second_device(second):
    """Ops, backward, dropout, nn.init and Adam all enter the array's device (else the stand-in raises)."""
    ta.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3)).to(second)
    nn.init.normal_(model[0].weight, std=0.1)
    nn.init.xavier_uniform_(model[3].weight)
    opt = ta.optim.Adam(model.parameters(), lr=1e-2)
    x = ta.randn(5, 4, device=second)
    y = ta.randn(5, 3, device=second)
    opt.zero_grad(set_to_none=False)
    loss = F.mse_loss(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=False)
    for p in model.parameters():
        assert p.device == second and p.data.device.id == 1 and p.grad.data.device.id == 1


@pytest.mark.parametrize("second", SECOND_DEVICES)
def test_cross_entropy_runs_on_the_second_device(second):
    x = ta.randn(5, 3, device=second, requires_grad=True)
    F.cross_entropy(x, ta.tensor([0, 1, 2, 0, 1], device=second)).backward()
    assert x.grad.data.device.id == 1


@pytest.mark.parametrize("kind", ["strict", pytest.param("cuda", marks=TWO_GPUS)])
def test_moving_between_two_devices_does_not_go_through_the_host(kind):
    x = ta.tensor([1.0, 2.0, 3.0], device=f"{kind}:0", requires_grad=True)
    with host_reads() as reads:  # counts the stand-in's reads (a CUDA copy is checked by where it lands)
        y = x.to(f"{kind}:1")
        (y * y).sum().backward()
    assert reads.count == 0, reads
    assert y.data.device.id == 1 and x.grad.data.device.id == 0
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0, 6.0])


@pytest.mark.parametrize("device", ["cpu", *DEVICES, *SECOND_DEVICES])
def test_random_state_resumes_exactly_on_every_device(device):
    """The run that goes on after saving the state and the run that restores it draw the same numbers:
    dropout masks, rand and randn, on the device (not only on the CPU)."""
    ta.manual_seed(3)
    x = ta.ones(64, device=device)

    def draws() -> list[np.ndarray]:
        return [F.dropout(x, 0.5, training=True).numpy(), ta.rand(8, device=device).numpy(),
                ta.randn(8, device=device).numpy(), ta.rand(8).numpy()]

    draws()  # the run has drawn before it saves
    state = ta.random.get_rng_state()
    going_on = draws()
    ta.manual_seed(99)
    draws()  # another run in between
    ta.random.set_rng_state(state)
    resumed = draws()
    for a, b in zip(going_on, resumed):
        np.testing.assert_array_equal(a, b)


def _mlp_step_reads(loss_fn) -> list:
    ta.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.GELU(), nn.Dropout(0.1), nn.LayerNorm(16), nn.Linear(16, 4))
    model.to("strict")
    opt = ta.optim.Adam(model.parameters(), lr=1e-3)
    x = ta.randn(8, 6, device="strict")
    counts = []
    for _ in range(2):  # the second step runs with the optimizer's state and scratch buffers made
        with host_reads() as reads:
            opt.zero_grad()
            loss = loss_fn(model(x))
            loss.backward()
            opt.step()
        counts.append(reads)
    with host_reads() as reads:
        loss.item()
    assert reads.count == 1 and isinstance(loss.data, StrictArray)
    return counts


def test_host_reads_of_an_mlp_training_step_are_zero():
    """Forward, backward and an Adam step of a small MLP (linear, GELU, dropout, layer norm) read nothing
    back from the device: each read would stall the GPU's queue. Reading the loss is one read, when asked."""
    target = ta.randn(8, 4, device="strict")
    for reads in _mlp_step_reads(lambda out: F.mse_loss(out, target)):
        assert reads.count == 0, reads


def test_host_reads_of_an_mlp_training_step_with_cross_entropy_are_zero():
    y = ta.tensor([0, 1, 2, 3, 0, 1, 2, 3], device="strict")
    for reads in _mlp_step_reads(lambda out: F.cross_entropy(out, y, label_smoothing=0.1)):
        assert reads.count == 0, reads


@pytest.mark.parametrize("loss_fn", ["cross_entropy", "cross_entropy smoothed weighted", "nll_loss"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_an_out_of_range_target_on_a_device_gives_nan_without_a_read(loss_fn, reduction):
    """On the CPU an out-of-range class index raises; on a device the check would be a read (and CuPy would
    wrap the index silently): there the row's loss and gradient are nan instead, never a plausible number.
    The other rows' losses are unchanged; an ignored row may hold any value."""
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    target = np.array([0, 3, 2, -1, -100])  # rows 1 and 3 are out of range, row 4 is ignored
    call = {"cross_entropy": lambda x, t: F.cross_entropy(x, t, reduction=reduction),
            "cross_entropy smoothed weighted": lambda x, t: F.cross_entropy(
                x, t, ta.tensor([1.0, 2.0, 0.5], device=x.device), label_smoothing=0.2, reduction=reduction),
            "nll_loss": lambda x, t: F.nll_loss(x, t, reduction=reduction)}[loss_fn]
    with pytest.raises(IndexError, match="target 3 is out of bounds for 3 classes"):
        call(ta.tensor(x), ta.tensor(target))
    xs = ta.tensor(x, device="strict", requires_grad=True)
    with host_reads() as reads:
        loss = call(xs, ta.tensor(target, device="strict"))
        loss.sum().backward()
    assert reads.count == 0, reads
    if reduction == "none":
        good = [0, 2]
        expected = call(ta.tensor(x[good]), ta.tensor(target[good])).numpy()
        values, grad = loss.numpy(), xs.grad.numpy()
        np.testing.assert_allclose(values[good], expected, rtol=1e-6)
        assert np.isnan(values[[1, 3]]).all() and np.isnan(grad[[1, 3]]).any(axis=1).all()
        assert np.isfinite(grad[[0, 2]]).all()
        assert values[4] == 0.0
    else:
        assert np.isnan(loss.item()) and np.isnan(xs.grad.numpy()[[1, 3]]).any(axis=1).all()
