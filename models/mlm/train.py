"""Training BERT: masked-LM pre-training (``task: mlm``) and fine-tuning on the translation-pair task
(``task: classify``), one loop for both, with evaluation, checkpoints and exact resume.

One call, ``train(config, run_dir)``, does a whole run::

    data     mlm: Multi30k's training pairs as [CLS] de [SEP] en [SEP] (segments 0 and 1) and, with
             ``data.singles``, each sentence alone; classify: the examples of pairs.py
    vocab    a joint SentencePiece vocabulary with <mask> (examples.train_vocab) -> <run_dir>/spm.model; a
             classify run with ``init_from`` takes the pre-trained run's vocabulary and encoder
    model    models.bert.BERT, AdamW (no decay on biases and LayerNorms), linear warmup then cosine to 0
    loop     batches of ``batch_size`` sequences; mlm masks each batch afresh (masking.py) with a generator
             seeded by (seed, step), so a resumed run masks the same way
    every N  a log line (train.log, metrics.jsonl), validation loss and accuracy, a checkpoint
    end      curves.png and results.json: masked-token accuracy on val (mlm) or accuracy on val and
             test_2016_flickr (classify)

The run directory's rules (fresh, ``--resume``, ``--overwrite``) and records are the translator's
(models.translator.run_dir, checkpoints). Resuming restores the parameters, AdamW's moments, the schedule,
the dropout generator and the position in the data: N steps + resume + M steps gives the parameters of
N + M steps in one go (on the CPU), unless the schedule follows the clock (``train.max_minutes``).
"""

from __future__ import annotations

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
from models.bert import BERT, build_bert
from models.mlm import config as cfg
from models.mlm.config import Config, ConfigError
from models.mlm.examples import Batch, Batches, check_vocab, sequence, train_vocab
from models.mlm.masking import mask_tokens
from models.mlm.pairs import KINDS, SPLITS, Example, accuracy_by_kind, describe_kinds, load_splits
from models.translator import checkpoints as ckpt
from models.translator.batching import batch_stream
from models.translator.config import check_resumable
from models.translator.data import load_pairs
from models.translator.machine import resolve_device
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
from models.translator.vocab import Vocab

log = logging.getLogger(__name__)
run_log = logging.getLogger("models.mlm")
KIND = "mlm"  # checkpoints' format: tinygrad_attn-mlm-checkpoint/1
SHAPE_KEYS = ("preset", "d_model", "n_heads", "n_layers", "d_ff", "max_positions", "norm_first")
EVAL_MASK_SEED = 20260  # validation masks the same positions at every evaluation


