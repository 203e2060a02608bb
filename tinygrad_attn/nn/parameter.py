"""Parameter: a Tensor that a Module registers as learnable (``requires_grad=True`` by default)."""

from __future__ import annotations

from typing import Any

from ..tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor that is a module's weight. Assigning one to a Module attribute registers it."""

    __slots__ = ()

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        if data is None:
            data = Tensor._make(__import__("numpy").empty((0,), dtype="float32"))
        source = data.data if isinstance(data, Tensor) else data
        self._init(source if hasattr(source, "__array_priority__") else Tensor(source).data, False, None)
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()
