"""Token ids as a model takes them: an integer Tensor of shape (batch, length) on the model's device."""

from __future__ import annotations

from typing import Any

import numpy as np

import tinygrad_attn as ta
from tinygrad_attn import Tensor


def token_ids(ids: Tensor | np.ndarray, device: Any, what: str) -> Tensor:
    """``ids`` (a Tensor, or anything NumPy takes) as a Tensor on ``device``; ``ValueError`` naming ``what``
    (e.g. ``"Transformer: src"``) unless they are integers of shape (batch, length)."""
    if not isinstance(ids, Tensor):
        ids = ta.tensor(np.asarray(ids), device=device)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(f"{what} must be integer token ids of shape (batch, time), got {ids.dtype} of shape "
                         f"{tuple(ids.shape)}")
    return ids
