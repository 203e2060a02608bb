"""The translator's Transformer against a PyTorch twin of the same model and recipe: speed and memory.

    python benchmarks/translator.py                          # preset small, all cores: the table
    python benchmarks/translator.py --preset tiny --json out.json
    python benchmarks/translator.py --checkpoint runs/small  # decode with trained weights (real lengths)
    python benchmarks/translator.py --quick                  # tiny sizes, a few seconds: a smoke run
    python benchmarks/translator.py --preset base --device cuda --precision fp16 --no-rss   # on a GPU
    python benchmarks/translator.py --table fp32.json fp16.json   # one table from earlier --json outputs

**The twin** (``Twin*`` classes below) is the model of ``models/transformer.py`` written with plain
``torch.nn``: post-LN encoder-decoder, the preset's d_model / heads / layers / d_ff, one embedding shared by
source, target and the pre-softmax projection and scaled by sqrt(d_model), sinusoidal positions, dropout 0.1
wherever ours has it (embeddings + positions, attention weights, every sublayer output; after the FFN's ReLU
only if ours has it there: the rates are read from our model and compared place by place), packed Q/K/V
projections (``torch.nn.MultiheadAttention``'s ``in_proj_weight``),
``torch.nn.functional.scaled_dot_product_attention``, label-smoothed (0.1) cross-entropy summed over non-pad
tokens, Adam(0.9, 0.98, 1e-9) with the same Noam schedule (``LambdaLR``). Its parameters have
our parameter names, so our initial weights are copied into it by name; before anything is timed, both
models compute the loss and gradients of one real batch in eval mode (dropout off) and must agree (in
float64, to 1e-9): the two columns then time the same model.

Each framework runs in a worker process of its own (``--same-process`` puts both in this one), as it would
run alone: PyTorch's OpenMP threads and NumPy's OpenBLAS threads never share a process. The workers rebuild
the same initial weights from the seed (checked by a checksum) and are driven in turn over pipes: while one
works, the other sleeps. Times are taken inside the workers with ``time.perf_counter``.

**On a GPU** (``--device cuda``): ours on tinygrad_attn's ``cuda`` device (CuPy), the twin on PyTorch's; the
twin check above still runs on the CPU in float64, before the models move. A GPU works asynchronously, so each
timed call (a training step, one batch's decoding) ends by waiting for the device (``cupy.cuda.Device().
synchronize()``, ``torch.cuda.synchronize()``), and only then is the clock read; nothing is synchronised inside
it. ``--precision fp16``: mixed precision with dynamic loss scaling for both: ours is ``train_step`` with
``train.precision = "fp16"`` (``ta.amp.autocast``, ``ta.amp.GradScaler``), the twin's uses ``torch.autocast``
and ``torch.amp.GradScaler``; decoding runs under autocast too.

What is measured, in one run, with both frameworks given the same number of threads (``--threads``,
default: every core; it sets OMP/OpenBLAS/MKL thread counts before NumPy loads and ``torch.set_num_threads``):

1. **Training**, target tokens per second: our step is ``models.translator.train.train_step`` itself
   (forward, loss, backward, Adam, schedule); the twin's is the same in PyTorch. Real Multi30k de-en batches
   of ~``--max-tokens`` tokens (``TokenBatcher``, 8k joint SentencePiece vocabulary trained on the training
   split), the same batch for both at each step. ``--warmup`` untimed steps, then ``--steps`` timed ones,
   ours and the twin's alternating (which one goes first alternates too), so machine load hits both alike;
   ``--pause`` seconds of idle before each timed call let the other framework's spinning threads sleep.
   Reported: the median over steps of (target tokens / step time), and all tokens / all time. With
   ``--workers N`` our batches are shared by N processes of one BLAS thread each (``train.workers``, data
   parallel: ``models/translator/parallel.py``), the way ``configs/small.yaml`` trains; the twin keeps one
   process with ``--threads`` threads.
2. **Decoding**, sentences per second, batched (``--decode-batch`` sentences, sorted by length), greedy and
   beam 4, with and without the key/value cache, on the first ``--decode-sentences`` val sentences. Ours is
   ``models.translator.search.translate_ids``. The twin runs the *same search algorithm* (same length limit,
   stopping rule, GNMT length penalty, 2k-candidate selection, batch compaction; the per-step bookkeeping is
   the same NumPy code) on the twin; its cache appends each step's keys/values with ``torch.cat`` and
   computes the encoder's keys/values once; without the cache it re-runs the decoder over the whole prefix.
   The frameworks take turns batch by batch (who goes first alternates); everything is decoded
   ``--decode-rounds`` times and each batch counts its fastest round; the outputs are compared. With
   ``--workers N`` each turn is all the sentences, whose batches ours decodes in N processes side by side
   (``decode.workers``, as ``configs/small.yaml`` does) and the twin one after the other with its threads.
   With random weights (no ``--checkpoint``) hardly any sentence emits ``</s>``, so every one runs to the
   length limit (source length + 50): slow, but the same work for both; ``--checkpoint`` gives real lengths.
3. **Peak RSS** of training: each framework in a child process of its own (data, vocabulary, model, then
   ``--rss-steps`` training steps on the largest batches), its peak resident set (``VmHWM``, reset just
   before the steps, so the peak is that of training, not of loading) and how much of it the steps added to
   what the child held before them (imported libraries, data, model, optimiser).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=["tiny", "small", "base"], default="small")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for NumPy's BLAS and for PyTorch alike (default: every core)")
    p.add_argument("--workers", type=int, default=1,
                   help="*our* processes, one BLAS thread each: sharing each training batch (train.workers) and "
                        "decoding batches side by side (decode.workers); default 1: one process with --threads")
    p.add_argument("--steps", type=int, default=20, help="timed training steps per framework (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed training steps first (default 3)")
    p.add_argument("--max-tokens", type=int, default=4000, help="padded tokens per training batch (default 4000)")
    p.add_argument("--vocab-size", type=int, default=8000, help="joint SentencePiece vocabulary (default 8000)")
    p.add_argument("--decode-sentences", type=int, default=256, help="val sentences to decode (default 256)")
    p.add_argument("--decode-batch", type=int, default=64, help="sentences decoded together (default 64)")
    p.add_argument("--beam", type=int, default=4, help="beam size (default 4)")
    p.add_argument("--max-len-a", type=float, default=1.0, help="longest output = a * source length + b (1.0)")
    p.add_argument("--max-len-b", type=int, default=50, help="... + b (default 50, as the translator)")
    p.add_argument("--decode-rounds", type=int, default=2,
                   help="decode everything this many times; each batch counts its fastest round (default 2)")
    p.add_argument("--pause", type=float, default=0.2,
                   help="seconds of idle before each timed call (default 0.2): the other framework's threads, "
                        "which spin for a while after their work, go to sleep first")
    p.add_argument("--no-decode-without-cache", dest="nocache", action="store_false",
                   help="skip the decoding runs without the key/value cache (the slow ones)")
    p.add_argument("--rss-steps", type=int, default=3, help="training steps in each peak-RSS child (default 3)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="a run directory or checkpoint: its weights, preset and vocabulary instead of fresh ones")
    p.add_argument("--data-dir", help="folder with the Multi30k .gz files (default: models.translator.data's lookup)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where both frameworks compute: ours on tinygrad_attn's device, the twin on PyTorch's")
    p.add_argument("--precision", choices=["fp32", "fp16"], default="fp32",
                   help="fp16: mixed precision (autocast + dynamic loss scaling) for both frameworks")
    p.add_argument("--no-decode", dest="decode", action="store_false", help="time training only")
    p.add_argument("--no-rss", dest="rss", action="store_false",
                   help="skip the peak-RSS children (host memory; not what matters on a GPU)")
    p.add_argument("--table", nargs="+", metavar="JSON",
                   help="print one table side by side from earlier --json outputs (e.g. fp32 and fp16), and exit")
    p.add_argument("--no-torch", action="store_true", help="ours only, even if PyTorch is installed")
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH ('-': stdout)")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (a 2-layer d_model-32 model, 2,000 pairs, 300-token batches): a smoke run")
    p.add_argument("--same-process", action="store_true",
                   help="run both frameworks in this process instead of one worker process each")
    p.add_argument("--rss-child", choices=["ours", "torch"], help=argparse.SUPPRESS)  # internal: one RSS child
    p.add_argument("--worker", choices=["ours", "torch"], help=argparse.SUPPRESS)  # internal: one timing worker
    args = p.parse_args(argv)
    if args.workers > 1 and args.device != "cpu":
        p.error(f"--workers {args.workers} is for the CPU (processes of one BLAS thread each); on --device "
                f"{args.device} use 1")
    if args.workers > 1 and args.precision == "fp16":
        p.error(f"--workers {args.workers}: helper processes compute in fp32 only; use 1 with --precision fp16")
    if args.quick:
        args.steps, args.warmup, args.rss_steps = min(args.steps, 3), min(args.warmup, 1), min(args.rss_steps, 1)
        args.max_tokens, args.vocab_size = min(args.max_tokens, 300), min(args.vocab_size, 300)
        args.decode_sentences, args.decode_batch = min(args.decode_sentences, 8), min(args.decode_batch, 4)
        args.max_len_a, args.max_len_b = min(args.max_len_a, 0.2), min(args.max_len_b, 4)
        args.decode_rounds, args.pause = 1, min(args.pause, 0.01)
    return args


# Thread counts must be in the environment before NumPy (OpenBLAS) and PyTorch (OpenMP) start. (Imported as a
# module, e.g. by the tests, this file leaves the environment and PyTorch's settings alone.)
ARGS = parse_args() if __name__ == "__main__" else parse_args([])
if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(ARGS.threads)
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import tinygrad_attn as ta  # noqa: E402
from models.translator import config as cfg  # noqa: E402
from models.translator.batching import Batch, TokenBatcher, decode_batches, restore_order  # noqa: E402
from models.translator.data import load_split  # noqa: E402
from models.translator.search import beam_loop, greedy_loop, max_output_lengths, translate_ids  # noqa: E402
from models.translator.vocab import BOS_ID, EOS_ID, PAD_ID, Vocab  # noqa: E402
from tinygrad_attn.nn.positional import sinusoids  # noqa: E402

ta.keep_freed_memory()  # as the translator's CLI does: each step frees and reallocates the same big arrays

torch: Any = None
if not ARGS.no_torch and "ours" not in (ARGS.rss_child, ARGS.worker):  # our children run without PyTorch
    try:
        import torch
        import torch.nn.functional as TF

        if __name__ == "__main__":
            torch.set_num_threads(ARGS.threads)
    except ImportError:
        torch = None
_Module: Any = torch.nn.Module if torch is not None else object

QUICK_MODEL = dict(d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=64)
QUICK_PAIRS = 2000


def standing_clock() -> float:
    """The training clock given to a schedule whose cosine ends with its minutes: it stands still, so a
    benchmark's few steps keep the lr of the schedule's start (warmup, then the peak), as a real run's would."""
    return 0.0


