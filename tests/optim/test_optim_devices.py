"""Optimizers on a GPU-like device (the strict stand-in, tests/strict_device.py, its second device, and CUDA where
there is one): the same updates as on the CPU, state that stays on the parameter's device, and checkpoints that
move GPU -> CPU -> GPU and resume exactly."""

from __future__ import annotations

import numpy as np
import pytest

import tinygrad_attn as ta

CUDA = pytest.mark.skipif(not ta.cuda.is_available(),
                          reason="no CUDA device: CuPy is not installed or no GPU was found")

OPTIMIZERS = {
    "sgd": lambda ps: ta.optim.SGD(ps, lr=0.1),
    "sgd-momentum-dampening-wd": lambda ps: ta.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "sgd-nesterov-maximize": lambda ps: ta.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, maximize=True),
    "adam": lambda ps: ta.optim.Adam(ps, lr=0.01),
    "adam-amsgrad-wd": lambda ps: ta.optim.Adam(ps, lr=0.01, weight_decay=0.1, amsgrad=True),
    "adamw": lambda ps: ta.optim.AdamW(ps, lr=0.01),
}


def _params(device: str) -> list[ta.Tensor]:
    rng = np.random.default_rng(0)
    return [ta.tensor(rng.standard_normal(shape).astype(np.float32), device=device, requires_grad=True)
            for shape in [(3, 4), (4,), ()]]


def _steps(opt, params, n: int, start: int = 0) -> None:
    for k in range(start, start + n):
        opt.zero_grad()
        loss = sum(((p * (k + 1.0)).tanh() ** 2).sum() for p in params)
        loss.backward()
        opt.step()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("device", ["strict", "strict:1", pytest.param("cuda", marks=CUDA)])
def test_same_updates_as_on_the_cpu(name, device):
    cpu, dev = _params("cpu"), _params(device)
    opt_cpu, opt_dev = OPTIMIZERS[name](cpu), OPTIMIZERS[name](dev)
    _steps(opt_cpu, cpu, 3)
    _steps(opt_dev, dev, 3)
    for a, b in zip(cpu, dev):
        assert type(b.data) is not np.ndarray and b.device == device
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-6, atol=1e-7)
    for state in opt_dev.state.values():
        for v in state.values():
            if isinstance(v, ta.Tensor):
                assert v.device == device


@pytest.mark.parametrize("name", ["sgd-momentum-dampening-wd", "adam-amsgrad-wd"])
def test_checkpoint_moves_device_to_cpu_to_device_and_resumes_exactly(name, tmp_path):
    params = _params("strict")
    opt = OPTIMIZERS[name](params)
    _steps(opt, params, 2)
    ta.save({"params": [p.detach() for p in params], "opt": opt.state_dict()}, tmp_path / "ckpt.safetensors")
    _steps(opt, params, 2, start=2)  # the run that goes on

    saved = ta.load(tmp_path / "ckpt.safetensors")
    cpu = [p.clone().requires_grad_() for p in saved["params"]]
    opt_cpu = OPTIMIZERS[name](cpu)
    opt_cpu.load_state_dict(saved["opt"])
    back = [p.detach().to("strict:1").requires_grad_() for p in cpu]  # and on to another GPU
    opt_back = OPTIMIZERS[name](back)
    opt_back.load_state_dict(opt_cpu.state_dict())
    _steps(opt_back, back, 2, start=2)
    for a, b in zip(params, back):
        assert b.device == "strict:1"
        np.testing.assert_array_equal(b.numpy(), a.numpy())
