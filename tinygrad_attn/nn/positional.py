"""``PositionalEncoding``: the sinusoidal position signal of Vaswani et al. (2017), section 3.5.

Attention sees a set, not a sequence: nothing in softmax(Q K^T) V depends on where a token sits. The paper
adds to each embedding a vector that depends only on its position:

    PE[pos, 2i] = sin(pos / 10000^(2i / d_model)),   PE[pos, 2i + 1] = cos(pos / 10000^(2i / d_model))
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..backend import to_device
from ..tensor import Tensor
from .dropout import Dropout
from .module import Module

__all__ = ["PositionalEncoding", "sinusoids"]


def sinusoids(n_positions: int, d_model: int, dtype: Any = np.float32) -> np.ndarray:
    """The (n_positions, d_model) table PE above, computed in float64 and rounded once to ``dtype``.

    Each pair of dimensions is a sinusoid of its own wavelength (2 pi to 10000 * 2 pi), so PE[pos + k] is a
    linear function of PE[pos]: relative positions are easy to attend to."""
    position = np.arange(n_positions, dtype=np.float64)[:, None]
    inv_wavelength = np.exp(np.arange(0, d_model, 2, dtype=np.float64) * (-math.log(10000.0) / d_model))
    angles = position * inv_wavelength  # (n_positions, ceil(d_model / 2))
    table = np.zeros((n_positions, d_model), dtype=np.float64)
    table[:, 0::2] = np.sin(angles)
    table[:, 1::2] = np.cos(angles[:, : d_model // 2])
    return table.astype(dtype, copy=False)


class PositionalEncoding(Module):
    """Add ``sinusoids`` to a sequence of embeddings, then apply dropout: Dropout(x + PE[start : start + S]).

    The table is a non-persistent buffer ``pe`` of shape (max_len, d_model) (not in ``state_dict``: it is a
    function of the shape) and grows by itself when a longer sequence arrives.

    Input (S, N, d_model), or (N, S, d_model) with ``batch_first=True``. ``forward(x, start=k)`` adds the
    positions k, k+1, ... (for decoding one step at a time with a key/value cache). The paper also scales
    the embeddings by sqrt(d_model) before adding; that belongs to the model, not to this layer.
    """

    pe: Tensor

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000, *, batch_first: bool = False,
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__()
        if d_model <= 0 or max_len <= 0:
            raise ValueError(f"PositionalEncoding: d_model ({d_model}) and max_len ({max_len}) must be positive")
        self.d_model, self.batch_first = d_model, batch_first
        self.dropout = Dropout(dropout)
        table = Tensor(sinusoids(max_len, d_model, np.float64), dtype=dtype if dtype is not None else "float32")
        self.register_buffer("pe", table.to(device) if device is not None else table, persistent=False)

    def forward(self, x: Tensor, start: int = 0) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"PositionalEncoding: expected input of shape ({'N, S' if self.batch_first else 'S, N'}"
                             f", {self.d_model}), got {tuple(x.shape)}")
        if start < 0:
            raise ValueError(f"PositionalEncoding: start must be >= 0, got {start}")
        length = x.shape[1] if self.batch_first else x.shape[0]
        end = start + length
        if end > self.pe.shape[0]:  # a longer sequence than seen so far: extend the table
            table = sinusoids(max(end, 2 * self.pe.shape[0]), self.d_model, self.pe.dtype)
            self.pe = Tensor._make(to_device(table, self.pe.device))
        pe = Tensor._make(self.pe.data[start:end])  # a view of the table (a buffer: no gradient)
        if not self.batch_first:  # (S, 1, d_model) against (S, N, d_model); batch first broadcasts as it is
            pe = pe.unsqueeze(1)
        return self.dropout(x + pe.to(x.dtype))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.pe.shape[0]}, batch_first={self.batch_first}"