# ---------------------------------------------------------------------------------------------------------
# The PyTorch twin: models/transformer.py in torch.nn, with the same parameter names
# ---------------------------------------------------------------------------------------------------------


class TwinCache:
    """Per decoder layer: self-attention keys/values so far (grown with torch.cat), cross-attention's once."""

    def __init__(self) -> None:
        self.length = 0
        self.self_kv: dict[int, tuple[Any, Any]] = {}
        self.cross_kv: dict[int, tuple[Any, Any]] = {}

    def reorder(self, index: Any, cross: bool = True) -> None:
        self.self_kv = {i: (k[index], v[index]) for i, (k, v) in self.self_kv.items()}
        if cross:
            self.cross_kv = {i: (k[index], v[index]) for i, (k, v) in self.cross_kv.items()}


class TwinAttention(_Module):
    """Multi-head attention with ``torch.nn.MultiheadAttention``'s parameters (``in_proj_weight`` stacks W_q,
    W_k, W_v): one matmul for self-attention's Q, K, V; for cross-attention Q, then K and V in one, as ours."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, self_attention: bool) -> None:
        super().__init__()
        self.n_heads, self.d_k, self.dropout, self.self_attention = n_heads, d_model // n_heads, dropout, self_attention
        self.in_proj_weight = torch.nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = torch.nn.Parameter(torch.zeros(3 * d_model))
        torch.nn.init.xavier_uniform_(self.in_proj_weight)
        self.out_proj = torch.nn.Linear(d_model, d_model)

    def _heads(self, x: Any, n: int) -> tuple[Any, ...]:
        B, T, _ = x.shape
        return x.view(B, T, n, self.n_heads, self.d_k).permute(2, 0, 3, 1, 4).unbind(0)

    def forward(self, x: Any, memory: Any = None, mask: Any = None, cache: TwinCache | None = None,
                layer: int = 0) -> Any:
        B, T, D = x.shape
        w, b = self.in_proj_weight, self.in_proj_bias
        if self.self_attention:
            q, k, v = self._heads(TF.linear(x, w, b), 3)
            if cache is not None:
                if layer in cache.self_kv:
                    past_k, past_v = cache.self_kv[layer]
                    k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
                cache.self_kv[layer] = (k, v)
        else:
            (q,) = self._heads(TF.linear(x, w[:D], b[:D]), 1)
            if cache is not None and layer in cache.cross_kv:
                k, v = cache.cross_kv[layer]
            else:
                k, v = self._heads(TF.linear(memory, w[D:], b[D:]), 2)
                if cache is not None:
                    cache.cross_kv[layer] = (k, v)
        out = TF.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                              dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(B, T, D))


class TwinLayer(_Module):
    """``torch.nn.TransformerEncoderLayer``'s (``cross=False``) or ``TransformerDecoderLayer``'s (``cross=True``)
    parameters and dropouts, post-LN: LayerNorm(x + Dropout(Sublayer(x))) for each sublayer."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float, ffn_dropout: float,
                 attention_dropout: float, cross: bool) -> None:
        super().__init__()
        self.self_attn = TwinAttention(d_model, n_heads, attention_dropout, self_attention=True)
        if cross:
            self.multihead_attn = TwinAttention(d_model, n_heads, attention_dropout, self_attention=False)
        self.linear1, self.dropout = torch.nn.Linear(d_model, d_ff), torch.nn.Dropout(ffn_dropout)
        self.linear2 = torch.nn.Linear(d_ff, d_model)
        n = 3 if cross else 2
        for i in range(1, n + 1):
            setattr(self, f"norm{i}", torch.nn.LayerNorm(d_model))
        for i in range(1, n + 1):
            setattr(self, f"dropout{i}", torch.nn.Dropout(dropout))

    def ffn(self, x: Any) -> Any:
        return self.linear2(self.dropout(torch.relu(self.linear1(x))))

    def forward(self, x: Any, memory: Any, src_mask: Any, tgt_mask: Any = None, cache: TwinCache | None = None,
                layer: int = 0) -> Any:
        if memory is None:  # an encoder layer
            x = self.norm1(x + self.dropout1(self.self_attn(x, mask=src_mask)))
            return self.norm2(x + self.dropout2(self.ffn(x)))
        x = self.norm1(x + self.dropout1(self.self_attn(x, mask=tgt_mask, cache=cache, layer=layer)))
        x = self.norm2(x + self.dropout2(self.multihead_attn(x, memory, mask=src_mask, cache=cache, layer=layer)))
        return self.norm3(x + self.dropout3(self.ffn(x)))


