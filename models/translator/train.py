"""Training the translator: the paper's recipe on Multi30k, with evaluation, checkpoints and exact resume.

One call, ``train(config, run_dir)``, does a whole run::

    data     load the training and validation pairs (models.translator.data)
    vocab    train a joint SentencePiece vocabulary on the training split -> <run_dir>/spm.model
    model    build the preset (models.transformer.build_model), Adam(0.9, 0.98, 1e-9), Noam or cosine
             schedule (the cosine can end with the time budget: ``_Run.training_seconds`` is its clock)
    loop     token-count batches; label-smoothed cross-entropy summed over the target tokens of
             ``accum_steps`` batches and divided by their number (so accumulation = one big batch);
             optional clipping of the gradient norm; one optimiser step and one schedule step
    every N  a log line (train.log, metrics.jsonl), validation loss and greedy BLEU, a checkpoint
    end      last evaluation and checkpoint, curves.png, and the final scores: greedy and beam
             sacreBLEU on val and test_2016_flickr, printed with their signatures -> results.json

Stopping: at ``max_steps`` optimiser steps, after ``max_epochs`` passes over the data, or when the
training time reaches ``max_minutes`` (time spent in steps; evaluation and checkpointing are not
counted, so a preset's BLEU "after 35 minutes" means 35 minutes of learning), whichever comes first.

Resuming (``resume=True``) restores from the newest ``ckpt_step<N>``: parameters, Adam's moments,
the schedule, the random generator (dropout) and the position in the data (epoch and batches done
in it; the batch order of an epoch depends only on the seed and the epoch number). The run then
continues as if it had never stopped: ``N`` steps + resume + ``M`` steps ends with the same
parameters as ``N + M`` steps in one go (on the CPU; CuPy's generator state is not restored), unless the
learning rate follows the clock (a cosine ending with ``max_minutes``): then it depends on how fast the
steps ran, before the stop and after it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

import tinygrad_attn as ta
from models.translator import checkpoints as ckpt
from models.translator import config as cfg
from models.translator.batching import Batch, TokenBatcher
from models.translator.config import Config, ConfigError
from models.translator.data import load_split, parse_direction
from models.translator.evaluate import corpus_scores, format_scores
from models.translator.vocab import PAD_ID, Vocab

log = logging.getLogger("models.translator.train")

METRICS_NAME = "metrics.jsonl"
LOG_NAME = "train.log"
CURVES_NAME = "curves.png"
RESULTS_NAME = "results.json"
VOCAB_NAME = "spm.model"
# Everything a run writes; ``overwrite=True`` deletes these (and step checkpoints), nothing else.
RUN_FILES = (cfg.CONFIG_NAME, METRICS_NAME, LOG_NAME, CURVES_NAME, RESULTS_NAME, VOCAB_NAME, "spm.vocab",
             ckpt.BEST_NAME, ckpt.AVERAGED_NAME)
FINAL_SPLITS = ("val", "test_2016_flickr")


class RunDirError(RuntimeError):
    """The run directory is in a state that does not fit the request (e.g. a finished run, no --resume)."""


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


# ---- devices, data, model -----------------------------------------------------------------------------


def resolve_device(spec: str) -> ta.Device:
    """``ta.Device`` for ``spec``; a ``ConfigError`` that says why when the device cannot be used."""
    cfg.check_device(spec)
    try:
        dev = ta.device(spec)
        ta.zeros(1, device=dev)  # imports CuPy and touches the GPU
    except RuntimeError as e:
        raise ConfigError(
            f"device {spec!r} is not usable: {e}\nOn a machine with an NVIDIA GPU install the CuPy backend "
            "(pip install -e '.[gpu]'); otherwise use --device cpu."
        ) from None
    return dev


def load_pairs(config: Config, split: str, limit: int | None = None) -> list[tuple[str, str]]:
    """The ``(source, target)`` text pairs of ``split`` in the config's direction (first ``limit`` only)."""
    src, tgt = parse_direction(config.data.direction)
    pairs = load_split(split, src, tgt, data_dir=config.data.data_dir)
    return pairs[:limit] if limit is not None else pairs


