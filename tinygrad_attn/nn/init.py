"""Weight initialisation, as ``torch.nn.init``: each function fills a tensor in place and returns it.

Why the scales: a layer y = W x with fan_in inputs of unit variance gives outputs of variance
fan_in * Var(W). Keeping activations (and, going backwards, gradients) at unit variance through many
layers therefore needs Var(W) ~ 1 / fan. Glorot & Bengio (2010) average the forward and backward
conditions, Var(W) = 2 / (fan_in + fan_out) ("xavier"); He et al. (2015) correct for ReLU zeroing half
of its inputs, Var(W) = gain^2 / fan with gain = sqrt(2) ("kaiming"). A uniform U(-b, b) has variance
b^2 / 3, hence the sqrt(3) in the uniform variants.

The numbers come from the tensor's device generator (``ta.manual_seed`` makes them reproducible). The
writes are not recorded by autograd (as under ``no_grad``): initialising is not part of the model.
"""

from __future__ import annotations

import math
from typing import Any

from .. import dtypes as _dtypes
from ..backend import on_device_of
from ..random import generator as _generator
from ..tensor import Tensor

__all__ = [
    "calculate_gain", "uniform_", "normal_", "constant_", "ones_", "zeros_", "xavier_uniform_",
    "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
]

_LINEAR_LIKE = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                "conv_transpose3d", "sigmoid")


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor by which to scale the standard deviation so that ``nonlinearity`` keeps unit variance:
    1 (linear, sigmoid), 5/3 (tanh), sqrt(2) (relu), sqrt(2 / (1 + slope^2)) (leaky_relu), 3/4 (selu)."""
    if nonlinearity in _LINEAR_LIKE:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """For a weight of shape (out, in, *kernel): fan_in = in * prod(kernel), fan_out = out * prod(kernel)."""
    if tensor.ndim < 2:
        raise ValueError(f"fan in and fan out can not be computed for a tensor with fewer than 2 dimensions "
                         f"(shape {tuple(tensor.shape)})")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _calculate_correct_fan(tensor: Tensor, mode: str) -> int:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _write(tensor: Tensor, values: Any) -> Tensor:
    """Copy ``values`` into the tensor's memory without recording a graph; bump its version counter."""
    with on_device_of(tensor.data):
        tensor.xp.copyto(tensor.data, values, casting="unsafe")
    tensor._version.value += 1
    return tensor


def _draw(tensor: Tensor, kind: str, generator: Any) -> Any:
    """Standard uniform [0, 1) or standard normal numbers shaped like ``tensor``, in its precision."""
    if not _dtypes.is_floating(tensor.dtype):
        raise TypeError(f"nn.init: can only fill floating-point tensors, got {tensor.dtype}")
    gen = generator if generator is not None else _generator(tensor.device)
    dt = tensor.dtype if tensor.dtype in (_dtypes.float32, _dtypes.float64) else _dtypes.float32
    return getattr(gen, "random" if kind == "uniform" else "standard_normal")(tensor.shape, dtype=dt)


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0, generator: Any = None) -> Tensor:
    """Fill with U(a, b)."""
    with on_device_of(tensor.data):  # drawn and scaled on the tensor's GPU, not the current one
        u = _draw(tensor, "uniform", generator)
        u *= b - a
        u += a
        return _write(tensor, u)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator: Any = None) -> Tensor:
    """Fill with N(mean, std^2)."""
    with on_device_of(tensor.data):
        z = _draw(tensor, "normal", generator)
        z *= std
        z += mean
        return _write(tensor, z)


def constant_(tensor: Tensor, val: float) -> Tensor:
    """Fill with ``val``."""
    return _write(tensor, val)


def ones_(tensor: Tensor) -> Tensor:
    return _write(tensor, 1)


def zeros_(tensor: Tensor) -> Tensor:
    return _write(tensor, 0)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator: Any = None) -> Tensor:
    """U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def xavier_normal_(tensor: Tensor, gain: float = 1.0, generator: Any = None) -> Tensor:
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)), generator)


def kaiming_uniform_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator: Any = None) -> Tensor:
    """U(-b, b) with b = gain * sqrt(3 / fan) (He et al., 2015); ``a`` is the negative slope of a
    leaky ReLU (gain = sqrt(2 / (1 + a^2))), ``mode`` picks fan_in (forward) or fan_out (backward)."""
    if 0 in tensor.shape:
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor: Tensor, a: float = 0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                    generator: Any = None) -> Tensor:
    """N(0, std^2) with std = gain / sqrt(fan) (He et al., 2015)."""
    if 0 in tensor.shape:
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan), generator)