class TwinPositional(_Module):
    """Dropout(x + PE), as ``nn.PositionalEncoding`` (batch first)."""

    def __init__(self, d_model: int, dropout: float, max_positions: int) -> None:
        super().__init__()
        self.register_buffer("pe", torch.from_numpy(sinusoids(max_positions, d_model)), persistent=False)
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, x: Any, start: int = 0) -> Any:
        return self.dropout(x + self.pe[start : start + x.shape[1]])


class TwinTransformer(_Module):
    """The encoder-decoder with one tied embedding; the same methods as ours (encode, decode_hidden, ...).
    ``dropout`` goes where ours puts it: embeddings + positions, sublayer outputs; ``attention_dropout`` on
    the attention weights and ``ffn_dropout`` after the FFN's ReLU (ours: 0 for both, as in the paper)."""

    def __init__(self, vocab_size: int, d_model: int, n_heads: int, n_encoder_layers: int, n_decoder_layers: int,
                 d_ff: int, dropout: float = 0.1, pad_id: int = 0, max_positions: int = 1024,
                 ffn_dropout: float = 0.0, attention_dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model, self.pad_id = d_model, pad_id
        self.embedding = torch.nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.positional = TwinPositional(d_model, dropout, max_positions)
        self.encoder_layers = torch.nn.ModuleList(
            TwinLayer(d_model, n_heads, d_ff, dropout, ffn_dropout, attention_dropout, cross=False)
            for _ in range(n_encoder_layers))
        self.decoder_layers = torch.nn.ModuleList(
            TwinLayer(d_model, n_heads, d_ff, dropout, ffn_dropout, attention_dropout, cross=True)
            for _ in range(n_decoder_layers))

    def embed(self, tokens: Any, offset: int = 0) -> Any:
        return self.positional(self.embedding(tokens) * self.d_model**0.5, offset)

    def project(self, h: Any) -> Any:
        return TF.linear(h, self.embedding.weight)

    def encode(self, src: Any) -> tuple[Any, Any]:
        keep = src != self.pad_id
        mask = keep[:, None, None, :]
        x = self.embed(src)
        for layer in self.encoder_layers:
            x = layer(x, None, mask)
        return x, keep

    def decode_hidden(self, tgt_in: Any, memory: Any, src_keep: Any, cache: TwinCache | None = None) -> Any:
        T = tgt_in.shape[1]
        past = cache.length if cache is not None else 0
        tgt_mask = None
        if T > 1:
            positions = torch.arange(past + T, device=tgt_in.device)
            tgt_mask = positions[:T, None] + past >= positions[None, :]
        src_mask = src_keep[:, None, None, :]
        x = self.embed(tgt_in, offset=past)
        for i, layer in enumerate(self.decoder_layers):
            x = layer(x, memory, src_mask, tgt_mask, cache=cache, layer=i)
        if cache is not None:
            cache.length += T
        return x

    def forward(self, src: Any, tgt_in: Any) -> Any:
        memory, keep = self.encode(src)
        return self.project(self.decode_hidden(tgt_in, memory, keep))

    def loss(self, logits: Any, tgt_out: Any, label_smoothing: float = 0.1) -> Any:
        return TF.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=self.pad_id,
                                reduction="sum", label_smoothing=label_smoothing)


def twin_tensor(model: Any, array: np.ndarray) -> Any:
    """A host array as a tensor on the twin's device (no copy on the CPU)."""
    return torch.from_numpy(array).to(model.embedding.weight.device)


def build_twin(ours: Any) -> Any:
    """The twin of ``ours`` (post-LN, tied embedding), holding a copy of its weights and its dropout rates."""
    if ours.norm_first or not ours.tie_embeddings:
        raise ValueError("the twin implements the post-LN, tied-embedding model only")
    layers = list(ours.encoder_layers) + list(ours.decoder_layers)
    ffn_dropout = layers[0].dropout.p if layers else 0.0
    twin = TwinTransformer(ours.vocab_size, ours.d_model, ours.n_heads, ours.n_encoder_layers, ours.n_decoder_layers,
                           ours.d_ff, ours.dropout_p, ours.pad_id, ours.max_positions, ffn_dropout,
                           ours.attention_dropout)
    ours_rates, twin_rates = dropout_rates(ours), dropout_rates(twin)
    if ours_rates != twin_rates:
        raise RuntimeError(f"dropout differs: ours {ours_rates}, twin {twin_rates}")
    copy_weights(ours, twin)
    return twin


def dropout_rates(model: Any) -> dict[str, float]:
    """Every dropout of a model (ours or the twin: the module names are the same) -> its rate. Dropout is the
    one difference an eval-mode check cannot see, so the twin's must match ours place by place."""
    rates = {}
    for name, module in model.named_modules():
        if isinstance(module, (ta.nn.Dropout, *((torch.nn.Dropout,) if torch is not None else ()))):
            rates[name] = float(module.p)
        elif isinstance(module, (ta.nn.MultiheadAttention, TwinAttention)):
            rates[f"{name} (attention weights)"] = float(module.dropout)
    return rates


def copy_weights(ours: Any, twin: Any) -> None:
    """Our state dict into the twin's: the names are the same, and so are the layouts (Linear is (out, in))."""
    src = {k: v.numpy() for k, v in ours.state_dict().items()}
    dst = twin.state_dict()
    if set(src) != set(dst):
        raise RuntimeError(f"twin and ours differ in parameters: only ours {sorted(set(src) - set(dst))}, "
                           f"only the twin {sorted(set(dst) - set(src))}")
    for name, array in src.items():
        if tuple(array.shape) != tuple(dst[name].shape):
            raise RuntimeError(f"{name}: ours {array.shape}, twin {tuple(dst[name].shape)}")
    twin.load_state_dict({k: torch.from_numpy(np.array(a, dtype=np.float32)) for k, a in src.items()})