def encode_pairs(vocab: Vocab, pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """Both sides of every pair as SentencePiece ids (without bos/eos)."""
    srcs = vocab.encode_batch([s for s, _ in pairs])
    tgts = vocab.encode_batch([t for _, t in pairs])
    return list(zip(srcs, tgts))


def build(config: Config, vocab_size: int, device: ta.Device) -> Any:
    """The Transformer of the (resolved) config, on ``device``."""
    from models.transformer import build_model

    return build_model(vocab_size, pad_id=PAD_ID, **config.model_hparams()).to(device)


def make_optimizer(config: Config, model: Any, clock: Callable[[], float] | None = None) -> tuple[Any, Any]:
    """Adam with the config's betas/eps and its schedule, which sets the lr of every step: the paper's Noam
    schedule, or the same warmup and peak followed by a cosine decay to 0 at ``train.max_steps`` or at the end
    of ``train.max_minutes``, whichever comes first. The minutes count only with a ``clock`` (training
    seconds so far, as the training loop measures them); without one the cosine needs ``max_steps``."""
    t = config.train
    from tinygrad_attn.optim import Adam
    from tinygrad_attn.optim.lr_scheduler import LinearWarmupCosineDecay, NoamLR

    optimizer = Adam(model.parameters(), lr=cfg.peak_lr(config), betas=t.betas, eps=t.eps)
    if t.schedule == "cosine":
        timed = t.max_minutes is not None and clock is not None
        if t.max_steps is None and not timed:
            raise ConfigError("train.schedule = 'cosine' with train.max_steps = null decays over "
                              "train.max_minutes, which needs a clock: pass make_optimizer(..., clock=...)")
        return optimizer, LinearWarmupCosineDecay(optimizer, warmup_steps=t.warmup, total_steps=t.max_steps,
                                                  total_seconds=60.0 * t.max_minutes if timed else None,
                                                  clock=clock if timed else None)
    return optimizer, NoamLR(optimizer, d_model=config.model.d_model, warmup=t.warmup, factor=t.lr_factor)


def _tensor(array: np.ndarray, device: ta.Device) -> ta.Tensor:
    return ta.tensor(array, device=device)


# ---- one step, validation, BLEU -----------------------------------------------------------------------


def accumulate_gradients(model: Any, batches: Sequence[Batch], n_tokens: int, label_smoothing: float,
                         device: ta.Device) -> float:
    """Forward and backward of each batch, its summed loss divided by ``n_tokens`` (the target tokens of the
    whole step, however it is split into batches or between processes), so that the ``.grad`` sums are
    exactly the gradient of the step's mean loss. Returns the summed (undivided) loss."""
    total = 0.0
    for b in batches:
        logits = model(_tensor(b.src, device), _tensor(b.tgt_in, device))
        loss_sum, _ = model.loss(logits, _tensor(b.tgt_out, device), label_smoothing=label_smoothing)
        (loss_sum / n_tokens).backward()
        total += float(loss_sum.item())
    return total


def train_step(model: Any, optimizer: Any, scheduler: Any, batches: Sequence[Batch], config: Config,
               device: ta.Device, workers: Any = None) -> tuple[float, int]:
    """One optimiser step on ``batches`` (gradients accumulated); returns (summed loss, target tokens).

    Each batch's summed loss is divided by the target tokens of *all* the batches, so the gradient is
    exactly that of the mean loss over one big batch, however it is split. With ``workers`` (a
    ``parallel.GradientWorkers``) the batches are shared with helper processes.
    """
    model.train()
    optimizer.zero_grad()
    n_tokens = sum(b.n_tgt_tokens for b in batches)
    if workers is None:
        total = accumulate_gradients(model, batches, n_tokens, config.train.label_smoothing, device)
    else:
        total = workers.gradients(batches, n_tokens)
    if config.train.clip_norm is not None:
        from tinygrad_attn.nn.utils import clip_grad_norm_

        clip_grad_norm_(model.parameters(), config.train.clip_norm)
    optimizer.step()
    scheduler.step()
    return total, n_tokens


def validation_loss(model: Any, batcher: TokenBatcher, config: Config, device: ta.Device) -> tuple[float, float]:
    """Per-token validation loss: (label-smoothed, as in training; plain cross-entropy, for perplexity)."""
    model.eval()
    smoothed = plain = 0.0
    n = 0
    with ta.no_grad():
        for b in batcher.epoch(0):
            logits = model(_tensor(b.src, device), _tensor(b.tgt_in, device))
            tgt_out = _tensor(b.tgt_out, device)
            smoothed += float(model.loss(logits, tgt_out, label_smoothing=config.train.label_smoothing)[0].item())
            plain += float(model.loss(logits, tgt_out, label_smoothing=0.0)[0].item())
            n += b.n_tgt_tokens
    return smoothed / max(n, 1), plain / max(n, 1)


def translate(model: Any, vocab: Vocab, sentences: Sequence[str], config: Config, beam_size: int = 1) -> list[str]:
    """Detokenized translations of ``sentences`` (greedy when ``beam_size == 1``)."""
    from models.translator.search import translate_sentences

    d = config.decode
    return translate_sentences(model, vocab, list(sentences), beam_size=beam_size, batch_size=d.batch_size,
                               alpha=d.alpha, max_len_a=d.max_len_a, max_len_b=d.max_len_b, workers=d.workers)


def score(model: Any, vocab: Vocab, pairs: Sequence[tuple[str, str]], config: Config,
          beam_size: int = 1) -> dict[str, Any]:
    """sacreBLEU and chrF of the model's translations of ``pairs`` against their raw references.

    Adds ``seconds`` and ``sentences_per_s`` (decoding speed) and the first few ``examples``.
    """
    start = time.perf_counter()
    hyps = translate(model, vocab, [s for s, _ in pairs], config, beam_size=beam_size)
    seconds = time.perf_counter() - start
    scores = corpus_scores(hyps, [t for _, t in pairs])
    scores.update(beam_size=beam_size, seconds=round(seconds, 3), sentences_per_s=round(len(pairs) / seconds, 2),
                  examples=[{"source": s, "reference": t, "hypothesis": h} for (s, t), h in zip(pairs[:5], hyps)])
    return scores


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (0 where the OS does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)  # macOS reports bytes, Linux kilobytes


# ---- the run directory --------------------------------------------------------------------------------


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after ``step`` (by a run killed after its last checkpoint)."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        keep = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(keep), encoding="utf-8")
    os.replace(tmp, path)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> Path | None:
    """Create ``run_dir``; return the checkpoint to resume from (or None for a fresh start).

    A directory that already holds a run (checkpoints or metrics) is an error unless ``resume``
    (continue it) or ``overwrite`` (delete that run's files) is given.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    latest = ckpt.latest_checkpoint(run_dir)
    if resume:
        if latest is None:
            log.warning("%s has no checkpoint to resume from: starting a fresh run", run_dir)
        return latest
    existing = [run_dir / n for n in RUN_FILES if (run_dir / n).exists()] + ckpt.list_checkpoints(run_dir)
    started = latest is not None or (run_dir / METRICS_NAME).exists()  # else: a run that died while setting up
    if started and not overwrite:
        raise RunDirError(
            f"{run_dir} already holds a run ({', '.join(p.name for p in existing[:4])}"
            f"{', ...' if len(existing) > 4 else ''}). Pass --resume to continue it, --overwrite to start "
            "over, or choose another --run-dir."
        )
    for p in existing:
        p.unlink()
    return None


class _TqdmHandler(logging.Handler):
    """Console log lines that do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm.auto import tqdm

        tqdm.write(self.format(record), file=sys.stderr)


def _attach_log_handlers(run_dir: Path, console: bool) -> list[logging.Handler]:
    handlers: list[logging.Handler] = [logging.FileHandler(run_dir / LOG_NAME, encoding="utf-8")]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    if console:
        handlers.append(_TqdmHandler())
        handlers[-1].setFormatter(logging.Formatter("%(message)s"))
    for h in handlers:
        log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False
    return handlers


def _check_resumable(config: Config, saved: dict[str, Any]) -> None:
    """The model and data sections must match the checkpoint's (data_dir may move)."""
    now = config.to_dict()
    for section in ("model", "data"):
        for key, value in saved.get(section, {}).items():
            if key != "data_dir" and now[section].get(key) != value:
                raise ConfigError(
                    f"cannot resume: {section}.{key} is {now[section].get(key)!r} but the checkpoint was trained "
                    f"with {value!r}; drop the override or start a new run"
                )
    if now["train"]["seed"] != saved.get("train", {}).get("seed", now["train"]["seed"]):
        raise ConfigError("cannot resume: train.seed differs from the checkpoint's (it fixes the data order)")


# ---- the loop -----------------------------------------------------------------------------------------


def _batch_stream(batcher: TokenBatcher, progress: Progress) -> Iterator[Batch]:
    """Batches forever from the position in ``progress``, advancing it as each batch is handed out."""
    while True:
        for batch in batcher.epoch(progress.epoch, skip=progress.batch_in_epoch):
            progress.batch_in_epoch += 1
            if progress.batch_in_epoch == len(batcher):
                progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0
            yield batch
        if progress.batch_in_epoch:  # the epoch was already exhausted (resumed at its very end)
            progress.epoch, progress.batch_in_epoch = progress.epoch + 1, 0


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
    resume_from = prepare_run_dir(run_dir, resume, overwrite)
    handlers = _attach_log_handlers(run_dir, console)
    try:
        return _Run(config, run_dir, device, resume_from, console).run()
    finally:
        for h in handlers:
            log.removeHandler(h)
            h.close()


class _Run:
    """The state of one training run; ``run()`` is the loop."""

    def __init__(self, config: Config, run_dir: Path, device: ta.Device, resume_from: Path | None, console: bool):
        self.config, self.run_dir, self.device, self.console = config, run_dir, device, console
        t = config.train
        self.metrics_path = run_dir / METRICS_NAME
        saved = ckpt.load_checkpoint(resume_from) if resume_from is not None else None

        log.info("%s run in %s on %s", "resuming" if saved else "starting", run_dir, device)
        train_pairs = load_pairs(config, "train", config.data.train_subset)
        self.val_pairs = load_pairs(config, "val")
        if saved is not None:
            _check_resumable(config, saved.config)
            self.vocab = Vocab.from_bytes(saved.vocab_bytes)
            self.vocab.save(run_dir / VOCAB_NAME)
        else:
            start = time.perf_counter()
            sentences = [s for s, _ in train_pairs] + [t for _, t in train_pairs]
            try:
                self.vocab = Vocab.train(sentences, run_dir, vocab_size=config.data.vocab_size)
            except ValueError as e:
                raise ConfigError(f"data.vocab_size = {config.data.vocab_size}: {e}") from None
            log.info("vocabulary: %d SentencePiece pieces trained on %d sentences in %.1fs",
                     len(self.vocab), len(sentences), time.perf_counter() - start)
        cfg.save(config, run_dir)

        d = config.data
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
        if saved is not None:
            self.model.load_state_dict(saved.model)
            self.optimizer.load_state_dict(saved.optimizer)
            self.scheduler.load_state_dict(saved.scheduler)
            ta.random.set_rng_state(saved.rng)
            known = {k: v for k, v in saved.progress.items() if k in Progress.__dataclass_fields__}
            self.progress = Progress(**known)
            _truncate_metrics(self.metrics_path, self.progress.step)
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
        """Training time so far, the step under way included: the clock of a schedule with a time budget."""
        return self.progress.train_seconds + (time.perf_counter() - self._step_start)

    def _contents(self) -> dict[str, Any]:
        return dict(model_state=self.model.state_dict(), config=self.config.to_dict(),
                    vocab_bytes=self.vocab.to_bytes(), progress=asdict(self.progress),
                    optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                    rng=ta.random.get_rng_state())

    def _evaluate(self) -> dict[str, Any]:
        p = self.progress
        start = time.perf_counter()
        val_loss, val_nll = validation_loss(self.model, self.val_batcher, self.config, self.device)
        pairs = self.eval_pairs
        scores = score(self.model, self.vocab, pairs, self.config, beam_size=1)
        record = {"kind": "eval", "step": p.step, "epoch": p.epoch, "val_loss": round(val_loss, 5),
                  "val_ppl": round(math.exp(min(val_nll, 50.0)), 3), "bleu": round(scores["bleu"], 3),
                  "chrf": round(scores["chrf"], 3), "n_sentences": len(pairs),
                  "train_seconds": round(p.train_seconds, 2), "eval_seconds": round(time.perf_counter() - start, 2)}
        _append_jsonl(self.metrics_path, record)
        improved = scores["bleu"] > p.best_bleu
        if improved:
            p.best_bleu, p.best_step = scores["bleu"], p.step
        log.info("step %d: on %d val sentences: loss %.3f, ppl %.2f, greedy BLEU %.2f%s (%.1fs)", p.step,
                 len(pairs), val_loss, record["val_ppl"], scores["bleu"], " (new best)" if improved else "",
                 record["eval_seconds"])
        if improved:
            self.checkpoints.save_best(**self._contents())
        return record

    def peak_rss_mb(self) -> float:
        """Peak resident memory of this process plus that of the gradient workers' (train.workers > 1)."""
        return peak_rss_mb() + self.helper_rss_mb

    def _save(self) -> None:
        path = self.checkpoints.save(self.progress.step, **self._contents())
        log.info("saved %s", path.name)

    # -- the loop --
    def run(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        t, p = self.config.train, self.progress
        from models.translator.parallel import GradientWorkers, usable_workers

        workers = None
        n_workers = usable_workers(t.workers)
        if n_workers > 1:  # helper processes share each batch (parallel.py); forked before any other thread starts
            workers = GradientWorkers(self.model, n_workers, t.label_smoothing, self.device)
            log.info("data parallel: each batch shared by %d processes", n_workers)
        stream = _batch_stream(self.batcher, p)
        bar = tqdm(total=t.max_steps, initial=p.step, unit="step", disable=not (t.progress and self.console),
                   dynamic_ncols=True, file=sys.stderr)
        window_loss = window_tokens = 0.0
        window_seconds = 0.0
        last_eval = last_save = p.step if p.step else -1
        try:
            while (reason := _stop_reason(self.config, p)) is None:
                start = self._step_start = time.perf_counter()
                batches = [next(stream) for _ in range(t.accum_steps)]
                loss_sum, n_tokens = train_step(self.model, self.optimizer, self.scheduler, batches, self.config,
                                                self.device, workers)
                seconds = time.perf_counter() - start
                p.step += 1
                p.train_seconds += seconds
                p.n_tgt_tokens += n_tokens
                window_loss, window_tokens, window_seconds = (window_loss + loss_sum, window_tokens + n_tokens,
                                                              window_seconds + seconds)
                lr = self.optimizer.param_groups[0]["lr"]
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / n_tokens:.3f}", lr=f"{lr:.2e}",
                                tok_s=f"{window_tokens / max(window_seconds, 1e-9):,.0f}", epoch=p.epoch + 1)
                if not math.isfinite(loss_sum):
                    raise FloatingPointError(f"step {p.step}: the loss is {loss_sum}; lower train.lr_factor "
                                             "or set train.clip_norm")
                if p.step % t.log_every == 0:
                    record = {"kind": "train", "step": p.step, "epoch": p.epoch, "loss": round(window_loss /
                              window_tokens, 5), "lr": lr, "tgt_tokens_per_s": round(window_tokens / window_seconds, 1),
                              "train_seconds": round(p.train_seconds, 2)}
                    _append_jsonl(self.metrics_path, record)
                    log.info("step %d epoch %d: loss %.3f, lr %.3g, %.0f target tokens/s, %.1f min", p.step,
                             p.epoch + 1, record["loss"], lr, record["tgt_tokens_per_s"], p.train_seconds / 60)
                    window_loss = window_tokens = window_seconds = 0.0
                if t.eval_every and p.step % t.eval_every == 0:
                    self._evaluate()
                    last_eval = p.step
                if t.checkpoint_every and p.step % t.checkpoint_every == 0:
                    self._save()
                    last_save = p.step
        finally:
            bar.close()
            if workers is not None:
                workers.close()
                self.helper_rss_mb = sum(workers.helper_rss_mb)
        log.info("stopping at step %d: %s (%.1f minutes of training, %s target tokens, peak RSS %.0f MB)", p.step,
                 reason, p.train_seconds / 60, f"{p.n_tgt_tokens:,}", self.peak_rss_mb())
        if last_eval != p.step:
            self._evaluate()
        if last_save != p.step:
            self._save()
        self._plot()
        return self._final() if t.final_eval else {}

    def _plot(self) -> None:
        from models.translator.plots import plot_curves, read_metrics

        if self.metrics_path.is_file():
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
            pairs = self.val_pairs if split == "val" else load_pairs(self.config, split)
            pairs = pairs[: t.final_subset] if t.final_subset else pairs
            results["splits"][split] = {}
            for name, k in (("greedy", 1), (f"beam{beam}", beam)):
                s = score(self.model, self.vocab, pairs, self.config, beam_size=k)
                results["splits"][split][name] = s
                log.info("%s %s (%d sentences, %.1f sentences/s):\n%s", split, name, s["n_sentences"],
                         s["sentences_per_s"], format_scores(s))
        results["peak_rss_mb"] = round(self.peak_rss_mb(), 1)
        _write_json(self.run_dir / RESULTS_NAME, results)
        log.info("results: %s", self.run_dir / RESULTS_NAME)
        return results
