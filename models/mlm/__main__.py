"""BERT's command line: ``python -m models.mlm train|fill|evaluate|finetune|classify|baseline``.

(Also installed as the console script ``ta-mlm``.)

    train     python -m models.mlm train configs/mlm_small.yaml                       -> runs/mlm_small/
              ... --max-minutes 5 --set train.lr=5e-4 --resume --run-dir runs/mlm_small
    fill      python -m models.mlm fill -c runs/mlm_small "A man in an orange <mask> is looking at something."
              ... "Ein Hund rennt." "A <mask> is running."     (a pair: the German side helps)
              ... --top-k 10 --attention attention.png
    evaluate  python -m models.mlm evaluate -c runs/mlm_small              (masked-token accuracy on val)
              python -m models.mlm evaluate -c runs/pairs --split test_2016_flickr   (pair accuracy)
    finetune  python -m models.mlm finetune configs/pairs.yaml --init runs/mlm_medium -> runs/pairs/
              (without --init: the same model from scratch)
    classify  python -m models.mlm classify -c runs/pairs "Ein Hund rennt." "A dog is running."
    baseline  python -m models.mlm baseline configs/pairs.yaml      (bag-of-words logistic regression)

``-c`` takes a checkpoint file or a run directory (its ``best.safetensors``, else the newest step). Problems
the user can fix (a missing checkpoint, a bad config value, text without ``<mask>``, missing data) are
reported in one line, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import tinygrad_attn as ta
import tinygrad_attn.functional as F
from models.bert import BERT
from models.mlm import config as cfg
from models.mlm.baseline import run_baseline
from models.mlm.checkpoint import load_bert
from models.mlm.config import ConfigError
from models.mlm.examples import Batches
from models.mlm.fill import FillError, fill, filled, inputs
from models.mlm.pairs import SPLITS, describe_kinds
from models.mlm.train import accuracy_on_examples, evaluate, mlm_sequences, pair_sequences, pair_task, train
from models.translator import checkpoints as ckpt
from models.translator.data import DataError, load_pairs
from models.translator.machine import resolve_device
from models.translator.run_dir import RunDirError
from models.translator.vocab import Vocab

PROG = "python -m models.mlm"


# ---- train and finetune -------------------------------------------------------------------------------


def _config(args: argparse.Namespace, task: str) -> tuple[cfg.Config, Path]:
    """Defaults < config file (or the run's config.yaml on --resume) < flags < --set."""
    base = args.config
    if base is None and args.resume and args.run_dir and (Path(args.run_dir) / "config.yaml").is_file():
        base = Path(args.run_dir) / "config.yaml"
    config = cfg.load(base)
    config.task = task
    if task == "classify" and args.init is not None:
        config.init_from = args.init
    for key, value in (("data.data_dir", args.data_dir), ("device", args.device),
                       ("train.max_minutes", args.max_minutes), ("train.max_steps", args.max_steps),
                       ("train.seed", args.seed)):
        if value is not None:
            cfg.base.set_value(config, key, value)
    if args.no_progress:
        config.train.progress = False
    cfg.base.apply_overrides(config, args.set)
    cfg.validate(config)
    default = Path(args.config).stem if args.config else task
    return config, Path(args.run_dir) if args.run_dir else Path("runs") / default


def cmd_train(args: argparse.Namespace) -> int:
    config, run_dir = _config(args, "mlm" if args.command == "train" else "classify")
    results = train(config, run_dir, resume=args.resume, overwrite=args.overwrite)
    for split, r in results["splits"].items():
        what = "masked-token accuracy" if config.task == "mlm" else "accuracy"
        print(f"{split}: {what} {r['accuracy']:.4f} on {r['n']} ({results['step']} steps, "
              f"{results['train_minutes']} minutes)")
    print(f"run directory: {run_dir}")
    return 0


# ---- fill ---------------------------------------------------------------------------------------------


def cmd_fill(args: argparse.Namespace) -> int:
    model, vocab, config, _ = load_bert(args.checkpoint, resolve_device(args.device))
    if not 1 <= len(args.text) <= 2:
        raise FillError("give one text, or two (a German sentence and its English translation), with <mask>s")
    text, second = args.text[0], (args.text[1] if len(args.text) == 2 else None)
    if args.top_k < 1:
        raise FillError(f"--top-k must be at least 1, got {args.top_k}")
    candidates = fill(model, vocab, text, second, args.top_k)
    best = [c[0][0] for c in candidates]
    n_first = text.count("<mask>") if second is not None else len(best)
    print(filled(text, best[:n_first]) + (f" / {filled(second, best[n_first:])}" if second is not None else ""))
    for i, options in enumerate(candidates, start=1):
        print(f"<mask> {i}: " + "  ".join(f"{piece} {p:.3f}" for piece, p in options))
    if args.attention:
        print(f"attention: {draw_attention(model, vocab, text, second, args.attention)}", file=sys.stderr)
    return 0


def draw_attention(model: BERT, vocab: Vocab, text: str, second: str | None, path: str) -> Path:
    """Heatmaps of every layer's and head's self-attention over the input: BERT's full matrix (each token
    attends to every token, before and after it)."""
    from models.translator.plots import plot_attention_grid  # matplotlib: slow to import, needed here only

    ids, segments = inputs(vocab, text, second, model.max_positions)
    with ta.no_grad():
        _, weights = model.encode(ids, segments, return_attention=True)
    maps = np.stack([w.numpy()[0] for w in weights])
    pieces = vocab.pieces(ids[0])
    labels = ["[CLS]" if p == "<s>" else "[SEP]" if p == "</s>" else "[MASK]" if p == "<mask>" else p for p in pieces]
    shown = text if second is None else f"{text} / {second}"
    return plot_attention_grid(maps, labels, labels, path, title=f"BERT self-attention: {shown}"[:110],
                               query_name="query", key_name="key")


# ---- evaluate and classify ----------------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    model, vocab, config, checkpoint = load_bert(args.checkpoint, resolve_device(args.device))
    if args.data_dir:
        config.data.data_dir = args.data_dir
    kinds: dict[str, dict[str, float]] = {}
    if config.task == "mlm":
        seqs = mlm_sequences(vocab, load_pairs("de-en", args.split, config.data.data_dir, args.limit),
                             config.data.max_len, config.data.singles)
        loss, accuracy, n = evaluate(model, config, Batches(seqs, 128, shuffle=False))
        print(f"{args.split}: masked-token accuracy {accuracy:.4f} on {n} masked tokens, loss {loss:.3f}")
    else:
        examples = pair_task(config)[args.split][: args.limit]
        batches = Batches(pair_sequences(vocab, examples, config.data.max_len), 128, [e.label for e in examples],
                          shuffle=False)
        loss, accuracy, kinds["by_kind"] = accuracy_on_examples(model, examples, batches)
        n = len(examples)
        print(f"{args.split}: accuracy {accuracy:.4f} on {n} sentence pairs ({describe_kinds(kinds['by_kind'])}), "
              f"loss {loss:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"split": args.split, "accuracy": accuracy, "loss": loss, "n": n,
                                               **kinds, "checkpoint": str(checkpoint.path)}, indent=2) + "\n")
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    model, vocab, config, _ = load_bert(args.checkpoint, resolve_device(args.device))
    if config.task != "classify":
        raise ConfigError(f"{args.checkpoint} is a {config.task} run; classify needs a fine-tuned one "
                          f"(`{PROG} finetune`)")
    if not args.german.strip() or not args.english.strip():
        raise FillError("classify needs a non-empty German and English sentence")
    ids, segments = inputs(vocab, args.german, args.english, model.max_positions, require_mask=False)
    with ta.no_grad():
        p = float(F.softmax(model.classify(ids, segments), dim=-1).numpy()[0, 1])
    print(f"{'translation' if p > 0.5 else 'not a translation'} (p = {p:.3f})")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    config = cfg.load(args.config, args.set)
    if args.data_dir:
        config.data.data_dir = args.data_dir
    subset = config.data.final_subset
    splits = {name: examples if name == "train" else examples[:subset] for name, examples in pair_task(config).items()}
    results = run_baseline(splits)
    print(f"bag-of-words logistic regression (L2 {results['l2']:g}, chosen on val):")
    for split in SPLITS:
        kinds = describe_kinds(results["by_kind"][split])
        print(f"  {split}: accuracy {results[split]:.4f} on {len(splits[split])} sentence pairs ({kinds})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


# ---- the parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def run_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("config", nargs="?", help="a .yaml or .toml config (optional with --resume)")
        p.add_argument("--run-dir", help="where the run's files go (default: runs/<config name>)")
        p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its newest checkpoint")
        p.add_argument("--overwrite", action="store_true", help="delete the run in --run-dir and start over")
        p.add_argument("--data-dir", help="folder with the Multi30k .gz files")
        p.add_argument("--device", help="cpu, cuda or cuda:N")
        p.add_argument("--max-minutes", type=float, help="training time budget")
        p.add_argument("--max-steps", type=int, help="optimiser steps")
        p.add_argument("--seed", type=int)
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--checkpoint", required=True, help="a checkpoint file or a run directory")
        p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")

    p = sub.add_parser("train", help="pre-train BERT by masked language modelling")
    run_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("finetune", help="train the translation-pair classifier (from --init, or from scratch)")
    run_args(p)
    p.add_argument("--init", metavar="RUN", help="a pre-trained run directory or checkpoint to start from")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("fill", help="fill in the <mask>s of a sentence")
    model_args(p)
    p.add_argument("text", nargs="+", help="a sentence with <mask>s, or a German and an English sentence")
    p.add_argument("--top-k", type=int, default=5, help="candidates per mask (default 5)")
    p.add_argument("--attention", metavar="PNG", help="draw the self-attention of every layer and head")
    p.set_defaults(func=cmd_fill)

    p = sub.add_parser("evaluate", help="masked-token accuracy (mlm run) or pair accuracy (classify run)")
    model_args(p)
    p.add_argument("--split", default="val", choices=SPLITS)
    p.add_argument("--data-dir", help="folder with the Multi30k .gz files")
    p.add_argument("--limit", type=int, help="only the first N sentence pairs")
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("classify", help="is the English sentence a translation of the German one?")
    model_args(p)
    p.add_argument("german")
    p.add_argument("english")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("baseline", help="the bag-of-words logistic regression on the pair task")
    p.add_argument("config", nargs="?", help="the pair task's config (its data section)")
    p.add_argument("--data-dir", help="folder with the Multi30k .gz files")
    p.add_argument("--json", metavar="PATH", help="also write the accuracies as JSON")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. data.train_subset=null")
    p.set_defaults(func=cmd_baseline)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m models.mlm`` and ``ta-mlm``; returns the exit status."""
    ta.keep_freed_memory()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, ckpt.CheckpointError, DataError, RunDirError, FillError, FileNotFoundError) as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