def check_twin(ours: Any, twin: Any, batch: Batch, label_smoothing: float) -> dict[str, float]:
    """Loss and gradients of one batch in eval mode (no dropout), ours against the twin's, both in float64.
    Raises if they differ.

    float64, because in float32 a trained model has a few ReLU inputs within rounding of 0, which the two
    frameworks gate differently, moving a visible part of a hidden unit's gradient: a difference rounding
    makes, not the model. In float64 the two agree to rounding; a model that differs shows up at O(1). The
    weights are float32 values, so converting them back restores them exactly.
    """
    ours_dtype, twin_dtype = next(iter(ours.parameters())).dtype, next(twin.parameters()).dtype
    ours.eval()
    twin.eval()
    ours.double()
    twin.double()
    try:
        ours.zero_grad()
        twin.zero_grad(set_to_none=True)
        loss, n = ours.loss(ours(batch.src, batch.tgt_in), batch.tgt_out, label_smoothing=label_smoothing)
        (loss / n).backward()
        src, tgt_in, tgt_out = (torch.from_numpy(a) for a in (batch.src, batch.tgt_in, batch.tgt_out))
        t_loss = twin.loss(twin(src, tgt_in), tgt_out, label_smoothing)
        (t_loss / n).backward()
        ours_loss, torch_loss = float(loss.item()) / n, float(t_loss.item()) / n
        grads = dict(twin.named_parameters())
        worst = 0.0  # largest |difference| of a gradient entry, relative to that tensor's largest entry
        for name, p in ours.named_parameters():
            g, tg = p.grad.numpy(), grads[name].grad.numpy()
            worst = max(worst, float(np.abs(g - tg).max() / max(np.abs(tg).max(), 1e-12)))
    finally:
        ours.zero_grad()
        twin.zero_grad(set_to_none=True)
        ours.to(ours_dtype)
        twin.to(twin_dtype)
    result = {"loss_ours": ours_loss, "loss_torch": torch_loss,
              "loss_rel_diff": abs(ours_loss - torch_loss) / abs(torch_loss), "grad_rel_diff": worst}
    if result["loss_rel_diff"] > 1e-9 or worst > 1e-9:
        raise SystemExit(f"the twin is not the same model: {result}")
    return result


# ---------------------------------------------------------------------------------------------------------
# Data and models
# ---------------------------------------------------------------------------------------------------------


def make_config(args: argparse.Namespace, checkpoint_config: dict | None = None) -> cfg.Config:
    config = cfg.from_dict(checkpoint_config) if checkpoint_config else cfg.Config()
    if not checkpoint_config:
        config.model = cfg.ModelConfig(preset="tiny", **QUICK_MODEL) if args.quick else cfg.ModelConfig(args.preset)
        config.data.vocab_size, config.data.max_tokens = args.vocab_size, args.max_tokens
        config.train.seed = args.seed
    config.data.max_tokens = args.max_tokens
    return cfg.resolve(config)


def load_everything(args: argparse.Namespace) -> tuple[cfg.Config, Vocab, Any, list[Batch], list[list[int]]]:
    """(config, vocab, our model, training batches, tokenized val sources) for the benchmark's settings."""
    train_pairs = load_split("train", "de", "en", data_dir=args.data_dir)
    val_pairs = load_split("val", "de", "en", data_dir=args.data_dir)[: args.decode_sentences]
    if args.quick:
        train_pairs = train_pairs[:QUICK_PAIRS]
    if args.checkpoint:
        from models.translator.checkpoints import load_model

        model, vocab, config, _ = load_model(args.checkpoint)
        config = make_config(args, config.to_dict())
    else:
        config = make_config(args)
        with tempfile.TemporaryDirectory() as tmp:
            vocab = Vocab.train([s for s, _ in train_pairs] + [t for _, t in train_pairs], tmp,
                                vocab_size=args.vocab_size, hard_vocab_limit=not args.quick)
        ta.manual_seed(args.seed)
        from models.translator.train import build

        model = build(config, len(vocab), ta.device("cpu"))
    encode = lambda side: vocab.encode_batch([p[side] for p in train_pairs])  # noqa: E731
    batcher = TokenBatcher(list(zip(encode(0), encode(1))), args.max_tokens, config.data.max_len, seed=args.seed)
    batches = list(batcher.epoch(0))
    sources = vocab.encode_batch([s for s, _ in val_pairs])
    return config, vocab, model, batches, sources


def twin_optimizer(config: cfg.Config, twin: Any) -> tuple[Any, Any]:
    """Adam with the run's betas/eps and the run's schedule (Noam or cosine), as ``train.make_optimizer`` makes
    ours: the lr of each step is read off our own scheduler, so the two cannot drift apart."""
    from models.translator.train import make_optimizer

    t, peak = config.train, cfg.peak_lr(config)
    _, ours = make_optimizer(config, ta.nn.Linear(1, 1), clock=standing_clock)

    def our_lr(step: int) -> float:  # the lr of 0-based step ``step``; LambdaLR asks for 0, 1, 2, ... in turn
        while ours.last_epoch < step:
            ours.step()
        return ours.get_last_lr()[0]

    optimizer = torch.optim.Adam(twin.parameters(), lr=peak, betas=tuple(t.betas), eps=t.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: our_lr(step) / peak)
    return optimizer, scheduler


def twin_train_step(twin: Any, optimizer: Any, scheduler: Any, batch: Batch, label_smoothing: float,
                    scaler: Any = None) -> Any:
    """The twin's ``train_step``: forward, summed loss / target tokens, backward, Adam, schedule; returns the
    summed loss as a 0-d tensor, not read (as ours: a read from a GPU waits for its queue). With a
    ``torch.amp.GradScaler``: forward and loss under ``torch.autocast`` (float16), the scaled loss's backward,
    and the scaler's step (skipped on non-finite gradients) and update."""
    twin.train()
    optimizer.zero_grad(set_to_none=True)
    src, tgt_in, tgt_out = (twin_tensor(twin, a) for a in (batch.src, batch.tgt_in, batch.tgt_out))
    if scaler is None:
        loss_sum = twin.loss(twin(src, tgt_in), tgt_out, label_smoothing)
        (loss_sum / batch.n_tgt_tokens).backward()
        optimizer.step()
    else:
        with torch.autocast(device_type=src.device.type, dtype=torch.float16):
            loss_sum = twin.loss(twin(src, tgt_in), tgt_out, label_smoothing)
        scaler.scale(loss_sum / batch.n_tgt_tokens).backward()
        scaler.step(optimizer)
        scaler.update()
    scheduler.step()
    return loss_sum.detach()


def amp_module() -> Any:
    """``tinygrad_attn.amp`` (autocast, GradScaler), or a clear exit where this checkout lacks it or the
    translator's mixed-precision step (``models.translator.step.make_scaler``)."""
    try:
        import tinygrad_attn.amp as amp
        from models.translator.step import make_scaler  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"--precision fp16 needs tinygrad_attn.amp (autocast and GradScaler) and the translator's "
                         f"mixed-precision step (models.translator.step.make_scaler), which this checkout does not "
                         f"have ({e}); use --precision fp32") from None
    return amp


