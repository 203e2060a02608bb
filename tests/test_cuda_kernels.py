"""The fused CUDA kernels (tinygrad_attn/cuda_kernels.py): on a GPU each gives what its op's array code gives
(forward and backward, kernels on against kernels off); everywhere else the array code runs; the module
imports without CuPy; and the kernel sources compile with nvcc where there is one (no GPU needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import tinygrad_attn as ta
from tests.conftest import CUDA_AVAILABLE
from tinygrad_attn import cuda_kernels

F = ta.F
needs_cuda = pytest.mark.skipif(not CUDA_AVAILABLE, reason="no CUDA device: CuPy is not installed or no GPU was found")
KERNELS = ("adam_update_", "layer_norm_forward", "layer_norm_input_grad", "masked_softmax_")


def _layer_norm(device, affine=True, shape=(3, 5, 300), seed=0, dtype=np.float32):
    """Layer norm over the last dim (300 > one block of 256 threads), forward and backward: y, dx, dw, db."""
    rng = np.random.default_rng(seed)
    x = ta.tensor(rng.standard_normal(shape).astype(dtype) * 3 + 1, device=device, requires_grad=True)
    w = ta.tensor(rng.standard_normal(shape[-1]).astype(dtype), device=device, requires_grad=True)
    b = ta.tensor(rng.standard_normal(shape[-1]).astype(dtype), device=device, requires_grad=True)
    y = F.layer_norm(x, shape[-1:], w if affine else None, b if affine else None)
    g = ta.tensor(rng.standard_normal(shape).astype(dtype), device=device)
    (y * g).sum().backward()
    return [y.numpy(), x.grad.numpy()] + ([w.grad.numpy(), b.grad.numpy()] if affine else [])


def _attention(device, seed=0, dtype=np.float32):
    """Attention with a padding mask that leaves one query nothing (a row of zeros), forward and backward."""
    rng = np.random.default_rng(seed)
    q, k, v = (ta.tensor(rng.standard_normal((2, 2, 7, 16)).astype(dtype), device=device, requires_grad=True)
               for _ in range(3))
    mask_array = rng.random((2, 1, 7, 7)) > 0.3
    mask_array[0, 0, 3] = False  # query 3 of the first sequence may attend nowhere
    mask = ta.tensor(mask_array, device=device)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    out.sum().backward()
    return [out.numpy(), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()]


def _adam(device, **options):
    """Three Adam steps on two parameters (AdamW, L2 decay and maximize via ``options``)."""
    rng = np.random.default_rng(1)
    params = [ta.tensor(rng.standard_normal(s).astype(np.float32), device=device, requires_grad=True)
              for s in ((4, 5), (300,))]
    opt = (ta.optim.AdamW if options.pop("adamw", False) else ta.optim.Adam)(params, lr=1e-2, eps=1e-9, **options)
    for _ in range(3):
        for p in params:
            p.grad = ta.tensor(rng.standard_normal(p.shape).astype(np.float32), device=device)
        opt.step()
    return [p.numpy() for p in params] + [opt.state[p]["exp_avg_sq"].numpy() for p in params]


CASES = {
    "layer_norm": lambda device: _layer_norm(device),
    "layer_norm_without_affine": lambda device: _layer_norm(device, affine=False, shape=(4, 17)),
    "attention": _attention,
    "adam": lambda device: _adam(device),
    "adamw_decay": lambda device: _adam(device, adamw=True, weight_decay=0.1),
    "adam_l2_maximize": lambda device: _adam(device, weight_decay=0.1, maximize=True),
}


@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_the_array_code_runs_off_the_gpu(monkeypatch, device):
    """On NumPy and on the strict stand-in (a CuPy look-alike that is no CuPy) no kernel is asked for, and the
    ops give the CPU's results."""
    def refuse(*args, **kwargs):
        raise AssertionError("a CUDA kernel was called off the GPU")

    for name in KERNELS:
        monkeypatch.setattr(cuda_kernels, name, refuse)
    for name, case in CASES.items():
        for got, want in zip(case(device), case("cpu")):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)
    assert not cuda_kernels.fused(np.zeros(3, np.float32))
    assert not cuda_kernels.fused(ta.zeros(3, device=device).data)


def test_importing_the_kernels_needs_no_cupy():
    code = ("import sys; sys.modules['cupy'] = None\n"  # any import of CuPy would fail
            "import numpy as np, tinygrad_attn, tinygrad_attn.cuda_kernels as k\n"
            "assert not k.fused(np.zeros(3, np.float32))\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def _elementwise_as_cuda(params: tuple[str, str], body: str, name: str) -> str:
    """An ElementwiseKernel's body in a CUDA function of its parameters (by value in, by reference out: what
    CuPy generates per element), its type placeholders (T, G) bound to float and to double: what nvcc can check."""
    placeholders = sorted(set(re.findall(r"\b([A-Z])\b", " ".join(params))))
    signature = ", ".join([f"const {p.strip()}" for p in params[0].split(",")]
                          + [p.strip().replace(" ", "& ", 1) for p in params[1].split(",")])
    return "".join(f"namespace as_{dtype} {{\n" + "".join(f"typedef {dtype} {t};\n" for t in placeholders)
                   + f"__device__ void {name}({signature}) {{\n{body}\n}}\n}}\n" for dtype in ("float", "double"))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc: the kernel sources are compiled on a GPU run")
def test_the_kernel_sources_compile_with_nvcc(tmp_path):
    sources = {"layer_norm.cu": cuda_kernels.LAYER_NORM_SOURCE, "softmax.cu": cuda_kernels.SOFTMAX_SOURCE,
               "adam.cu": _elementwise_as_cuda(cuda_kernels.ADAM_PARAMS, cuda_kernels.ADAM_BODY, "adam")}
    for name, source in sources.items():
        (tmp_path / name).write_text(source)
    procs = [subprocess.run(["nvcc", "-c", "-o", str(tmp_path / f"{name}.o"), str(tmp_path / name)],
                            capture_output=True, text=True, timeout=300) for name in sources]
    for name, proc in zip(sources, procs):
        assert proc.returncode == 0, f"{name}:\n{proc.stderr}"


@needs_cuda
@pytest.mark.parametrize("name", list(CASES))
def test_each_kernel_gives_the_array_code_result_on_the_gpu(monkeypatch, name):
    """Kernels on against kernels off, on the GPU (the array code is the one gradient-checked in the op tests),
    and the kernels were really called."""
    calls = []
    for kernel in KERNELS:
        original = getattr(cuda_kernels, kernel)
        monkeypatch.setattr(cuda_kernels, kernel,
                            lambda *a, _f=original, _n=kernel, **k: calls.append(_n) or _f(*a, **k))
    fused = CASES[name]("cuda")
    assert calls, f"{name}: no kernel ran"
    monkeypatch.setattr(cuda_kernels, "enabled", False)
    for got, want in zip(fused, CASES[name]("cuda")):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)


@needs_cuda
def test_the_kernels_gradients_match_the_float64_array_code_on_the_gpu():
    """Float32 through the kernels against float64 through the array code (gradient-checked in the op tests), on
    the GPU: layer norm and attention, forward and backward."""
    for case in (_layer_norm, _attention):
        for got, want in zip(case("cuda"), case("cuda", dtype=np.float64)):
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4, err_msg=case.__name__)
