"""A run directory (``runs/<name>/``): the files a training run writes there, and starting, resuming or
overwriting a run in it.

    config.yaml               the resolved config (config.py)
    spm.model, spm.vocab      the SentencePiece vocabulary (vocab.py)
    ckpt_step<N>.safetensors  step checkpoints, best.safetensors, averaged.safetensors (checkpoints.py)
    metrics.jsonl, train.log  one JSON record per log line or evaluation; the log
    curves.png, results.json  training curves (plots.py); the final scores

The records (``append_jsonl``, ``truncate_metrics``, ``write_json``, ``attach_log_handlers``) are written the
same way by every model's training loop (the translator's, the language model's).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from models.translator import checkpoints as ckpt
from models.translator.config import CONFIG_NAME

log = logging.getLogger(__name__)

METRICS_NAME = "metrics.jsonl"
LOG_NAME = "train.log"
CURVES_NAME = "curves.png"
RESULTS_NAME = "results.json"
VOCAB_NAME = "spm.model"
# Everything a run writes; ``overwrite=True`` deletes these (and step checkpoints), nothing else.
RUN_FILES = (CONFIG_NAME, METRICS_NAME, LOG_NAME, CURVES_NAME, RESULTS_NAME, VOCAB_NAME, "spm.vocab",
             ckpt.BEST_NAME, ckpt.AVERAGED_NAME)


class RunDirError(RuntimeError):
    """The run directory is in a state that does not fit the request (e.g. a finished run, no --resume)."""


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


# ---- the run's records --------------------------------------------------------------------------------


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Add one JSON record as a line of ``path`` (metrics.jsonl)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after ``step`` (by a run killed after its last checkpoint)."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as f:
        keep = [line for line in f if line.strip() and json.loads(line).get("step", 0) <= step]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(keep), encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically (a temporary file renamed into place)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class TqdmHandler(logging.Handler):
    """Console log lines that do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def attach_log_handlers(run_dir: Path, console: bool, logger: logging.Logger) -> list[logging.Handler]:
    """Send ``logger``'s records to ``<run_dir>/train.log`` (timestamped) and, with ``console``, to stderr."""
    handlers: list[logging.Handler] = [logging.FileHandler(run_dir / LOG_NAME, encoding="utf-8")]
    handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    if console:
        handlers.append(TqdmHandler())
        handlers[-1].setFormatter(logging.Formatter("%(message)s"))
    for h in handlers:
        logger.addHandler(h)
    return handlers
