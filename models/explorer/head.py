"""Inside one attention head: the numbers of §3.2.1, one query at a time.

For a chosen attention (the encoder's self-attention, the decoder's masked self-attention, or its
cross-attention to the source), layer, head and query position, ``inside_head`` returns each step of

    Attention(q, K, V) = softmax(q K^T / sqrt(d_k) + mask) V

with the model's own weights: the query vector q (d_k,), the keys K (S, d_k), the dot products q.k, the
same divided by sqrt(d_k), the mask (True where the query may not look: padding, or a later target
position), the softmax, the values V (S, d_k) and their weighted sum (d_k,). q, K and V are the head's
slices of the projections x W_q^T + b_q (and so for K, V) of the attention's inputs in that layer, which
come from running the model's own layers up to it (teacher forcing on the given translation).

``positional_encoding`` is the §3.5 table PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(...),
the picture of sinusoids by position and dimension.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

import tinygrad_attn as ta
import tinygrad_attn.functional as F
from models.explorer.sessions import TranslatorSession
from tinygrad_attn import Tensor, nn
from tinygrad_attn.nn.positional import sinusoids

__all__ = ["ATTENTIONS", "inside_head", "positional_encoding"]

ATTENTIONS = ("encoder", "decoder", "cross")  # encoder self, decoder masked self, decoder-to-source


def _attention_inputs(session: TranslatorSession, src_ids: list[int], tgt_in: list[int], attention: str,
                      layer: int) -> tuple[nn.MultiheadAttention, Tensor, Tensor, bool]:
    """The attention module of ``layer``, its query input and key/value input (1, ., D), and whether it is
    causal: the model's layers run up to that layer (call under ``ta.no_grad()`` in eval mode)."""
    model = session.model
    src = np.asarray([src_ids], dtype=np.int64)
    if attention == "encoder":
        x = model.embed(ta.tensor(src))
        for block in model.encoder_layers[:layer]:
            x = block(x)
        enc = model.encoder_layers[layer]
        x_in = enc.norm1(x) if enc.norm_first else x
        return enc.self_attn, x_in, x_in, False
    memory, src_keep = model.encode(src)
    y = model.embed(ta.tensor(np.asarray([tgt_in], dtype=np.int64)))
    for block in model.decoder_layers[:layer]:
        y = block(y, memory, tgt_is_causal=True)
    dec = model.decoder_layers[layer]
    y_in = dec.norm1(y) if dec.norm_first else y
    if attention == "decoder":
        return dec.self_attn, y_in, y_in, True
    # cross-attention reads the output of the first sublayer (residual + norm, §3.1)
    self_out = dec.self_attn(y_in, y_in, y_in, is_causal=True, need_weights=False)[0]
    h = y + self_out if dec.norm_first else dec.norm1(y + self_out)
    return dec.multihead_attn, (dec.norm2(h) if dec.norm_first else h), memory, False


def inside_head(session: TranslatorSession, sentence: str, target_ids: Sequence[int], attention: str, layer: int,
                head: int, query: int) -> dict[str, Any]:
    """Every step of one head's attention for one query (see the module docstring), as lists of floats,
    with the query and key tokens. ``target_ids``: the translation (without ``<s>``/``</s>``)."""
    vocab = session.vocab
    src_ids = session.source_ids(sentence)
    tgt_in = [vocab.bos_id] + list(target_ids)
    with ta.no_grad():
        attn, x_q, x_kv, causal = _attention_inputs(session, src_ids, tgt_in, attention, layer)
        E = attn.embed_dim
        q_all = F.linear(x_q, attn.in_proj_weight[:E], attn.in_proj_bias[:E]).numpy()[0]  # (L, E)
        k_heads, v_heads = attn.key_value(x_kv, x_kv)  # (1, H, S, d_k) each
    d_k = attn.head_dim
    q = q_all[query, head * d_k:(head + 1) * d_k].astype(np.float64)
    keys = k_heads.numpy()[0, head].astype(np.float64)
    values = v_heads.numpy()[0, head].astype(np.float64)
    dots = keys @ q
    scaled = dots / math.sqrt(d_k)
    mask = np.arange(len(keys)) > query if causal else np.zeros(len(keys), dtype=bool)
    masked = np.where(mask, -np.inf, scaled)
    weights = np.exp(masked - masked.max())
    weights /= weights.sum()
    query_tokens = vocab.pieces(src_ids) if attention == "encoder" else vocab.pieces(tgt_in)
    key_tokens = vocab.pieces(tgt_in) if attention == "decoder" else vocab.pieces(src_ids)
    return {"query_tokens": query_tokens, "key_tokens": key_tokens, "d_k": d_k, "query": query,
            "q": _round(q), "keys": _round(keys), "dots": _round(dots), "scaled": _round(scaled),
            "mask": mask.tolist(), "weights": _round(weights), "values": _round(values),
            "output": _round(weights @ values)}


def query_count(session: TranslatorSession, sentence: str, target_ids: Sequence[int], attention: str) -> int:
    """How many query positions the chosen attention has: source pieces (encoder) or ``<s>`` + target."""
    return len(session.source_ids(sentence)) if attention == "encoder" else len(target_ids) + 1


def positional_encoding(n_positions: int, d_model: int) -> list[list[float]]:
    """The (n_positions, d_model) sinusoid table of §3.5 the model adds to its embeddings."""
    return _round(sinusoids(n_positions, d_model))


def _round(a: np.ndarray) -> Any:
    return np.round(np.asarray(a, dtype=np.float64), 5).tolist()
