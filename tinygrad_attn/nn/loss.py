"""Loss layers: ``CrossEntropyLoss``, ``NLLLoss``, ``MSELoss``: Module wrappers of the functions in
``tinygrad_attn.functional`` that remember their options."""

from __future__ import annotations

from .. import functional as F
from ..tensor import Tensor
from .module import Module

_REDUCTIONS = ("none", "mean", "sum")


class _Loss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction


class CrossEntropyLoss(_Loss):
    """-log softmax(input)[target], averaged over the targets that are not ``ignore_index``.

    ``input``: logits (N, C), or (..., C) with the classes in the LAST dim (PyTorch puts them in dim 1 for
    more than 2 dims: permute such inputs first); ``target``: class ids of shape (...), or class
    probabilities of the input's shape (a float tensor; "mean" then averages over the rows).
    ``label_smoothing`` = e mixes the target with the uniform distribution: q = (1 - e) one_hot + e / C
    (Szegedy et al., 2016). ``weight`` (C,) rescales each class.
    """

    def __init__(self, weight: Tensor | None = None, *, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.register_buffer("weight", weight)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(_Loss):
    """-input[target]: the negative log-likelihood of log-probabilities (pair it with ``LogSoftmax``);
    targets equal to ``ignore_index`` count for nothing."""

    def __init__(self, weight: Tensor | None = None, *, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class MSELoss(_Loss):
    """(input - target)^2, averaged (or summed, or per element)."""

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__(reduction)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)
