"""tinygrad_attn: a small deep-learning framework with reverse-mode autograd on NumPy (CPU) and CuPy (GPU).

    import tinygrad_attn as ta
    x = ta.randn(3, 4, requires_grad=True)
    loss = (x @ x.T).relu().sum()
    loss.backward()
    x.grad

The code is meant to be read: start with ``autograd.py`` (the graph and the backward engine), then
``tensor.py`` and ``ops/``. ``docs/autograd.md`` walks through one ``backward()`` call.
"""

import builtins as _builtins

from . import amp, distributed, dtypes, functional, nn, optim, random, viz
from .autograd import Function, backward, enable_grad, grad, is_grad_enabled, no_grad, set_grad_enabled
from .backend import Device, device, is_available
from .creation import (
    arange,
    empty,
    empty_like,
    eye,
    full,
    full_like,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    zeros,
    zeros_like,
)
from .dtypes import (
    bool_,
    double,
    float16,
    float32,
    float64,
    half,
    int8,
    int16,
    int32,
    int64,
    long,
    uint8,
)
from .gradcheck import GradcheckError, gradcheck, gradgradcheck
from .host_memory import keep_freed_memory
from .ops.elementwise import (
    abs,
    clamp,
    cos,
    erf,
    exp,
    gelu,
    log,
    maximum,
    minimum,
    relu,
    sigmoid,
    sin,
    sqrt,
    tanh,
    where,
)
from .ops.linalg import matmul
from .ops.movement import (
    cat,
    chunk,
    flatten,
    gather,
    pad,
    permute,
    reshape,
    split,
    squeeze,
    stack,
    transpose,
    tril,
    triu,
    unsqueeze,
)
from .ops.reduce import amax, amin, argmax, argmin, logsumexp, max, mean, min, std, sum, var
from .random import manual_seed
from .serialization import load, save
from .tensor import Tensor, tensor

bool = bool_  # noqa: A001  (ta.bool, as torch.bool)
clip = clamp
concatenate = concat = cat
F = functional


class cuda:
    """``ta.cuda.is_available()``, as in PyTorch."""

    @staticmethod
    def is_available() -> _builtins.bool:
        return is_available("cuda")


def from_numpy(array: object) -> Tensor:
    """A tensor sharing memory with a NumPy (or CuPy) array."""
    return Tensor._make(array)


__version__ = "0.1.0"