@dataclass
class Progress:
    """Where training stands; saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    train_seconds: float = 0.0
    best_accuracy: float = -1.0
    best_step: int = 0


# ---- data ---------------------------------------------------------------------------------------------


def mlm_sequences(vocab: Vocab, pairs: list[tuple[str, str]], max_len: int,
                  singles: bool) -> list[tuple[list[int], list[int]]]:
    """Each pair as [CLS] de [SEP] en [SEP] and, with ``singles``, each sentence as [CLS] s [SEP]."""
    de, en = vocab.encode_batch([p[0] for p in pairs]), vocab.encode_batch([p[1] for p in pairs])
    out = [sequence(d, e, max_len) for d, e in zip(de, en)]
    if singles:
        out += [sequence(s, None, max_len) for s in de + en]
    return out


def pair_sequences(vocab: Vocab, examples: list[Example], max_len: int) -> list[tuple[list[int], list[int]]]:
    """Each classification example as [CLS] de [SEP] en [SEP]."""
    de, en = vocab.encode_batch([e.de for e in examples]), vocab.encode_batch([e.en for e in examples])
    return [sequence(d, e, max_len) for d, e in zip(de, en)]


def pair_task(config: Config) -> dict[str, list[Example]]:
    """The translation-pair examples of every split, made as ``config.data`` says (``final_subset`` is the
    caller's to apply)."""
    d = config.data
    return load_splits(d.data_dir, config.train.seed, d.hard_fraction, d.train_subset, swap_fraction=d.swap_fraction)


# ---- evaluation ---------------------------------------------------------------------------------------


def masked_accuracy(model: BERT, batches: Batches, mask_prob: float = 0.15,
                    seed: int = EVAL_MASK_SEED) -> tuple[float, float, int]:
    """(mean loss, accuracy, number of tokens) of predicting the chosen tokens, masked as in training by a
    generator seeded with ``(seed, batch index)``: the same positions every time."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    with ta.no_grad():
        for i, b in enumerate(batches.epoch(0)):
            inputs, labels = mask_tokens(b.ids, model.vocab_size, np.random.default_rng([seed, i]), mask_prob)
            loss, logits, targets = model.mlm_loss(inputs, b.segments, labels)
            loss_sum += float(loss.item()) * len(targets)
            correct += int((logits.numpy().argmax(-1) == targets).sum())
            n += len(targets)
    return loss_sum / max(n, 1), correct / max(n, 1), n


def classify(model: BERT, batches: Batches) -> tuple[float, np.ndarray]:
    """(mean loss, the predicted label of each example in the batches' order) of the classifier."""
    model.eval()
    loss_sum, predicted = 0.0, []
    with ta.no_grad():
        for b in batches.epoch(0):
            assert b.labels is not None
            loss, logits = model.classification_loss(b.ids, b.segments, b.labels)
            loss_sum += float(loss.item()) * len(b.labels)
            predicted.append(logits.numpy().argmax(-1))
    labels = np.concatenate(predicted)
    return loss_sum / max(len(labels), 1), labels


def classification_accuracy(model: BERT, batches: Batches) -> tuple[float, float, int]:
    """(mean loss, accuracy, number of examples) of the classifier."""
    assert batches.labels is not None and not batches.shuffle
    loss, predicted = classify(model, batches)
    return loss, float(np.mean(predicted == batches.labels)), len(predicted)


def accuracy_on_examples(model: BERT, examples: list[Example],
                         batches: Batches) -> tuple[float, float, dict[str, float]]:
    """(mean loss, accuracy, accuracy on each kind of example) of the classifier on ``examples``, which
    ``batches`` holds in order."""
    loss, predicted = classify(model, batches)
    return loss, float(np.mean(predicted == batches.labels)), accuracy_by_kind(examples, predicted)


def evaluate(model: BERT, config: Config, batches: Batches) -> tuple[float, float, int]:
    """The task's validation measure: masked-token accuracy (mlm) or classification accuracy."""
    if config.task == "mlm":
        return masked_accuracy(model, batches, config.train.mask_prob)
    return classification_accuracy(model, batches)


# ---- the run ------------------------------------------------------------------------------------------


def make_optimizer(model: BERT, config: Config, clock: Any) -> tuple[ta.optim.AdamW, Any]:
    """AdamW with weight decay on the weight matrices only (as BERT: none on biases, LayerNorms), and the
    schedule: linear warmup to ``train.lr``, then a cosine to 0 at the budget's end (steps or minutes)."""
    t = config.train
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = ta.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay},
                                {"params": no_decay, "weight_decay": 0.0}], lr=t.lr, betas=t.betas, eps=t.eps)
    seconds = 60 * t.max_minutes if t.max_minutes is not None else None
    scheduler = ta.optim.lr_scheduler.LinearWarmupCosineDecay(optimizer, t.warmup, total_steps=t.max_steps,
                                                              total_seconds=seconds,
                                                              clock=clock if seconds is not None else None)
    return optimizer, scheduler


def _check_resumable(config: Config, saved: dict[str, Any]) -> None:
    now = config.to_dict()
    for key in ("task", "init_from"):
        if saved.get(key) != now[key]:
            raise ConfigError(f"cannot resume: {key} is {now[key]!r} but the checkpoint's run has {saved.get(key)!r}")
    check_resumable(now, saved)


def train(config: Config, run_dir: str | os.PathLike[str], *, resume: bool = False, overwrite: bool = False,
          console: bool = True) -> dict[str, Any]:
    """Run (or resume) a run in ``run_dir``; returns the final results (also in results.json)."""
    run_dir = Path(run_dir)
    config = cfg.resolve(config)
    device = resolve_device(config.device)
    resume_from = prepare_run_dir(run_dir, resume, overwrite)
    with run_logging(run_dir, run_log, console):
        return _Run(config, run_dir, device, resume_from, console).run()


