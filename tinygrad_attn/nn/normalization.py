"""``LayerNorm``: normalise each example's features to zero mean and unit variance, then scale and shift."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import functional as F
from ..creation import ones, zeros
from ..tensor import Tensor
from .module import Module
from .parameter import Parameter


class LayerNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, with mean and (biased) variance taken over the
    last ``len(normalized_shape)`` dimensions of each example (Ba et al., 2016).

    ``weight`` starts at ones and ``bias`` at zeros, so a fresh layer only normalises. With
    ``elementwise_affine=False`` there are no parameters; ``bias=False`` keeps the scale only.
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        if elementwise_affine:
            self.weight = Parameter(ones(self.normalized_shape, device=device, dtype=dtype))
            if bias:
                self.bias = Parameter(zeros(self.normalized_shape, device=device, dtype=dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def reset_parameters(self) -> None:
        if self.weight is not None:
            self.weight.data[...] = 1
            self.weight._version.value += 1
        if self.bias is not None:
            self.bias.data[...] = 0
            self.bias._version.value += 1

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")
