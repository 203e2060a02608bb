"""Key/value caches: what attention computed for earlier positions, kept for incremental decoding.

A decoder that emits one token per step would, without a cache, recompute every earlier position's keys
and values at every step. ``MultiheadAttention(..., cache=KVCache())`` projects only the new positions,
appends their keys and values to the cache and attends over all of them: step t costs one position's
projections and one row of attention scores instead of t of each.

- ``KVCache``: one attention layer's keys and values, (N, num_heads, S, head_dim) arrays each. A growing
  cache (self-attention) appends the new positions on every call; a ``static`` one (cross-attention over
  an encoder's output, the same at every step) is filled on the first call and read afterwards.
- ``DecoderCache``: the caches of a stack of layers (self-attention per layer, and cross-attention per
  layer for an encoder-decoder) and ``length``, the number of positions decoded so far (the next
  position's index, for positional encodings). A decoder-only stack takes ``cross_attention=False``.

Plain arrays, no autograd: caches are for inference, under ``ta.no_grad()``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..backend import array_module, device_of, to_device
from ..tensor import Tensor

__all__ = ["KVCache", "DecoderCache"]


class KVCache:
    """The keys and values of one attention layer for the positions seen so far: (N, H, S, d_head) each.

    A growing cache writes new positions into preallocated arrays whose capacity doubles when full, so
    appending one position copies one position, not the whole prefix. ``reorder`` keeps a subset or a
    permutation of the batch rows (beam search reshuffles hypotheses; finished sentences leave).
    """

    def __init__(self, static: bool = False) -> None:
        self.static = static
        self.k: Any = None  # arrays (N, H, capacity, d_head); positions [0, length) are in use
        self.v: Any = None
        self.length = 0

    def __repr__(self) -> str:
        shape = None if self.k is None else (self.k.shape[0], self.k.shape[1], self.length, self.k.shape[3])
        return f"KVCache(static={self.static}, shape={shape})"

    @property
    def filled(self) -> bool:
        """True once a static cache holds its keys and values (then attention reads them, projecting nothing)."""
        return self.k is not None

    def keys_values(self) -> tuple[Tensor, Tensor]:
        """All cached keys and values, (N, H, length, d_head) each: views, not copies."""
        if self.k is None:
            raise RuntimeError("KVCache: empty; nothing has been cached yet")
        return Tensor._make(self.k[:, :, : self.length]), Tensor._make(self.v[:, :, : self.length])

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add the keys and values (N, H, t, d_head) of t new positions and return all of them so far. A
        static cache stores them (once) as they are."""
        if k.ndim != 4 or tuple(k.shape) != tuple(v.shape):
            raise ValueError(f"KVCache: keys and values must both be (N, H, t, d_head), got {tuple(k.shape)} and "
                             f"{tuple(v.shape)}")
        if self.static:
            if self.k is not None:
                raise RuntimeError("KVCache: a static cache is filled once; use a new cache for new keys and values")
            self.k, self.v, self.length = k.data, v.data, k.shape[2]
            return k, v
        if self.k is not None and (self.k.shape[:2] != k.shape[:2] or self.k.shape[3] != k.shape[3]
                                   or self.k.dtype != k.dtype):
            raise ValueError(f"KVCache: new keys {tuple(k.shape)} {k.dtype} do not fit the cached ones "
                             f"{(self.k.shape[0], self.k.shape[1], self.length, self.k.shape[3])} {self.k.dtype}")
        t = k.shape[2]
        if self.k is None or self.length + t > self.k.shape[2]:
            capacity = max(16, 2 * (self.length + t))
            grown_k = k.xp.empty(k.shape[:2] + (capacity,) + k.shape[3:], dtype=k.dtype)
            grown_v = k.xp.empty_like(grown_k)
            if self.k is not None:
                grown_k[:, :, : self.length] = self.k[:, :, : self.length]
                grown_v[:, :, : self.length] = self.v[:, :, : self.length]
            self.k, self.v = grown_k, grown_v
        self.k[:, :, self.length : self.length + t] = k.data
        self.v[:, :, self.length : self.length + t] = v.data
        self.length += t
        return self.keys_values()

    def reorder(self, index: Any) -> None:
        """Keep batch rows ``index`` (an integer array), in that order. Only the positions in use are copied,
        not the spare capacity; a permutation of the same size rewrites just the rows that change."""
        if self.k is None:
            return
        index = np.asarray(index)
        if self.static:
            idx = _on_device_of(index, self.k)
            self.k, self.v = self.k[idx], self.v[idx]
            return
        used = self.length
        if len(index) == self.k.shape[0]:  # a permutation (with repeats): rewrite only the rows that change
            moved = np.flatnonzero(index != np.arange(len(index)))
            if len(moved):
                source, moved = _on_device_of(index[moved], self.k), _on_device_of(moved, self.k)
                self.k[moved, :, :used] = self.k[source, :, :used]  # the right side is a copy: read before written
                self.v[moved, :, :used] = self.v[source, :, :used]
            return
        idx = _on_device_of(index, self.k)
        k = array_module(self.k).empty((len(index),) + self.k.shape[1:], dtype=self.k.dtype)
        v = array_module(self.k).empty_like(k)
        k[:, :, :used] = self.k[idx, :, :used]
        v[:, :, :used] = self.v[idx, :, :used]
        self.k, self.v = k, v


class DecoderCache:
    """The key/value caches of a stack of ``num_layers`` layers, and ``length``, the positions decoded so far.

    ``self_attn[i]`` is layer i's growing self-attention cache; with ``cross_attention`` (an encoder-decoder),
    ``cross_attn[i]`` is its static cache of the encoder output's keys and values. Whoever runs the stack
    passes layer i its caches and adds the number of new positions to ``length`` after each call.
    """

    def __init__(self, num_layers: int, cross_attention: bool = True) -> None:
        if num_layers < 0:
            raise ValueError(f"DecoderCache: num_layers must be >= 0, got {num_layers}")
        self.length = 0
        self.self_attn = [KVCache() for _ in range(num_layers)]
        self.cross_attn: list[KVCache | None] = [KVCache(static=True) if cross_attention else None
                                                 for _ in range(num_layers)]

    def __repr__(self) -> str:
        return (f"DecoderCache(num_layers={len(self.self_attn)}, cross_attention="
                f"{any(c is not None for c in self.cross_attn)}, length={self.length})")

    def reorder(self, index: Any, cross: bool = True) -> None:
        """Keep batch rows ``index`` (an integer array) in that order. ``cross=False`` leaves the encoder's
        keys/values alone: right when rows are only shuffled among copies of the same sentence (beams)."""
        index = np.asarray(index)
        for cache in self.self_attn:
            cache.reorder(index)
        if cross:
            for cross_cache in self.cross_attn:
                if cross_cache is not None:
                    cross_cache.reorder(index)


def _on_device_of(index: np.ndarray, array: Any) -> Any:
    """The integer array ``index`` on the device of ``array`` (a no-op on the CPU)."""
    return to_device(index, device_of(array))