def our_step_fn(config: cfg.Config, model: Any, workers: int = 1, precision: str = "fp32") -> Any:
    """Our training step (``train_step`` itself) on one batch, on the model's device; with ``workers`` > 1 the
    batch is shared by that many processes (``parallel.GradientWorkers``, kept in the function's ``workers``
    attribute: their peak RSS counts too); ``precision="fp16"``: with the loss scaler of
    ``train.precision = "fp16"`` (autocast inside ``train_step``)."""
    from models.translator.train import make_optimizer, train_step

    optimizer, scheduler = make_optimizer(config, model, clock=standing_clock)
    device = model.device
    pool, scaler = None, None
    if precision == "fp16":
        amp_module()
        from models.translator.step import make_scaler

        config.train.precision = "fp16"
        scaler = make_scaler(config)
    if workers > 1:
        from models.translator.parallel import GradientWorkers

        pool = GradientWorkers(model, workers, config.train.label_smoothing, device)

    def step(batch: Batch) -> ta.Tensor:  # the summed loss, on the model's device and not read
        if scaler is None:
            return train_step(model, optimizer, scheduler, [batch], config, device, pool)[0]
        return train_step(model, optimizer, scheduler, [batch], config, device, pool, scaler=scaler)[0]

    step.workers = pool  # type: ignore[attr-defined]
    return step


def twin_step_fn(config: cfg.Config, twin: Any, precision: str = "fp32") -> Any:
    optimizer, scheduler = twin_optimizer(config, twin)
    device_type = twin.embedding.weight.device.type
    scaler = torch.amp.GradScaler(device_type) if precision == "fp16" else None
    return lambda batch: twin_train_step(twin, optimizer, scheduler, batch, config.train.label_smoothing, scaler)


def to_device(name: str, model: Any, device: str) -> Any:
    """Ours onto tinygrad_attn's ``device``, the twin onto PyTorch's."""
    if name == "ours":
        return model.to(ta.device(device))
    return model.to(torch.device(device))


def synchronize(name: str, device: str) -> None:
    """Wait until the GPU has done all the work queued so far (nothing to wait for on the CPU)."""
    if device == "cpu":
        return
    if name == "ours":
        import cupy

        cupy.cuda.Device().synchronize()
    else:
        torch.cuda.synchronize()


def autocast(name: str, args: argparse.Namespace) -> Any:
    """Float16 autocast for ``--precision fp16`` (ours or PyTorch's), else a context that does nothing."""
    if args.precision != "fp16":
        return contextlib.nullcontext()
    if name == "ours":
        return amp_module().autocast(device_type=args.device, dtype=ta.float16)
    return torch.autocast(device_type=args.device, dtype=torch.float16)


class Runner:
    """One framework's model, optimiser, batches and sources; each call times itself (``perf_counter``)."""

    def __init__(self, name: str, config: cfg.Config, model: Any, batches: list[Batch], sources: list[list[int]],
                 args: argparse.Namespace) -> None:
        self.name, self.batches, self.args = name, batches, args
        self.model = model = to_device(name, model, args.device)
        self.step = (our_step_fn(config, model, args.workers, args.precision) if name == "ours" else
                     twin_step_fn(config, model, args.precision))
        self.chunks = decode_chunks(sources, args)

    def train(self, i: int) -> dict[str, Any]:
        """Training step on batch ``i`` (cycling): seconds, summed loss (read after the clock stops), target tokens."""
        batch = self.batches[i % len(self.batches)]
        start = time.perf_counter()
        loss = self.step(batch)
        synchronize(self.name, self.args.device)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "loss": float(loss.item()), "tokens": batch.n_tgt_tokens}

    def decode(self, beam: int, use_cache: bool, chunk: int) -> dict[str, Any]:
        """Translate one decoding batch of the sources: seconds and the outputs."""
        start = time.perf_counter()
        with autocast(self.name, self.args):
            outputs = decode_with(self.name, self.model, self.chunks[chunk], beam, use_cache, self.args)
        synchronize(self.name, self.args.device)
        return {"seconds": time.perf_counter() - start, "outputs": outputs}


class WorkerRunner:
    """A ``Runner`` in a process of its own (``--worker NAME``), driven by JSON lines over its stdin/stdout.

    Each framework then runs as it would alone: no other library's thread pool in its process (PyTorch's
    OpenMP threads and NumPy's OpenBLAS threads in one process can wait on each other's spinning threads).
    While one worker runs a step, the other sleeps on its pipe."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        cmd = [sys.executable, str(Path(__file__).resolve()), *_child_args(args), "--worker", name]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello = self._read()

    def _read(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.name} worker stopped (exit status {self.proc.wait()}); see its errors above")
        return json.loads(line)

    def _ask(self, **cmd: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def train(self, i: int) -> dict[str, Any]:
        return self._ask(do="train", i=i)

    def decode(self, beam: int, use_cache: bool, chunk: int) -> dict[str, Any]:
        return self._ask(do="decode", beam=beam, use_cache=use_cache, chunk=chunk)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def serve_worker(args: argparse.Namespace) -> None:
    """The ``--worker`` process: build the runner, say hello (with a checksum of the initial weights), serve."""
    reply, sys.stdout = sys.stdout, sys.stderr  # stdout carries the protocol only
    config, _, model, batches, sources = load_everything(args)
    checksum = float(sum(np.abs(p.numpy()).astype(np.float64).sum() for p in model.parameters()))
    if args.worker == "torch":
        model = build_twin(model)
    runner = Runner(args.worker, config, model, batches, sources, args)
    reply.write(json.dumps({"weights_abs_sum": checksum, "rss_mb": current_rss_mb()}) + "\n")
    reply.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["do"] == "train":
            out = runner.train(cmd["i"])
        else:
            out = runner.decode(cmd["beam"], cmd["use_cache"], cmd["chunk"])
        reply.write(json.dumps(out) + "\n")
        reply.flush()


# ---------------------------------------------------------------------------------------------------------
# 1. Training throughput
# ---------------------------------------------------------------------------------------------------------


def bench_training(runners: dict[str, Any], warmup: int, n: int, pause: float = 0.0) -> dict[str, dict]:
    """The frameworks' steps alternate on the same batches (who goes first alternates too); per framework:
    median step time, median of per-step tokens/s, and all tokens / all time over the timed steps."""
    names = list(runners)
    times: dict[str, list[float]] = {name: [] for name in names}
    tokens: list[int] = []
    for i in range(warmup + n):
        step_tokens = set()
        for name in names if i % 2 == 0 else names[::-1]:
            time.sleep(pause)
            r = runners[name].train(i)
            if not np.isfinite(r["loss"]):
                raise SystemExit(f"{name}: training step {i} gave loss {r['loss']}")
            step_tokens.add(r["tokens"])
            if i >= warmup:
                times[name].append(r["seconds"])
        if len(step_tokens) != 1:
            raise SystemExit(f"training step {i}: the frameworks got different batches ({step_tokens} tokens)")
        if i >= warmup:
            tokens.append(step_tokens.pop())
        if (i + 1) % 5 == 0:
            print(f"  step {i + 1}/{warmup + n}: " + ", ".join(f"{name} {statistics.median(times[name]):.2f} s"
                                                         for name in names if times[name]), file=sys.stderr)
    out = {}
    for name in names:
        rates = [t / s for t, s in zip(tokens, times[name])]
        out[name] = {"tokens_per_s_median": statistics.median(rates),
                     "tokens_per_s_overall": sum(tokens) / sum(times[name]),
                     "step_s_median": statistics.median(times[name]), "steps": n,
                     "mean_tokens_per_step": sum(tokens) / n}
    return out


# ---------------------------------------------------------------------------------------------------------
# 2. Decoding: the twin runs search.py's own loops (greedy_loop / beam_loop) over a decoder of PyTorch tensors
# ---------------------------------------------------------------------------------------------------------


class TwinDeviceLogits:
    """A GPU tensor of logits as search.py's loops read it: ``argmax`` on the device, ``numpy()`` to the host."""

    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)

    def argmax(self, dim: int) -> TwinDeviceLogits:
        return TwinDeviceLogits(self.tensor.argmax(dim=dim))

    def numpy(self) -> np.ndarray:
        return self.tensor.cpu().numpy()


