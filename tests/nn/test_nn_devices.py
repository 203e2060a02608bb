"""nn layers on a GPU-like device (the strict stand-in, tests/strict_device.py): each layer gives the CPU's
outputs and gradients, keeps everything on the device, and reads nothing back to the host in forward+backward
(each read would stall the GPU's queue)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest

import tinygrad_attn as ta
import tinygrad_attn.functional as F
from tests.strict_device import host_reads
from tinygrad_attn import nn


def _x(*shape: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _causal(n: int) -> np.ndarray:
    return np.triu(np.ones((n, n), dtype=bool), 1)


def _pad(b: int, n: int) -> np.ndarray:
    m = np.zeros((b, n), dtype=bool)
    m[0, -2:] = True
    return m


# name -> (make module, inputs as host arrays, how to call it)
CASES: dict[str, tuple[Callable[[], nn.Module], list[np.ndarray], Callable]] = {
    "linear": (lambda: nn.Linear(5, 3), [_x(4, 5)], lambda m, x: m(x)),
    "layer_norm": (lambda: nn.LayerNorm(5), [_x(4, 5)], lambda m, x: m(x)),
    "embedding": (lambda: nn.Embedding(7, 4, padding_idx=0), [np.array([[1, 0, 6], [2, 2, 3]])], lambda m, i: m(i)),
    "gelu-relu-tanh": (lambda: nn.Sequential(nn.Linear(5, 5), nn.GELU(), nn.ReLU(), nn.Tanh()), [_x(4, 5)],
                       lambda m, x: m(x)),
    "mha": (lambda: nn.MultiheadAttention(8, 2, batch_first=True), [_x(2, 5, 8)], lambda m, x: m(x, x, x)[0]),
    "mha-causal-mask": (lambda: nn.MultiheadAttention(8, 2, batch_first=True), [_x(2, 5, 8), _causal(5)],
                        lambda m, x, mask: m(x, x, x, attn_mask=mask)[0]),
    "mha-key-padding": (lambda: nn.MultiheadAttention(8, 2, batch_first=True), [_x(2, 5, 8), _pad(2, 5)],
                        lambda m, x, pad: m(x, x, x, key_padding_mask=pad)[0]),
    "encoder-layer": (lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
                      [_x(2, 5, 8), _pad(2, 5)], lambda m, x, pad: m(x, src_key_padding_mask=pad)),
    "decoder-layer": (lambda: nn.TransformerDecoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
                      [_x(2, 4, 8), _x(2, 5, 8, seed=2), _causal(4)], lambda m, y, mem, mask: m(y, mem, tgt_mask=mask)),
}



def _run(name: str, device: str):
    make, arrays, call = CASES[name]
    ta.manual_seed(0)
    module = make()
    module = copy.deepcopy(module).to(device) if device != "cpu" else module
    inputs = [ta.tensor(a, device=device, requires_grad=a.dtype.kind == "f") for a in arrays]
    with host_reads() as reads:
        out = call(module, *inputs)
        (out * ta.tensor(_x(*out.shape, seed=3), device=device)).sum().backward()
    grads = [p.grad for p in module.parameters()] + [t.grad for t in inputs if t.requires_grad]
    return out, grads, reads


@pytest.mark.parametrize("name", list(CASES))
def test_same_outputs_and_gradients_as_on_the_cpu(name):
    out_cpu, grads_cpu, _ = _run(name, "cpu")
    out, grads, _ = _run(name, "strict")
    assert out.device == "strict"
    np.testing.assert_allclose(out.numpy(), out_cpu.numpy(), rtol=1e-5, atol=1e-6)
    for g, gc in zip(grads, grads_cpu):
        assert (g is None) == (gc is None)
        if g is not None:
            assert g.device == "strict"
            np.testing.assert_allclose(g.numpy(), gc.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
def test_forward_and_backward_read_nothing_from_the_device(name):
    _, _, reads = _run(name, "strict")
    assert reads.count == 0, reads


def test_an_out_of_range_id_gives_a_nan_row_on_the_device_without_a_read():
    """On the CPU an out-of-range id raises; on a device the check would be a read (and CuPy would wrap the id
    silently): there the id's row of the output is nan, the others are looked up as usual."""
    table = ta.tensor(_x(5, 3), requires_grad=True)
    ids = np.array([[1, 5, 4], [-1, 0, 2]])
    with pytest.raises(IndexError, match="id -1 is out of range for a table of 5 rows"):
        F.embedding(ta.tensor(ids), table)
    strict_table = ta.tensor(_x(5, 3), device="strict", requires_grad=True)
    with host_reads() as reads:
        out = F.embedding(ta.tensor(ids, device="strict"), strict_table)
        out.sum().backward()
    assert reads.count == 0, reads
    values = out.numpy()
    assert np.isnan(values[0, 1]).all() and np.isnan(values[1, 0]).all()
    good = np.array([[True, False, True], [False, True, True]])
    np.testing.assert_array_equal(values[good], _x(5, 3)[ids[good]])


# max_norm 1 clips these gradients (norms of about 15, 11, 44 by order); 100 leaves them as they are
@pytest.mark.parametrize("max_norm", [1.0, 100.0])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, "inf"])
@pytest.mark.parametrize("second", ["strict", "strict:1"])
def test_clip_grad_norm_on_the_device(norm_type, max_norm, second):
    """The norm and the factor stay on the device (gradients on one device, or on two)."""
    def clipped(devices):
        params = [ta.tensor(_x(3, 4, seed=s), device=d, requires_grad=True) for s, d in zip((1, 2), devices)]
        for p in params:
            (p * p * 3.0).sum().backward()
        with host_reads() as reads:
            total = nn.utils.clip_grad_norm_(params, max_norm=max_norm, norm_type=float(norm_type))
        return total, [p.grad for p in params], reads

    total_cpu, grads_cpu, _ = clipped(["cpu", "cpu"])
    total, grads, reads = clipped(["strict", second])
    assert total.device == "strict"
    np.testing.assert_allclose(total.numpy(), total_cpu.numpy(), rtol=1e-6)
    for g, gc, d in zip(grads, grads_cpu, ["strict", second]):
        assert g.device == d
        np.testing.assert_allclose(g.numpy(), gc.numpy(), rtol=1e-6)
    assert reads.count == 0, reads


def test_clip_grad_norm_reads_the_norm_only_for_error_if_nonfinite():
    p = ta.tensor([1.0, 2.0], device="strict", requires_grad=True)
    (p * np.inf).sum().backward()
    with host_reads() as reads, pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)
    assert reads.count >= 1
