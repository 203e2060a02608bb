"""``Dropout``: randomly zero activations while training (Srivastava et al., 2014)."""

from __future__ import annotations

from .. import functional as F
from ..tensor import Tensor
from .module import Module


class Dropout(Module):
    """In training, each element is zeroed with probability p and the survivors are scaled by 1/(1-p), so
    the expected value is unchanged; in eval mode (``model.eval()``) it is the identity. ``inplace`` is
    accepted for PyTorch compatibility; the result is always a new tensor."""

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: probability has to be between 0 and 1, but got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"