class TwinDecoder:
    """search._Decoder for the twin: the prefixes of R rows, their next-token logits, advance."""

    def __init__(self, model: Any, memory: Any, src_keep: Any, use_cache: bool) -> None:
        self.model, self.memory, self.src_keep = model, memory, src_keep
        self.cache = TwinCache() if use_cache else None
        self.tokens = np.full((memory.shape[0], 1), BOS_ID, dtype=np.int64)

    def logits(self) -> Any:
        if self.cache is not None:
            h = self.model.decode_hidden(twin_tensor(self.model, self.tokens[:, -1:]), self.memory, self.src_keep,
                                         self.cache)
        else:
            h = self.model.decode_hidden(twin_tensor(self.model, self.tokens), self.memory, self.src_keep)[:, -1:]
        logits = self.model.project(h)[:, 0]
        return logits if logits.device.type == "cpu" else TwinDeviceLogits(logits)

    def advance(self, tokens: np.ndarray, rows: np.ndarray | None = None, same_sources: bool = True) -> None:
        if rows is None:
            self.tokens = np.concatenate([self.tokens, tokens[:, None]], axis=1)
            return
        self.tokens = np.concatenate([self.tokens[rows], tokens[:, None]], axis=1)
        index = twin_tensor(self.model, rows)
        if not same_sources:
            self.memory, self.src_keep = self.memory[index], self.src_keep[index]
        if self.cache is not None:
            self.cache.reorder(index, cross=not same_sources)


def _max_lengths(src: np.ndarray, a: float, b: int) -> np.ndarray:
    return max_output_lengths((src != PAD_ID).sum(axis=1), a, b)


def twin_greedy(model: Any, src: np.ndarray, use_cache: bool, max_len_a: float = 1.0,
                max_len_b: int = 50) -> list[list[int]]:
    """search.greedy_decode on the twin: the same loop (``search.greedy_loop``) over the twin's decoder."""
    memory, src_keep = model.encode(twin_tensor(model, src))
    return greedy_loop(TwinDecoder(model, memory, src_keep, use_cache), _max_lengths(src, max_len_a, max_len_b),
                       EOS_ID)


def twin_beam(model: Any, src: np.ndarray, use_cache: bool, k: int = 4, alpha: float = 0.6, max_len_a: float = 1.0,
              max_len_b: int = 50) -> list[list[int]]:
    """search.beam_search on the twin: the same loop (``search.beam_loop``) over the twin's decoder."""
    memory, src_keep = model.encode(twin_tensor(model, src))
    rows = twin_tensor(model, np.repeat(np.arange(src.shape[0]), k))
    decoder = TwinDecoder(model, memory[rows], src_keep[rows], use_cache)
    return beam_loop(decoder, _max_lengths(src, max_len_a, max_len_b), EOS_ID, k, alpha)


def twin_translate_ids(model: Any, sources: list[list[int]], beam: int, batch_size: int, use_cache: bool,
                       max_len_a: float = 1.0, max_len_b: int = 50) -> list[list[int]]:
    """search.translate_ids for the twin: sort by length, batch, decode, restore the order."""
    batches, order = decode_batches(sources, batch_size, pad_id=PAD_ID, eos_id=EOS_ID)
    model.eval()
    outputs: list[list[int]] = []
    with torch.inference_mode():
        for b in batches:
            outputs += (twin_greedy(model, b.src, use_cache, max_len_a, max_len_b) if beam == 1 else
                        twin_beam(model, b.src, use_cache, beam, max_len_a=max_len_a, max_len_b=max_len_b))
    return restore_order(outputs, order)


def decode_chunks(sources: list[list[int]], args: argparse.Namespace) -> list[list[list[int]]]:
    """The units the frameworks take turns on: the sources of each decoding batch that translating them all
    would make (sorted by length); with ``--workers`` > 1 all of them at once, which ours spreads over that
    many processes (biggest batches first, each process taking the next when it is done) and the twin
    decodes batch after batch with its threads."""
    if args.workers > 1:
        return [list(sources)]
    return [[sources[i] for i in b.indices] for b in decode_batches(sources, args.decode_batch)[0]]


def decode_with(name: str, model: Any, sources: list[list[int]], beam: int, use_cache: bool,
                args: argparse.Namespace) -> list[list[int]]:
    """Translate ``sources`` with ours (``search.translate_ids``) or the twin, as the benchmark's settings say."""
    if name == "ours":
        return translate_ids(model, sources, BOS_ID, EOS_ID, beam_size=beam, batch_size=args.decode_batch,
                             max_len_a=args.max_len_a, max_len_b=args.max_len_b, use_cache=use_cache,
                             workers=args.workers)
    return twin_translate_ids(model, sources, beam, args.decode_batch, use_cache, args.max_len_a, args.max_len_b)


def bench_decoding(runners: dict[str, Any], sources: list[list[int]], args: argparse.Namespace) -> dict[str, dict]:
    """Sentences/s for greedy and beam, with and without the cache. The frameworks take turns batch by batch
    (who goes first alternates), so a change in machine load hits both alike."""
    n_chunks = len(decode_chunks(sources, args))
    names = list(runners)
    results: dict[str, dict] = {}
    for beam in (1, args.beam):
        for use_cache in (True, False) if args.nocache else (True,):
            key = f"{'greedy' if beam == 1 else f'beam{beam}'}_{'cache' if use_cache else 'nocache'}"
            best = {name: [float("inf")] * n_chunks for name in names}
            chunk_outputs: dict[str, list] = {name: [None] * n_chunks for name in names}
            for round_ in range(args.decode_rounds):
                for j in range(n_chunks):
                    for name in names if (j + round_) % 2 == 0 else names[::-1]:
                        time.sleep(args.pause)
                        r = runners[name].decode(beam, use_cache, j)
                        best[name][j] = min(best[name][j], r["seconds"])
                        chunk_outputs[name][j] = r["outputs"]
            seconds = {name: sum(best[name]) for name in names}
            outputs = {name: [o for chunk in chunk_outputs[name] for o in chunk] for name in names}
            entry: dict[str, Any] = {
                name: {"sentences_per_s": len(sources) / seconds[name], "seconds": seconds[name],
                       "mean_output_tokens": statistics.mean(len(o) for o in outputs[name])} for name in names}
            if "torch" in outputs:  # same weights, same algorithm: the outputs should (nearly) all agree
                entry["same_output"] = statistics.mean(a == b for a, b in zip(outputs["ours"], outputs["torch"]))
            results[key] = entry
            print(f"  {key}: " + ", ".join(f"{n} {seconds[n]:.2f} s" for n in names), file=sys.stderr)
    return results


