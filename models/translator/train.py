"""Training the translator: the paper's recipe on Multi30k, with evaluation, checkpoints and exact resume.

One call, ``train(config, run_dir)``, does a whole run::

    data     load the training and validation pairs (models.translator.data)
    vocab    train a joint SentencePiece vocabulary on the training split -> <run_dir>/spm.model
    model    build the preset, Adam(0.9, 0.98, 1e-9), Noam or cosine schedule (step.py; the cosine can end
             with the time budget: ``_Run.training_seconds`` is its clock)
    loop     token-count batches (batching.py), ``accum_steps`` of them per optimiser step (step.train_step),
             shared with helper processes when ``train.workers > 1`` (parallel.py), or with the other
             ranks of an MPI job (``mpirun -n N``; ranks.py: rank 0 alone writes the files below)
    every N  a log line (train.log, metrics.jsonl), validation loss and greedy BLEU, a checkpoint
    end      last evaluation and checkpoint, curves.png, and the final scores: greedy and beam
             sacreBLEU on val and test_2016_flickr (evaluate.score), with their signatures -> results.json

The run directory's files and fresh/resume/overwrite rules are in run_dir.py.

Stopping: at ``max_steps`` optimiser steps, after ``max_epochs`` passes over the data, or when the
training time reaches ``max_minutes`` (time spent in steps; evaluation and checkpointing are not
counted, so a preset's BLEU "after 35 minutes" means 35 minutes of learning), whichever comes first.

Resuming (``resume=True``) restores from the newest ``ckpt_step<N>``: parameters, Adam's moments,
the schedule, the loss scale (fp16), the random generator (dropout) and the position in the data (epoch and batches done
in it; the batch order of an epoch depends only on the seed and the epoch number). The run then
continues as if it had never stopped: ``N`` steps + resume + ``M`` steps ends with the same
parameters as ``N + M`` steps in one go (on the CPU; CuPy's generator state is not restored), unless the
learning rate follows the clock (a cosine ending with ``max_minutes``): then it depends on how fast the
steps ran, before the stop and after it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

import tinygrad_attn as ta
from models.transformer import Transformer, upgrade_optimizer_state_dict
from models.translator import checkpoints as ckpt
from models.translator import config as cfg
from models.translator.batching import TokenBatcher, batch_stream
from models.translator.config import Config, ConfigError
from models.translator.data import load_pairs
from models.translator.evaluate import format_scores, score
from models.translator.machine import peak_rss_mb, resolve_device
from models.translator.parallel import GradientWorkers, usable_workers
from models.translator.ranks import SINGLE_PROCESS, MPIGradients, Ranks, join_ranks
from models.translator.run_dir import (
    CURVES_NAME,
    METRICS_NAME,
    RESULTS_NAME,
    VOCAB_NAME,
    append_jsonl,
    prepare_run_dir,
    run_logging,
    truncate_metrics,
    write_json,
)
from models.translator.step import SharedGradients, build, make_optimizer, make_scaler, train_step
from models.translator.vocab import Vocab

log = logging.getLogger(__name__)
# The run's log (train.log and the console) takes the records of every module of the package: this loop's,
# the helper processes' (parallel.py), the data's.
run_log = logging.getLogger("models.translator")

FINAL_SPLITS = ("val", "test_2016_flickr")


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # current epoch (0-based) ...
    batch_in_epoch: int = 0  # ... and batches of it already used
    train_seconds: float = 0.0  # time spent in training steps
    best_bleu: float = -1.0
    best_step: int = 0
    n_tgt_tokens: int = 0  # target tokens trained on


def encode_pairs(vocab: Vocab, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """Both sides of every pair as SentencePiece ids (without bos/eos)."""
    srcs = vocab.encode_batch([s for s, _ in pairs])
    tgts = vocab.encode_batch([t for _, t in pairs])
    return list(zip(srcs, tgts))


def validation_loss(model: Transformer, batcher: TokenBatcher, config: Config, device: ta.Device,
                    ranks: Ranks = SINGLE_PROCESS) -> tuple[float, float]:
    """Per-token validation loss: (label-smoothed, as in training; plain cross-entropy, for perplexity). With
    several ``ranks``, each computes every ``ranks.size``-th batch and the sums are added up."""
    model.eval()
    smoothed = plain = 0.0
    n = 0
    with ta.no_grad():
        for b in list(batcher.epoch(0))[ranks.rank::ranks.size]:
            logits = model(ta.tensor(b.src, device=device), ta.tensor(b.tgt_in, device=device))
            tgt_out = ta.tensor(b.tgt_out, device=device)
            smoothed += float(model.loss(logits, tgt_out, label_smoothing=config.train.label_smoothing)[0].item())
            plain += float(model.loss(logits, tgt_out, label_smoothing=0.0)[0].item())
            n += b.n_tgt_tokens
    smoothed, plain, total = ranks.sum([smoothed, plain, n])
    return smoothed / max(total, 1), plain / max(total, 1)




# ---- the loop -----------------------------------------------------------------------------------------


def training_processes(workers: int, device_type: str, precision: str) -> int:
    """How many processes share each batch: ``train.workers`` (capped by the cores there are) on the CPU in fp32,
    where parallel.py's helpers compute; one on a GPU or in fp16, said once in the log."""
    if device_type == "cpu" and precision == "fp32":
        return usable_workers(workers)
    if workers > 1:
        log.info("train.workers = %d applies to the CPU in fp32: one process on %s in %s", workers, device_type,
                 precision)
    return 1