class _Run:
    """The state of one run; ``run()`` is the loop."""

    def __init__(self, config: Config, run_dir: Path, device: ta.Device, resume_from: Path | None,
                 console: bool) -> None:
        self.config, self.run_dir, self.device, self.console = config, run_dir, device, console
        t, d = config.train, config.data
        self.metrics_path = run_dir / METRICS_NAME
        saved = ckpt.load_checkpoint(resume_from) if resume_from is not None else None
        pretrained = ckpt.load_checkpoint(config.init_from) if config.init_from and saved is None else None
        log.info("%s %s run in %s on %s", "resuming" if saved else "starting", config.task, run_dir, device)

        if saved is not None:
            _check_resumable(config, saved.config)
        if saved is not None or pretrained is not None:
            source = saved if saved is not None else pretrained
            assert source is not None
            self.vocab = check_vocab(Vocab.from_bytes(source.vocab_bytes))
            self.vocab.save(run_dir / VOCAB_NAME)
        else:
            start = time.perf_counter()
            vocab_pairs = load_pairs("de-en", "train", d.data_dir, d.vocab_subset)
            sentences = [s for pair in vocab_pairs for s in pair]
            try:
                self.vocab = train_vocab(sentences, str(run_dir), d.vocab_size)
            except ValueError as e:
                raise ConfigError(f"data.vocab_size = {d.vocab_size}: {e}") from None
            log.info("vocabulary: %d pieces trained on %d sentences in %.1fs", len(self.vocab), len(sentences),
                     time.perf_counter() - start)
        if pretrained is not None:
            self._adopt_pretrained_model_config(pretrained.config)
        cfg.save_config(config, run_dir)

        self.final_examples: dict[str, list[Example]] = {}  # classify: for the accuracy on each kind of example
        self.train_batches, self.val_batches, self.final_batches = self._data()
        ta.manual_seed(t.seed)
        self.model = build_bert(len(self.vocab), **config.model_hparams())
        self.model.to(device)
        if pretrained is not None:
            loaded = self.model.load_encoder(pretrained.model)
            log.info("initialised from %s: %d tensors (the classifier's pooler and output start afresh)",
                     pretrained.path, len(loaded))
        self.progress = Progress()
        self._step_start = time.perf_counter()
        self.optimizer, self.scheduler = make_optimizer(self.model, config, self.training_seconds)
        if saved is not None:
            if saved.optimizer is None or saved.scheduler is None:
                raise ckpt.CheckpointError(f"cannot resume from {saved.path}: it holds no optimizer state")
            self.model.load_state_dict(saved.model)
            self.optimizer.load_state_dict(saved.optimizer)
            self.scheduler.load_state_dict(saved.scheduler)
            if saved.rng is not None:
                ta.random.set_rng_state(saved.rng)
            self.progress = Progress(**{k: v for k, v in saved.progress.items() if k in Progress.__dataclass_fields__})
            truncate_metrics(self.metrics_path, self.progress.step)
            log.info("resumed from %s at step %d", saved.path.name, self.progress.step)
        n_params = sum(p.numel() for p in self.model.parameters())
        log.info("model: BERT %s, %s parameters, %s", config.model.preset, f"{n_params:,}",
                 ", ".join(f"{k}={v}" for k, v in config.model_hparams().items()))
        self.checkpoints = ckpt.CheckpointManager(run_dir, keep_last=t.keep_last)

    def _adopt_pretrained_model_config(self, saved: dict[str, Any]) -> None:
        """A fine-tuning run takes the pre-trained model's shape (and vocabulary size) whatever its config says;
        its dropout stays the fine-tuning config's."""
        for key, value in saved.get("model", {}).items():
            if key not in SHAPE_KEYS:
                continue
            if getattr(self.config.model, key) != value:
                log.info("model.%s = %r from the pre-trained run (the config said %r)", key, value,
                         getattr(self.config.model, key))
                cfg.base.set_value(self.config, f"model.{key}", value)
        self.config.data.vocab_size = len(self.vocab)

    def _data(self) -> tuple[Batches, Batches, dict[str, Batches]]:
        """Training batches, periodic-validation batches, and the final evaluation's batches per split."""
        c, d, t = self.config, self.config.data, self.config.train
        if c.task == "mlm":
            train_seq = mlm_sequences(self.vocab, load_pairs("de-en", "train", d.data_dir, d.train_subset),
                                      d.max_len, d.singles)
            val_seq = mlm_sequences(self.vocab, load_pairs("de-en", "val", d.data_dir), d.max_len, d.singles)
            train_batches = Batches(train_seq, t.batch_size, seed=t.seed)
            final = {"val": Batches(val_seq[: d.final_subset], 128, shuffle=False)}
            val = Batches(val_seq[: d.eval_subset], 128, shuffle=False)
            log.info("data: %d training sequences (%d batches/epoch), %d validation sequences", len(train_seq),
                     len(train_batches), len(val_seq))
            return train_batches, val, final
        splits = pair_task(self.config)
        batches = {}
        for split in SPLITS:
            examples = splits[split] if split == "train" else splits[split][: d.final_subset]
            if split != "train":
                self.final_examples[split] = examples
            seqs, labels = pair_sequences(self.vocab, examples, d.max_len), [e.label for e in examples]
            batches[split] = (Batches(seqs, t.batch_size, labels, seed=t.seed) if split == "train"
                              else Batches(seqs, 128, labels, shuffle=False))
        val_examples = splits["val"][: d.eval_subset]
        val = Batches(pair_sequences(self.vocab, val_examples, d.max_len), 128, [e.label for e in val_examples],
                      shuffle=False)
        kinds = ", ".join(f"{sum(e.kind == k for e in splits['train'])} {k}" for k in KINDS[1:])
        log.info("data: %s examples (half of them translations; train negatives: %s)",
                 ", ".join(f"{s} {len(splits[s])}" for s in SPLITS), kinds)
        return batches.pop("train"), val, batches

    # -- helpers --
    def training_seconds(self) -> float:
        return self.progress.train_seconds + (time.perf_counter() - self._step_start)

    def _contents(self) -> dict[str, Any]:
        return dict(model_state=self.model.state_dict(), config=self.config.to_dict(),
                    vocab_bytes=self.vocab.to_bytes(), progress=asdict(self.progress),
                    optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                    rng=ta.random.get_rng_state(), kind=KIND)

    def _stop_reason(self) -> str | None:
        t, p = self.config.train, self.progress
        if t.max_steps is not None and p.step >= t.max_steps:
            return f"max_steps = {t.max_steps} reached"
        if t.max_minutes is not None and p.train_seconds >= 60 * t.max_minutes:
            return f"time budget of {t.max_minutes:g} minutes used"
        return None

    def _loss(self, batch: Batch) -> Any:
        if self.config.task == "mlm":
            rng = np.random.default_rng([self.config.train.seed, self.progress.step])
            inputs, labels = mask_tokens(batch.ids, self.model.vocab_size, rng, self.config.train.mask_prob)
            return self.model.mlm_loss(inputs, batch.segments, labels)[0]
        assert batch.labels is not None
        return self.model.classification_loss(batch.ids, batch.segments, batch.labels)[0]

    def _train_step(self, batch: Batch) -> float:
        self.model.train()
        loss = self._loss(batch)
        self.optimizer.zero_grad()
        loss.backward()
        if self.config.train.clip_norm is not None:
            ta.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.item())

    def _evaluate(self) -> dict[str, Any]:
        p = self.progress
        start = time.perf_counter()
        loss, accuracy, n = evaluate(self.model, self.config, self.val_batches)
        record = {"kind": "eval", "step": p.step, "epoch": p.epoch, "val_loss": round(loss, 5),
                  "val_accuracy": round(accuracy, 5), "n": n, "train_seconds": round(p.train_seconds, 2)}
        append_jsonl(self.metrics_path, record)
        improved = accuracy > p.best_accuracy
        if improved:
            p.best_accuracy, p.best_step = accuracy, p.step
        what = "masked tokens" if self.config.task == "mlm" else "examples"
        log.info("step %d: on %d validation %s: loss %.3f, accuracy %.4f%s (%.1fs)", p.step, n, what, loss,
                 accuracy, " (new best)" if improved else "", time.perf_counter() - start)
        if improved:
            self.checkpoints.save_best(**self._contents())
        return record

    def _save(self) -> None:
        path = self.checkpoints.save(self.progress.step, **self._contents())
        log.info("saved %s", path.name)

    def run(self) -> dict[str, Any]:
        t, p = self.config.train, self.progress
        stream = batch_stream(self.train_batches, p)
        bar = tqdm(total=t.max_steps, initial=p.step, unit="step", disable=not (t.progress and self.console),
                   dynamic_ncols=True, file=sys.stderr)
        window_loss, window_steps = 0.0, 0
        last_eval = last_save = p.step if p.step else -1
        try:
            while (reason := self._stop_reason()) is None:
                batch = next(stream)
                start = self._step_start = time.perf_counter()
                loss = self._train_step(batch)
                p.step += 1
                p.train_seconds += time.perf_counter() - start
                if not math.isfinite(loss):
                    raise FloatingPointError(f"step {p.step}: the loss is {loss}; lower train.lr")
                window_loss, window_steps = window_loss + loss, window_steps + 1
                lr = self.optimizer.param_groups[0]["lr"]
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", epoch=p.epoch + 1)
                if p.step % t.log_every == 0:
                    record = {"kind": "train", "step": p.step, "epoch": p.epoch, "loss": round(window_loss /
                              window_steps, 5), "lr": lr, "train_seconds": round(p.train_seconds, 2)}
                    append_jsonl(self.metrics_path, record)
                    log.info("step %d epoch %d: loss %.3f, lr %.3g, %.1f min", p.step, p.epoch + 1, record["loss"],
                             lr, p.train_seconds / 60)
                    window_loss, window_steps = 0.0, 0
                if t.eval_every and p.step % t.eval_every == 0:
                    self._evaluate()
                    last_eval = p.step
                if t.checkpoint_every and p.step % t.checkpoint_every == 0:
                    self._save()
                    last_save = p.step
        finally:
            bar.close()
        log.info("stopping at step %d: %s (%.1f minutes of training)", p.step, reason, p.train_seconds / 60)
        if last_eval != p.step:
            self._evaluate()
        if last_save != p.step:
            self._save()
        self._plot()
        return self._final()

    def _plot(self) -> None:
        from models.translator.plots import plot_curves, read_metrics  # matplotlib: slow to import

        if self.metrics_path.is_file():
            label = "masked-token accuracy" if self.config.task == "mlm" else "accuracy"
            plot_curves(read_metrics(self.metrics_path), self.run_dir / CURVES_NAME,
                        title=f"BERT {self.config.model.preset}, {self.config.task}", score_key="val_accuracy",
                        score_label=label, loss_label="")

    def _final(self) -> dict[str, Any]:
        """Accuracy of the final model on every evaluation split -> results.json."""
        p = self.progress
        results: dict[str, Any] = {"task": self.config.task, "step": p.step,
                                   "train_minutes": round(p.train_seconds / 60, 2), "init_from": self.config.init_from,
                                   "best_val_accuracy": p.best_accuracy, "best_step": p.best_step, "splits": {}}
        for split, batches in self.final_batches.items():
            kinds: dict[str, Any] = {}
            if self.config.task == "classify":
                examples = self.final_examples[split]
                loss, accuracy, by_kind = accuracy_on_examples(self.model, examples, batches)
                kinds["by_kind"], n = {k: round(a, 5) for k, a in by_kind.items()}, len(examples)
            else:
                loss, accuracy, n = evaluate(self.model, self.config, batches)
            results["splits"][split] = {"loss": round(loss, 5), "accuracy": round(accuracy, 5), "n": n, **kinds}
            log.info("%s: accuracy %.4f on %d %s, loss %.3f%s", split, accuracy, n,
                     "masked tokens" if self.config.task == "mlm" else "examples", loss,
                     f" ({describe_kinds(kinds['by_kind'])})" if kinds else "")
        write_json(self.run_dir / RESULTS_NAME, results)
        return results