# ---------------------------------------------------------------------------------------------------------
# 3. Peak RSS, one child process per framework
# ---------------------------------------------------------------------------------------------------------


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """This process's peak RSS. Linux: VmHWM, the high-water mark of this program's own memory map
    (``ru_maxrss`` would also count the parent's memory, which a child inherits across fork + exec)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**10
    except (OSError, StopIteration):
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 2**10 / (2**10 if sys.platform == "darwin" else 1)


def reset_peak_rss() -> bool:
    """Start the peak-RSS count afresh from the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_child(args: argparse.Namespace) -> None:
    """In a child: data, model, optimiser, then (peak count reset) ``rss_steps`` training steps on the largest
    batches; print the peak RSS and the RSS before the steps as JSON."""
    import gc

    config, _, model, batches, _ = load_everything(args)
    largest = sorted(batches, key=lambda b: b.src.size + b.tgt_in.size, reverse=True)[: args.rss_steps]
    if args.rss_child == "ours":
        step = our_step_fn(config, to_device("ours", model, args.device), args.workers, args.precision)
    else:
        twin = to_device("torch", build_twin(model), args.device)
        del model  # our copy of the weights: the twin's process keeps only its own
        step = twin_step_fn(config, twin, args.precision)
    gc.collect()
    reset = reset_peak_rss()
    before = current_rss_mb()
    for batch in largest:
        step(batch)
    pool = getattr(step, "workers", None)  # helper processes: their own peaks (ru_maxrss, from their fork on)
    helpers = sum(pool.helper_rss_mb) if pool is not None else 0.0
    print(json.dumps({"peak_mb": peak_rss_mb(), "before_steps_mb": before, "peak_counted_from_steps": reset,
                      "worker_processes_peak_mb": helpers}))


def bench_rss(args: argparse.Namespace, frameworks: list[str]) -> dict[str, dict]:
    out = {}
    for name in frameworks:
        cmd = [sys.executable, str(Path(__file__).resolve()), *_child_args(args), "--rss-child", name]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"peak-RSS child for {name} failed:\n{proc.stderr[-3000:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _child_args(args: argparse.Namespace) -> list[str]:
    argv = ["--preset", args.preset, "--threads", str(args.threads), "--workers", str(args.workers),
            "--max-tokens", str(args.max_tokens),
            "--vocab-size", str(args.vocab_size), "--rss-steps", str(args.rss_steps), "--seed", str(args.seed),
            "--decode-sentences", str(args.decode_sentences), "--decode-batch", str(args.decode_batch),
            "--beam", str(args.beam), "--max-len-a", str(args.max_len_a), "--max-len-b", str(args.max_len_b),
            "--device", args.device, "--precision", args.precision]
    if args.quick:
        argv.append("--quick")
    if args.checkpoint:
        argv += ["--checkpoint", args.checkpoint]
    if args.data_dir:
        argv += ["--data-dir", args.data_dir]
    return argv


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------


def machine(args: argparse.Namespace) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=False).stdout.strip() or None
    except OSError:
        commit = None
    gpu = None
    if args.device == "cuda":
        import cupy

        gpu = f"{cupy.cuda.runtime.getDeviceProperties(0)['name'].decode()}, CuPy {cupy.__version__}, CUDA " \
              f"runtime {cupy.cuda.runtime.runtimeGetVersion()}"
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": args.threads, "platform": platform.platform(),
            "python": platform.python_version(), "numpy": np.__version__, "tinygrad_attn": ta.__version__,
            "torch": torch.__version__ if torch is not None else None, "commit": commit,
            "load_average": os.getloadavg(), "gpu": gpu}