def _stop_reason(config: Config, p: Progress) -> str | None:
    t = config.train
    if t.max_steps is not None and p.step >= t.max_steps:
        return f"max_steps = {t.max_steps} reached"
    if t.max_epochs is not None and p.epoch >= t.max_epochs:
        return f"max_epochs = {t.max_epochs} done"
    if t.max_minutes is not None and p.train_seconds >= 60 * t.max_minutes:
        return f"time budget of {t.max_minutes:g} minutes used"
    return None


def train(config: Config, run_dir: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False,
          console: bool = True) -> dict[str, Any]:
    """Run (or resume) a training run in ``run_dir``; returns the final results (also in results.json)."""
    run_dir = Path(run_dir)
    config = cfg.resolve(config)
    device = resolve_device(config.device)
    ranks = join_ranks(config)
    resume_from = ranks.on_rank0(lambda: prepare_run_dir(run_dir, resume, overwrite))
    with run_logging(run_dir, run_log, console) if ranks.writes else contextlib.nullcontext():
        return _Run(config, run_dir, device, resume_from, console and ranks.writes, ranks).run()


class _Run:
    """The state of one training run; ``run()`` is the loop."""

    def __init__(self, config: Config, run_dir: Path, device: ta.Device, resume_from: Path | None, console: bool,
                 ranks: Ranks = SINGLE_PROCESS):
        self.config, self.run_dir, self.device, self.console, self.ranks = config, run_dir, device, console, ranks
        t = config.train
        self.metrics_path = run_dir / METRICS_NAME
        saved = ckpt.load_checkpoint(resume_from) if resume_from is not None else None

        log.info("%s run in %s on %s", "resuming" if saved else "starting", run_dir, device)
        d = config.data
        train_pairs = load_pairs(d.direction, "train", d.data_dir, d.train_subset)
        self.val_pairs = load_pairs(d.direction, "val", d.data_dir)
        if saved is not None:
            cfg.check_resumable(config.to_dict(), saved.config)
            self.vocab = Vocab.from_bytes(saved.vocab_bytes)
            if ranks.writes:
                self.vocab.save(run_dir / VOCAB_NAME)
        else:
            start = time.perf_counter()
            sentences = [s for s, _ in train_pairs] + [t for _, t in train_pairs]

            def train_vocab() -> bytes:  # on rank 0, which writes it to the run directory; the others get it
                try:
                    return Vocab.train(sentences, run_dir, vocab_size=config.data.vocab_size).to_bytes()
                except ValueError as e:
                    raise ConfigError(f"data.vocab_size = {config.data.vocab_size}: {e}") from None

            self.vocab = Vocab.from_bytes(ranks.on_rank0(train_vocab))
            log.info("vocabulary: %d SentencePiece pieces trained on %d sentences in %.1fs",
                     len(self.vocab), len(sentences), time.perf_counter() - start)
        if ranks.writes:
            cfg.save(config, run_dir)

        self.batcher = TokenBatcher(encode_pairs(self.vocab, train_pairs), d.max_tokens, d.max_len, seed=t.seed)
        # Periodic evaluation (loss and BLEU) uses the first eval_subset validation pairs, the final one all.
        self.eval_pairs = self.val_pairs[: t.eval_subset] if t.eval_subset else self.val_pairs
        self.val_batcher = TokenBatcher(encode_pairs(self.vocab, self.eval_pairs), d.max_tokens, d.max_len,
                                        shuffle=False)
        log.info("data %s: %d training pairs in %d batches/epoch (skipped %d empty, %d longer than %d); "
                 "%d validation pairs", d.direction, self.batcher.n_pairs, len(self.batcher),
                 self.batcher.n_skipped_empty, self.batcher.n_skipped_too_long, d.max_len, len(self.val_pairs))
        if len(self.batcher) == 0:
            raise ConfigError("no training batch: every pair was skipped (check data.max_len / data.max_tokens)")

        ta.manual_seed(t.seed)
        self.model = build(config, len(self.vocab), device)
        self.progress = Progress()
        self._step_start = time.perf_counter()
        self.optimizer, self.scheduler = make_optimizer(config, self.model, clock=self.training_seconds)
        self.scaler = make_scaler(config)
        if t.tf32:
            ta.amp.allow_tf32(True)
            log.info("tf32: float32 matmuls may use TF32%s", "" if device.type == "cuda" else " (no effect on the CPU)")
        if t.precision == "fp16":
            log.info("mixed precision: fp16 autocast, loss scale %g%s", self.scaler.get_scale(),
                     "" if device.type == "cuda" else " (float16 elementwise ops are slow in NumPy: slower than fp32)")
        if saved is not None:
            if saved.optimizer is None or saved.scheduler is None:
                raise ckpt.CheckpointError(f"cannot resume from {saved.path}: it holds no optimizer or schedule "
                                           "state (an averaged or exported checkpoint?)")
            self.model.load_state_dict(saved.model)
            # A run saved before the model took tinygrad_attn.nn's blocks names its parameters the old way.
            self.optimizer.load_state_dict(upgrade_optimizer_state_dict(saved.optimizer, saved.model, self.model))
            self.scheduler.load_state_dict(saved.scheduler)
            if self.scaler.is_enabled() and saved.scaler:  # (a run saved in fp32 starts with a fresh scale)
                self.scaler.load_state_dict(saved.scaler)
            if saved.rng is not None:
                ta.random.set_rng_state(saved.rng)
            known = {k: v for k, v in saved.progress.items() if k in Progress.__dataclass_fields__}
            self.progress = Progress(**known)
            if ranks.writes:
                truncate_metrics(self.metrics_path, self.progress.step)
            log.info("resumed from %s at step %d (epoch %d, batch %d)", saved.path.name, self.progress.step,
                     self.progress.epoch + 1, self.progress.batch_in_epoch)
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info("model: preset %s, %s parameters, %s", config.model.preset, f"{n_params:,}",
                 ", ".join(f"{k}={v}" for k, v in config.model_hparams().items()))
        log.info("optimiser: Adam%s eps=%g, %s schedule, warmup %d to peak lr %.3g (factor %g), label smoothing %g",
                 tuple(t.betas), t.eps, t.schedule, t.warmup, cfg.peak_lr(config), t.lr_factor, t.label_smoothing)
        self.checkpoints = ckpt.CheckpointManager(run_dir, keep_last=t.keep_last)
        self.helper_rss_mb = 0.0

    # -- helpers --
    def training_seconds(self) -> float:
        """Training time so far, the step under way included: the clock of a schedule with a time budget
        (rank 0's on every rank of an MPI job, so that all ranks set the same learning rate; every rank
        reads it at the same points of the step)."""
        return self.ranks.from_rank0(self.progress.train_seconds + (time.perf_counter() - self._step_start))

    def _contents(self) -> dict[str, Any]:
        return dict(model_state=self.model.state_dict(), config=self.config.to_dict(),
                    vocab_bytes=self.vocab.to_bytes(), progress=asdict(self.progress),
                    optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                    rng=ta.random.get_rng_state(),
                    scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None)

    def _evaluate(self) -> dict[str, Any]:
        p = self.progress
        start = time.perf_counter()
        val_loss, val_nll = validation_loss(self.model, self.val_batcher, self.config, self.device, self.ranks)
        pairs = self.eval_pairs
        scores = score(self.model, self.vocab, pairs, self.config, beam_size=1, ranks=self.ranks)
        record = {"kind": "eval", "step": p.step, "epoch": p.epoch, "val_loss": round(val_loss, 5),
                  "val_ppl": round(math.exp(min(val_nll, 50.0)), 3), "bleu": round(scores["bleu"], 3),
                  "chrf": round(scores["chrf"], 3), "n_sentences": len(pairs),
                  "train_seconds": round(p.train_seconds, 2), "eval_seconds": round(time.perf_counter() - start, 2)}
        self._append_metrics(record)
        improved = scores["bleu"] > p.best_bleu
        if improved:
            p.best_bleu, p.best_step = scores["bleu"], p.step
        log.info("step %d: on %d val sentences: loss %.3f, ppl %.2f, greedy BLEU %.2f%s (%.1fs)", p.step,
                 len(pairs), val_loss, record["val_ppl"], scores["bleu"], " (new best)" if improved else "",
                 record["eval_seconds"])
        if improved and self.ranks.writes:
            self.checkpoints.save_best(**self._contents())
        return record

    def _append_metrics(self, record: dict[str, Any]) -> None:
        if self.ranks.writes:
            append_jsonl(self.metrics_path, record)

    def peak_rss_mb(self) -> float:
        """Peak resident memory of this process plus that of the gradient workers' (train.workers > 1)."""
        return peak_rss_mb() + self.helper_rss_mb

    def _save(self) -> None:
        if not self.ranks.writes:
            return
        path = self.checkpoints.save(self.progress.step, **self._contents())
        log.info("saved %s", path.name)

    # -- the loop --
    def run(self) -> dict[str, Any]:
        t, p = self.config.train, self.progress
        workers: SharedGradients | None = None
        helpers: GradientWorkers | None = None
        if self.ranks.size > 1:  # MPI ranks share each batch (ranks.py)
            workers = MPIGradients(self.model, self.ranks, t.label_smoothing, self.device)
            log.info("data parallel: each batch shared by %d MPI ranks%s", self.ranks.size,
                     f" (train.workers = {t.workers} does not apply)" if t.workers > 1 else "")
        elif (n_workers := training_processes(t.workers, self.device.type, t.precision)) > 1:
            # helper processes share each batch (parallel.py); forked before any other thread starts
            workers = helpers = GradientWorkers(self.model, n_workers, t.label_smoothing, self.device)
            log.info("data parallel: each batch shared by %d processes", n_workers)
        stream = batch_stream(self.batcher, p)
        bar = tqdm(total=t.max_steps, initial=p.step, unit="step", disable=not (t.progress and self.console),
                   dynamic_ncols=True, file=sys.stderr)
        window_loss, window_tokens = ta.zeros((), device=self.device), 0.0
        window_seconds = 0.0
        last_eval = last_save = p.step if p.step else -1
        try:
            while (reason := _stop_reason(self.config, p)) is None:
                start = self._step_start = time.perf_counter()
                batches = [next(stream) for _ in range(t.accum_steps)]
                loss_sum, n_tokens = train_step(self.model, self.optimizer, self.scheduler, batches, self.config,
                                                self.device, workers, self.scaler)
                seconds = self.ranks.from_rank0(time.perf_counter() - start)  # the ranks agree on when to stop
                p.step += 1
                p.train_seconds += seconds
                p.n_tgt_tokens += n_tokens
                # the losses add up where they are (a 0-d tensor); a read from a GPU waits for its queue, so
                # they are read every step only on the CPU (where it is free), else at the logging cadence
                window_loss, window_tokens, window_seconds = (window_loss + loss_sum, window_tokens + n_tokens,
                                                              window_seconds + seconds)
                lr = self.optimizer.param_groups[0]["lr"]
                bar.update(1)
                if self.device.type == "cpu" or p.step % t.log_every == 0:
                    step_loss, window_sum = float(loss_sum.item()), float(window_loss.item())
                    bar.set_postfix(loss=f"{step_loss / n_tokens:.3f}", lr=f"{lr:.2e}",
                                    tok_s=f"{window_tokens / max(window_seconds, 1e-9):,.0f}", epoch=p.epoch + 1)
                    if not math.isfinite(window_sum):
                        raise FloatingPointError(f"step {p.step}: the loss is {window_sum}; lower train.lr_factor "
                                                 "or set train.clip_norm")
                if p.step % t.log_every == 0:
                    record = {"kind": "train", "step": p.step, "epoch": p.epoch, "loss": round(window_sum /
                              window_tokens, 5), "lr": lr, "tgt_tokens_per_s": round(window_tokens / window_seconds, 1),
                              "train_seconds": round(p.train_seconds, 2)}
                    self._append_metrics(record)
                    log.info("step %d epoch %d: loss %.3f, lr %.3g, %.0f target tokens/s, %.1f min", p.step,
                             p.epoch + 1, record["loss"], lr, record["tgt_tokens_per_s"], p.train_seconds / 60)
                    window_loss, window_tokens, window_seconds = ta.zeros((), device=self.device), 0.0, 0.0
                if t.eval_every and p.step % t.eval_every == 0:
                    self._evaluate()
                    last_eval = p.step
                if t.checkpoint_every and p.step % t.checkpoint_every == 0:
                    self._save()
                    last_save = p.step
        finally:
            bar.close()
            if helpers is not None:
                helpers.close()
                self.helper_rss_mb = sum(helpers.helper_rss_mb)
        log.info("stopping at step %d: %s (%.1f minutes of training, %s target tokens, peak RSS %.0f MB)", p.step,
                 reason, p.train_seconds / 60, f"{p.n_tgt_tokens:,}", self.peak_rss_mb())
        if last_eval != p.step:
            self._evaluate()
        if last_save != p.step:
            self._save()
        self._plot()
        return self._final() if t.final_eval else {}

    def _plot(self) -> None:
        from models.translator.plots import plot_curves, read_metrics  # matplotlib: slow to import, needed here only

        if self.ranks.writes and self.metrics_path.is_file():
            path = plot_curves(read_metrics(self.metrics_path), self.run_dir / CURVES_NAME,
                               title=f"{self.config.model.preset} {self.config.data.direction}")
            log.info("curves: %s", path)

    def _final(self) -> dict[str, Any]:
        """Greedy and beam BLEU of the final model on val and test_2016_flickr -> results.json."""
        t, p, beam = self.config.train, self.progress, self.config.decode.beam_size
        results: dict[str, Any] = {"step": p.step, "epoch": p.epoch, "train_minutes": round(p.train_seconds / 60, 2),
                                   "best_val_bleu": p.best_bleu, "best_step": p.best_step,
                                   "device": str(self.device), "preset": self.config.model.preset,
                                   "tgt_tokens_per_s": round(p.n_tgt_tokens / max(p.train_seconds, 1e-9), 1),
                                   "splits": {}}
        for split in FINAL_SPLITS:
            d = self.config.data
            pairs = self.val_pairs if split == "val" else load_pairs(d.direction, split, d.data_dir)
            pairs = pairs[: t.final_subset] if t.final_subset else pairs
            results["splits"][split] = {}
            for name, k in (("greedy", 1), (f"beam{beam}", beam)):
                s = score(self.model, self.vocab, pairs, self.config, beam_size=k, ranks=self.ranks)
                results["splits"][split][name] = s
                log.info("%s %s (%d sentences, %.1f sentences/s):\n%s", split, name, s["n_sentences"],
                         s["sentences_per_s"], format_scores(s))
        results["peak_rss_mb"] = round(self.peak_rss_mb(), 1)
        if self.ranks.writes:
            write_json(self.run_dir / RESULTS_NAME, results)
        log.info("results: %s", self.run_dir / RESULTS_NAME)
        return results
