"""Training a GPT on Tiny Shakespeare: nanoGPT's recipe, with evaluation, checkpoints and exact resume.

``train(config, run_dir)`` does a whole run::

    data     the text, split 90/10 (data.py); a character or BPE vocabulary (vocab.py)
    model    GPT(config.model, block_size, vocab size) (models/gpt.py)
    optim    AdamW, weight decay on the 2-D parameters only (embeddings and weight matrices, not biases and
             LayerNorms), linear warmup then cosine to min_lr at max_iters (or at max_minutes), clipping
    loop     one random batch of contiguous blocks per iteration (data.get_batch)
    every N  a log line (train.log, metrics.jsonl); the loss estimate on eval_iters train and val batches
             (nanoGPT's estimate_loss; the same batches at every evaluation), best.safetensors on a new best;
             a checkpoint
    end      the last evaluation and checkpoint, curves.png, results.json

Resuming (``resume=True``) restores the newest ``ckpt_step<N>``: parameters, AdamW's moments, the schedule,
the dropout generator and the batch generator (their states are in the checkpoint), so N iterations + resume +
M iterations ends with the parameters of N + M iterations in one go (on the CPU; unless the schedule follows
the clock, ``max_minutes``).
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import tinygrad_attn as ta
from models.gpt import GPT, GPTConfig
from models.lm.config import ConfigError, LMConfig
from models.lm.data import get_batch, load_text, split_text
from models.lm.vocab import BPEVocab, CharVocab, load_vocab
from models.translator import checkpoints as ckpt
from models.translator import config as cfg
from models.translator.machine import peak_rss_mb, resolve_device
from models.translator.run_dir import (
    CURVES_NAME,
    METRICS_NAME,
    RESULTS_NAME,
    append_jsonl,
    attach_log_handlers,
    prepare_run_dir,
    truncate_metrics,
    write_json,
)

log = logging.getLogger(__name__)
run_log = logging.getLogger("models.lm")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    train_seconds: float = 0.0
    best_val_loss: float = math.inf
    best_step: int = 0
    batch_rng: str = ""  # the batch generator's state (JSON), for an exact resume


@dataclass
class Corpus:
    """The vocabulary and both splits as token ids, with the characters per token of val (for bits/char)."""

    vocab: Any
    train: np.ndarray
    val: np.ndarray
    val_chars_per_token: float


def build_corpus(config: LMConfig, vocab: Any | None = None) -> Corpus:
    """Read and split the text; train the vocabulary unless given (characters: of the whole text, as nanoGPT)."""
    text = load_text(config.data.data_dir)
    train_text, val_text = split_text(text)
    if vocab is None:
        vocab = CharVocab.from_text(text) if config.data.vocab == "char" else BPEVocab.train(train_text,
                                                                                               config.data.vocab_size)
    train_ids = np.asarray(vocab.encode(train_text), dtype=np.int64)
    val_ids = np.asarray(vocab.encode(val_text), dtype=np.int64)
    for name, ids in (("train", train_ids), ("val", val_ids)):
        if len(ids) <= config.data.block_size:
            raise ConfigError(f"data.block_size = {config.data.block_size} is not allowed: the {name} split has only "
                              f"{len(ids)} tokens")
    return Corpus(vocab, train_ids, val_ids, len(val_text) / len(val_ids))


def make_model(config: LMConfig, vocab_size: int, device: ta.Device) -> GPT:
    model = GPT(GPTConfig(vocab_size=vocab_size, **config.gpt_kwargs()))
    model.to(device)
    return model


def make_optimizer(config: LMConfig, model: GPT,
                   clock: Any = None) -> tuple[ta.optim.AdamW, ta.optim.lr_scheduler.LinearWarmupCosineDecay]:
    """AdamW with weight decay on the parameters of 2 or more dimensions only, and the warmup-cosine schedule."""
    t = config.train
    params = list(model.parameters())
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": t.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = ta.optim.AdamW(groups, lr=t.lr, betas=t.betas)
    seconds = 60 * t.max_minutes if t.max_minutes is not None else None
    schedule = ta.optim.lr_scheduler.LinearWarmupCosineDecay(optimizer, t.warmup, t.max_iters, min_lr=t.min_lr,
                                                            total_seconds=seconds,
                                                            clock=clock if seconds is not None else None)
    return optimizer, schedule


def estimate_loss(model: GPT, data: np.ndarray, config: LMConfig, device: ta.Device) -> float:
    """The mean loss over ``train.eval_iters`` random batches of ``data`` (the same batches at every call)."""
    rng = np.random.default_rng(config.train.seed + 1)
    was_training = model.training
    model.eval()
    total = 0.0
    with ta.no_grad():
        for _ in range(config.train.eval_iters):
            x, y = get_batch(data, config.data.block_size, config.data.batch_size, rng)
            total += float(model.loss(model(ta.tensor(x, device=device)), ta.tensor(y, device=device)).item())
    model.train(was_training)
    return total / config.train.eval_iters


def evaluate_split(model: GPT, ids: np.ndarray, batch_size: int, device: ta.Device) -> tuple[float, int]:
    """Summed cross-entropy (nats) of every token of ``ids`` after the first, scored in consecutive
    non-overlapping windows of the model's block size (each token sees the earlier tokens of its window), and
    the number of tokens scored."""
    block = model.config.block_size
    n_windows = (len(ids) - 1) // block
    starts = np.arange(n_windows) * block
    rest = (len(ids) - 1) - n_windows * block
    total, count = 0.0, 0
    model.eval()
    with ta.no_grad():
        for i in range(0, n_windows, batch_size):
            window = starts[i : i + batch_size, None] + np.arange(block + 1)
            tokens = ids[window]
            logits = model(ta.tensor(tokens[:, :-1], device=device))
            total += float(model.loss(logits, ta.tensor(tokens[:, 1:], device=device)).item()) * tokens[:, 1:].size
            count += tokens[:, 1:].size
        if rest:  # the tail shorter than a block
            tokens = ids[n_windows * block :][None]
            logits = model(ta.tensor(tokens[:, :-1], device=device))
            total += float(model.loss(logits, ta.tensor(tokens[:, 1:], device=device)).item()) * rest
            count += rest
    return total, count


def train(config: LMConfig, run_dir: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False,
          console: bool = True) -> dict[str, Any]:
    """Run (or resume) a training run in ``run_dir``; returns the final results (also in results.json)."""
    run_dir = Path(run_dir)
    device = resolve_device(config.device)
    resume_from = prepare_run_dir(run_dir, resume, overwrite)
    handlers = attach_log_handlers(run_dir, console, run_log)
    level, propagate = run_log.level, run_log.propagate
    run_log.setLevel(logging.INFO)
    run_log.propagate = False
    try:
        return _Run(config, run_dir, device, resume_from, console).run()
    finally:
        run_log.setLevel(level)
        run_log.propagate = propagate
        for h in handlers:
            run_log.removeHandler(h)
            h.close()




class _Run:
    """The state of one training run; ``run()`` is the loop."""

    def __init__(self, config: LMConfig, run_dir: Path, device: ta.Device, resume_from: Path | None,
                 console: bool) -> None:
        self.config, self.run_dir, self.device, self.console = config, run_dir, device, console
        self.metrics_path = run_dir / METRICS_NAME
        saved = ckpt.load_checkpoint(resume_from) if resume_from is not None else None
        log.info("%s run in %s on %s", "resuming" if saved else "starting", run_dir, device)
        if saved is not None:
            cfg.check_resumable(config.to_dict(), saved.config)
        self.corpus = build_corpus(config, load_vocab(saved.vocab_bytes) if saved is not None else None)
        cfg.save(config, run_dir)
        log.info("data: %s vocabulary of %d, %s train / %s val tokens", config.data.vocab, len(self.corpus.vocab),
                 f"{len(self.corpus.train):,}", f"{len(self.corpus.val):,}")

        t = config.train
        ta.manual_seed(t.seed)
        self.model = make_model(config, len(self.corpus.vocab), device)
        self.progress = Progress()
        self._step_start = time.perf_counter()
        self.optimizer, self.scheduler = make_optimizer(config, self.model, clock=self.training_seconds)
        self.batch_rng = np.random.default_rng(t.seed)
        if saved is not None:
            if saved.optimizer is None or saved.scheduler is None:
                raise ckpt.CheckpointError(f"cannot resume from {saved.path}: it holds no optimizer state")
            self.model.load_state_dict(saved.model)
            self.optimizer.load_state_dict(saved.optimizer)
            self.scheduler.load_state_dict(saved.scheduler)
            if saved.rng is not None:
                ta.random.set_rng_state(saved.rng)
            known = {k: v for k, v in saved.progress.items() if k in Progress.__dataclass_fields__}
            self.progress = Progress(**known)
            self.batch_rng.bit_generator.state = json.loads(self.progress.batch_rng)
            truncate_metrics(self.metrics_path, self.progress.step)
            log.info("resumed from %s at iteration %d", saved.path.name, self.progress.step)
        log.info("model: %s parameters (%s without the position table), %s", f"{self.model.num_parameters():,}",
                 f"{self.model.num_parameters(non_embedding=True):,}", self.model.config)
        self.checkpoints = ckpt.CheckpointManager(run_dir, keep_last=t.keep_last)

    def training_seconds(self) -> float:
        """Training time so far, the step under way included (the clock of a schedule with a time budget)."""
        return self.progress.train_seconds + (time.perf_counter() - self._step_start)

    def _contents(self) -> dict[str, Any]:
        self.progress.batch_rng = json.dumps(self.batch_rng.bit_generator.state)
        return dict(model_state=self.model.state_dict(), config=self.config.to_dict(),
                    vocab_bytes=self.corpus.vocab.to_bytes(), progress=asdict(self.progress),
                    optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                    rng=ta.random.get_rng_state())

    def _evaluate(self) -> dict[str, Any]:
        p, c = self.progress, self.corpus
        start = time.perf_counter()
        train_loss = estimate_loss(self.model, c.train, self.config, self.device)
        val_loss = estimate_loss(self.model, c.val, self.config, self.device)
        bpc = val_loss / c.val_chars_per_token / math.log(2)
        record = {"kind": "eval", "step": p.step, "train_loss_est": round(train_loss, 5),
                  "val_loss": round(val_loss, 5), "val_bpc": round(bpc, 5), "train_seconds": round(p.train_seconds, 2),
                  "eval_seconds": round(time.perf_counter() - start, 2)}
        append_jsonl(self.metrics_path, record)
        improved = val_loss < p.best_val_loss
        if improved:
            p.best_val_loss, p.best_step = val_loss, p.step
        log.info("iter %d: train loss %.4f, val loss %.4f (%.3f bits/char)%s", p.step, train_loss, val_loss, bpc,
                 " (new best)" if improved else "")
        if improved:
            self.checkpoints.save_best(**self._contents())
        return record

    def _stop_reason(self) -> str | None:
        t, p = self.config.train, self.progress
        if p.step >= t.max_iters:
            return f"max_iters = {t.max_iters} reached"
        if t.max_minutes is not None and p.train_seconds >= 60 * t.max_minutes:
            return f"time budget of {t.max_minutes:g} minutes used"
        return None

    def _step(self) -> float:
        d, t = self.config.data, self.config.train
        x, y = get_batch(self.corpus.train, d.block_size, d.batch_size, self.batch_rng)
        loss = self.model.loss(self.model(ta.tensor(x, device=self.device)), ta.tensor(y, device=self.device))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if t.clip_norm is not None:
            ta.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.item())

    def run(self) -> dict[str, Any]:
        t, p = self.config.train, self.progress
        self.model.train()
        bar = tqdm(total=t.max_iters, initial=p.step, unit="it", disable=not (t.progress and self.console),
                   dynamic_ncols=True, file=sys.stderr)
        window_loss, window_n, window_seconds = 0.0, 0, 0.0
        last_eval = last_save = p.step if p.step else -1
        try:
            while (reason := self._stop_reason()) is None:
                lr = self.optimizer.param_groups[0]["lr"]
                start = self._step_start = time.perf_counter()
                loss = self._step()
                seconds = time.perf_counter() - start
                p.step += 1
                p.train_seconds += seconds
                window_loss, window_n, window_seconds = window_loss + loss, window_n + 1, window_seconds + seconds
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
                if not math.isfinite(loss):
                    raise FloatingPointError(f"iteration {p.step}: the loss is {loss}; lower train.lr")
                if p.step % t.log_every == 0:
                    record = {"kind": "train", "step": p.step, "loss": round(window_loss / window_n, 5), "lr": lr,
                              "ms_per_iter": round(1e3 * window_seconds / window_n, 2),
                              "train_seconds": round(p.train_seconds, 2)}
                    append_jsonl(self.metrics_path, record)
                    log.debug("iter %d: loss %.4f, lr %.3g, %.1f ms/iter", p.step, record["loss"], lr,
                              record["ms_per_iter"])
                    window_loss, window_n, window_seconds = 0.0, 0, 0.0
                if t.eval_every and p.step % t.eval_every == 0:
                    self._evaluate()
                    last_eval = p.step
                if t.checkpoint_every and p.step % t.checkpoint_every == 0:
                    self.checkpoints.save(p.step, **self._contents())
                    last_save = p.step
        finally:
            bar.close()
        log.info("stopping at iteration %d: %s (%.1f minutes of training, %.1f ms/iter, peak RSS %.0f MB)", p.step,
                 reason, p.train_seconds / 60, 1e3 * p.train_seconds / max(p.step, 1), peak_rss_mb())
        final = self._evaluate() if last_eval != p.step else None
        if last_save != p.step:
            self.checkpoints.save(p.step, **self._contents())
        self._plot()
        results = {"step": p.step, "train_minutes": round(p.train_seconds / 60, 2),
                   "ms_per_iter": round(1e3 * p.train_seconds / max(p.step, 1), 2),
                   "best_val_loss": round(p.best_val_loss, 5), "best_step": p.best_step,
                   "last_eval": final, "parameters": self.model.num_parameters(), "device": str(self.device),
                   "peak_rss_mb": round(peak_rss_mb(), 1)}
        write_json(self.run_dir / RESULTS_NAME, results)
        return results

    def _plot(self) -> None:
        from models.translator.plots import plot_curves, read_metrics  # matplotlib: slow to import

        if self.metrics_path.is_file():
            plot_curves(read_metrics(self.metrics_path), self.run_dir / CURVES_NAME,
                        title=f"GPT on Tiny Shakespeare ({self.config.data.vocab})", score_key="val_bpc",
                        score_label="bits per character", score_title="Validation bits per character",
                        loss_label="")