def check_device_args(args: argparse.Namespace) -> None:
    """Exit with a clear message when ``--device``/``--precision`` cannot run here, before any data is loaded."""
    if args.device == "cuda":
        try:
            ta.zeros(1, device=ta.device("cuda"))  # imports CuPy and touches the GPU
        except RuntimeError as e:
            raise SystemExit(f"--device cuda: tinygrad_attn cannot use CUDA here: {e} Or use --device cpu.") from None
        if torch is not None and not torch.cuda.is_available():
            raise SystemExit(f"--device cuda: PyTorch {torch.__version__} has no usable CUDA device (a CPU-only build, "
                             "or no GPU); install a CUDA build of torch, or pass --no-torch to time ours alone")
    if args.precision == "fp16":
        amp_module()


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def _num(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def report(res: dict[str, Any]) -> str:
    m, h = res["machine"], res["model"]
    a = res["args"]
    lines = [f"Translator benchmark on {a.get('device', 'cpu')}, {a.get('precision', 'fp32')}: preset "
             f"{h['preset']} (d_model {h['d_model']}, {h['n_encoder_layers']}+{h['n_decoder_layers']} layers, "
             f"{h['n_heads']} heads, d_ff {h['d_ff']}, {h['parameters']:,} parameters), vocabulary {h['vocab_size']}, "
             f"weights: {h['weights']}",
             f"machine: {m['cpu']}, {m['cores']} cores, {m['threads']} threads for both; load average at the start "
             f"{m['load_average'][0]:.2f}; numpy {m['numpy']}, torch {m['torch']}, commit {m['commit']}"
             + (f"; GPU: {m['gpu']}" if m.get("gpu") else "")]
    if "twin_check" in res:
        c = res["twin_check"]
        lines.append(f"twin check (eval mode, one batch, float64): loss per token ours {c['loss_ours']:.6f}, torch "
                     f"{c['loss_torch']:.6f} (relative difference {c['loss_rel_diff']:.1e}); largest gradient "
                     f"difference {c['grad_rel_diff']:.1e} of the tensor's largest entry; dropout rates equal at "
                     f"all {c['dropout_places']} places")
    lines.append("each framework timed in " + ("this one process" if res["args"]["same_process"] else
                                               "a worker process of its own") + ", alternating")
    if res["args"].get("workers", 1) > 1:
        lines.append(f"ours in {res['args']['workers']} processes (--workers) of one BLAS thread each: sharing each "
                     f"training batch, decoding batches side by side; the twin in one "
                     f"process with {res['args']['threads']} threads")
    rows = []
    tr = res["training"]
    t_info = next(iter(tr.values()))
    rows.append((f"training, target tokens/s (median of {t_info['steps']} steps)",
                 *(tr.get(n, {}).get("tokens_per_s_median") for n in ("ours", "torch")), 0))
    rows.append(("training, target tokens/s (all tokens / all time)",
                 *(tr.get(n, {}).get("tokens_per_s_overall") for n in ("ours", "torch")), 0))
    for key, entry in res["decoding"].items():
        mode, cache = key.split("_")
        label = f"{'greedy' if mode == 'greedy' else 'beam ' + mode[4:]}, {'with' if cache == 'cache' else 'no'} " \
                "KV cache, sentences/s"
        rows.append((label, *(entry.get(n, {}).get("sentences_per_s") for n in ("ours", "torch")), 1))
    rss = res.get("rss", {})
    if rss:
        rows.append(("peak RSS in training steps, MB (lower is better)",
                     *(rss.get(n, {}).get("peak_mb") for n in ("ours", "torch")), 0))
        rows.append(("  of which the steps' own (peak - RSS before them)",
                     *((rss[n]["peak_mb"] - rss[n]["before_steps_mb"]) if n in rss else None
                       for n in ("ours", "torch")), 0))
    if rss.get("ours", {}).get("worker_processes_peak_mb"):
        rows.append((f"  + our {res['args']['workers'] - 1} gradient worker process(es)' own peak, MB",
                     rss["ours"]["worker_processes_peak_mb"], None, 0))
    width = max(len(r[0]) for r in rows)
    lines.append("")
    lines.append(f"| {'measure':<{width}} | {'ours':>9} | {'torch':>9} | ours/torch |")
    lines.append(f"|{'-' * (width + 2)}|{'-' * 10}:|{'-' * 10}:|-----------:|")
    for label, ours, theirs, digits in rows:
        lines.append(f"| {label:<{width}} | {_num(ours, digits):>9} | {_num(theirs, digits):>9} | "
                     f"{_ratio(ours, theirs):>10} |")
    lines.append("")
    t = tr["ours"]
    lines.append(f"training: {t['mean_tokens_per_step']:.0f} target tokens per step on average; median step "
                 + ", ".join(f"{n} {v['step_s_median']:.3f} s" for n, v in tr.items()))
    dec = res["decoding"]
    if not dec:
        return "\n".join(lines)
    lines.append(f"decoding {res['decode_sentences']} val sentences, batches of {res['decode_batch']}: mean output "
                 "tokens " + ", ".join(f"{k} {v['ours']['mean_output_tokens']:.1f}" for k, v in dec.items())
                 + "; identical outputs ours vs torch: "
                 + ", ".join(f"{k} {v['same_output']:.0%}" for k, v in dec.items() if "same_output" in v))
    if h["weights"] == "random":
        lines.append("(random weights: sentences run to the length limit; pass --checkpoint for real lengths)")
    return "\n".join(lines)


def side_by_side(results: list[dict[str, Any]]) -> str:
    """One table from several runs' JSON (say fp32 and fp16 on one GPU): per run, ours, the twin and ours/torch
    for the median training step (time: lower is better), training tokens/s and decoding sentences/s."""
    heads = [f"{r['args'].get('device', 'cpu')} {r['args'].get('precision', 'fp32')}" for r in results]
    first = results[0]["model"]
    rows: list[tuple[str, list[tuple[float | None, float | None]], int]] = []

    def row(label: str, pick: Any, digits: int) -> None:
        rows.append((label, [(pick(r, "ours"), pick(r, "torch")) for r in results], digits))

    def training(key: str, scale: float = 1.0) -> Any:
        return lambda r, n: r["training"][n][key] * scale if n in r["training"] else None

    row("training step, ms (median; lower is better)", training("step_s_median", 1000.0), 1)
    row("training, target tokens/s (median)", training("tokens_per_s_median"), 0)
    for key in dict.fromkeys(k for r in results for k in r.get("decoding", {})):
        mode, cache = key.split("_")
        label = f"{'greedy' if mode == 'greedy' else 'beam ' + mode[4:]}, {'with' if cache == 'cache' else 'no'} " \
                "KV cache, sentences/s"
        row(label, lambda r, n, k=key: r.get("decoding", {}).get(k, {}).get(n, {}).get("sentences_per_s"), 1)
    width = max(len(label) for label, _, _ in rows)
    lines = [f"preset {first['preset']} ({first['parameters']:,} parameters); columns: "
             + ", ".join(f"{h} (tinygrad_attn {r['machine']['commit']})" for h, r in zip(heads, results)), ""]
    lines.append(f"| {'measure':<{width}} | " + " | ".join(f"{h + ' ours':>14} | {h + ' torch':>14} | ours/torch"
                                                          for h in heads) + " |")
    lines.append(f"|{'-' * (width + 2)}|" + "|".join(f"{'-' * 15}:|{'-' * 15}:|-----------:" for _ in heads) + "|")
    for label, pairs, digits in rows:
        lines.append(f"| {label:<{width}} | " + " | ".join(f"{_num(o, digits):>14} | {_num(t, digits):>14} | "
                                                          f"{_ratio(o, t):>10}" for o, t in pairs) + " |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> dict[str, Any]:
    if args.table:
        print(side_by_side([json.loads(Path(path).read_text(encoding="utf-8")) for path in args.table]))
        return {}
    if args.rss_child:
        rss_child(args)
        return {}
    if args.worker:
        serve_worker(args)
        return {}
    check_device_args(args)
    res: dict[str, Any] = {"machine": machine(args), "args": vars(args)}
    what = args.checkpoint or ("quick" if args.quick else f"preset {args.preset}")
    print(f"loading data and building models ({what})...", file=sys.stderr)
    config, vocab, ours, batches, sources = load_everything(args)
    preset = "quick" if args.quick and not args.checkpoint else config.model.preset
    res["model"] = {"preset": preset, **config.model_hparams(), "vocab_size": len(vocab),
                    "parameters": sum(p.numel() for p in ours.parameters()),
                    "weights": args.checkpoint if args.checkpoint else "random"}
    names = ["ours"]
    twin = None
    if torch is not None:
        twin = build_twin(ours)
        res["twin_check"] = check_twin(ours, twin, batches[0], config.train.label_smoothing)
        res["twin_check"]["dropout_places"] = len(dropout_rates(ours))
        names.append("torch")
        print("twin check passed: " + json.dumps(res["twin_check"]), file=sys.stderr)
    if args.same_process:
        models = {"ours": ours, "torch": twin}
        runners: dict[str, Any] = {n: Runner(n, config, models[n], batches, sources, args) for n in names}
    else:
        del ours, twin
        runners = {n: WorkerRunner(n, args) for n in names}
        sums = {n: r.hello["weights_abs_sum"] for n, r in runners.items()}
        if len(set(sums.values())) != 1:
            raise SystemExit(f"the workers did not start from the same weights: {sums}")
    try:
        # Decoding first, from the weights both hold now (training changes them differently: dropout differs).
        res["decode_sentences"], res["decode_batch"] = len(sources), args.decode_batch
        res["decoding"] = {}
        if args.decode:
            print("decoding...", file=sys.stderr)
            res["decoding"] = bench_decoding(runners, sources, args)
        print("training...", file=sys.stderr)
        res["training"] = bench_training(runners, args.warmup, args.steps, args.pause)
    finally:
        for r in runners.values():
            if isinstance(r, WorkerRunner):
                r.close()
    if args.rss:
        print("peak RSS (child processes)...", file=sys.stderr)
        res["rss"] = bench_rss(args, names)
    res["machine"]["load_average_end"] = os.getloadavg()
    print(report(res))
    if args.json:
        text = json.dumps(res, indent=2, default=str)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")
    return res


if __name__ == "__main__":
    main(ARGS)
