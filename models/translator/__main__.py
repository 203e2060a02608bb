"""The translator's command line: ``python -m models.translator train|translate|evaluate|average``.

(Also installed as the console script ``ta-translate``.)

    train      python -m models.translator train configs/small.yaml            -> runs/small/
               ... --preset tiny --max-minutes 5 --set train.warmup=400 --device cuda
               ... --resume --run-dir runs/small                          (continue a killed run)
    translate  python -m models.translator translate -c runs/small "Ein Hund rennt durch den Schnee."
               ... --input sentences.de  |  < sentences.de  |  (no input: an interactive prompt)
               ... --beam-size 4 --attention attention.png   ... --errors replace  (input not all UTF-8)
    evaluate   python -m models.translator evaluate -c runs/small --split test_2016_flickr --beam-size 4
               ... --workers 2                        (decode in 2 processes; default: the run's decode.workers)
    average    python -m models.translator average runs/small --last 5      -> runs/small/averaged.safetensors

``-c`` takes a checkpoint file or a run directory (its ``best.safetensors``, else the newest step).
Problems the user can fix (a missing checkpoint, a bad config value, an unusable device, missing
data, a vocabulary that does not fit the model, input that is not UTF-8) are reported in one line, exit
status 2. ``translate`` reads one sentence per line and writes one translation per line: an empty line in
gives an empty line out.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import tinygrad_attn as ta
from models.transformer import Transformer
from models.translator import checkpoints as ckpt
from models.translator import config as cfg
from models.translator.config import ConfigError
from models.translator.data import SPLITS, DataError, load_pairs
from models.translator.evaluate import format_scores, score
from models.translator.machine import resolve_device
from models.translator.ranks import fail_job
from models.translator.run_dir import RunDirError
from models.translator.search import attention_maps, translate
from models.translator.train import train
from models.translator.vocab import Vocab

PROG = "python -m models.translator"


# ---- train --------------------------------------------------------------------------------------------


def _train_config(args: argparse.Namespace) -> tuple[cfg.Config, Path]:
    """The config of ``train``: defaults < config file (or the run's config.yaml on --resume) < flags < --set."""
    base = args.config
    if base is None and args.resume and args.run_dir and (Path(args.run_dir) / cfg.CONFIG_NAME).is_file():
        base = Path(args.run_dir) / cfg.CONFIG_NAME
    config = cfg.load(base)
    flags = []
    for key, value in (("model.preset", args.preset), ("data.data_dir", args.data_dir), ("device", args.device),
                       ("train.max_minutes", args.max_minutes), ("train.max_steps", args.max_steps),
                       ("train.max_epochs", args.max_epochs), ("train.seed", args.seed)):
        if value is not None:
            flags.append((key, value))
    for key, value in flags:
        cfg.set_value(config, key, value)
    if args.max_minutes is not None or args.max_steps is not None:  # an explicit budget replaces the epoch cap
        if args.max_epochs is None:
            config.train.max_epochs = None
    if args.no_progress:
        config.train.progress = False
    cfg.apply_overrides(config, args.set)
    cfg.validate(config)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / config.model.preset
    return config, run_dir


def cmd_train(args: argparse.Namespace) -> int:
    config, run_dir = _train_config(args)
    results = train(config, run_dir, resume=args.resume, overwrite=args.overwrite)
    if ta.distributed.is_initialized() and ta.distributed.get_rank() != 0:
        return 0  # under MPI, rank 0 reports
    if results:
        print(_results_table(results))
    print(f"run directory: {run_dir}")
    return 0


def _results_table(results: dict[str, Any]) -> str:
    lines = [f"after {results['step']} steps, {results['train_minutes']} minutes of training on {results['device']} "
             f"({results['tgt_tokens_per_s']:,.0f} target tokens/s, peak RSS {results['peak_rss_mb']:,.0f} MB):"]
    for split, by_search in results["splits"].items():
        for search, s in by_search.items():
            lines.append(f"  {split:>17} {search:>7}: BLEU {s['bleu']:6.2f}  chrF {s['chrf']:6.2f}  "
                         f"({s['sentences_per_s']:.0f} sentences/s)")
    first = next(iter(next(iter(results["splits"].values())).values()))
    lines.append(f"  sacreBLEU signature: {first['bleu_signature']}")
    return "\n".join(lines)


# ---- translate ----------------------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> tuple[Transformer, Vocab, cfg.Config]:
    device = resolve_device(args.device)
    model, vocab, config, _ = ckpt.load_model(args.checkpoint, device=device, vocab_path=args.vocab)
    if getattr(args, "beam_size", None) is not None:
        config.decode.beam_size = args.beam_size
    if getattr(args, "alpha", None) is not None:
        config.decode.alpha = args.alpha
    if getattr(args, "workers", None) is not None:
        config.decode.workers = args.workers
    cfg.apply_overrides(config, getattr(args, "set", []) or [])
    cfg.validate(config)
    return model, vocab, config


class InputError(ValueError):
    """Text to translate that cannot be read: an unreadable file, bytes that are not UTF-8."""


ERRORS = ("strict", "replace", "ignore")  # what to do with bytes that are not UTF-8, as in bytes.decode


def decode_utf8(data: bytes, name: str, errors: str = "strict") -> str:
    """``data`` as UTF-8 text. Bytes that are not UTF-8 raise ``InputError`` naming ``name``, the line and the
    byte (``errors="strict"``), become U+FFFD (``"replace"``) or are dropped (``"ignore"``)."""
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        bad = " ".join(f"0x{b:02x}" for b in data[e.start:e.end])
        raise InputError(
            f"{name}: line {line}, byte {column} (byte offset {e.start}): {bad} is not UTF-8 ({e.reason}). "
            "Convert the text to UTF-8 (e.g. iconv -f latin1 -t utf-8), or pass --errors replace to translate "
            "such bytes as U+FFFD, or --errors ignore to drop them"
        ) from None


def split_lines(text: str) -> list[str]:
    """The lines of ``text``, ended by ``\\n`` or ``\\r\\n`` (a last line may lack it), without their ends."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _read_sentences(args: argparse.Namespace, stdin: TextIO) -> list[str] | None:
    """Sentences from the arguments, ``--input``, or piped stdin; None means: interactive prompt."""
    errors = args.errors
    if args.sentences:  # arguments reach Python as text with undecodable bytes escaped: get those bytes back
        return [decode_utf8(s.encode("utf-8", "surrogateescape"), f"argument {i}", errors)
                for i, s in enumerate(args.sentences, start=1)]
    if args.input:
        path = Path(args.input)
        if not path.is_file():
            raise FileNotFoundError(f"--input file not found: {path}")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise InputError(f"--input {path}: cannot read it: {e.strerror}") from None
        return split_lines(decode_utf8(data, str(path), errors))
    if stdin.isatty():
        return None
    raw = getattr(stdin, "buffer", None)  # the bytes under a text stream, so that errors are ours to name
    return split_lines(decode_utf8(raw.read(), "<stdin>", errors) if raw is not None else stdin.read())


def cmd_translate(args: argparse.Namespace) -> int:
    model, vocab, config = _load(args)
    beam = config.decode.beam_size
    sentences = _read_sentences(args, sys.stdin)
    if sentences is None:  # interactive
        src = config.data.direction.split("-")[0]
        print(f"Translating {config.data.direction} (beam {beam}); an empty line or Ctrl-D quits.", file=sys.stderr)
        while True:
            try:
                line = input(f"{src}> ")
            except (EOFError, KeyboardInterrupt):
                print(file=sys.stderr)
                return 0
            except UnicodeDecodeError as e:
                print(f"that line is not UTF-8 ({e.reason}): type it again", file=sys.stderr)
                continue
            if not line.strip():
                return 0
            print(translate(model, vocab, [line], config, beam_size=beam)[0], flush=True)
    outputs = translate(model, vocab, sentences, config, beam_size=beam) if sentences else []
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        for line in outputs:
            print(line, file=out)
    finally:
        if args.output:
            out.close()
    if args.attention:
        first = next((s for s in sentences if s.strip()), None)
        if first is None:
            raise ConfigError("--attention needs a sentence to draw")
        for path in draw_attention(model, vocab, first, args.attention, beam, config.decode.alpha):
            print(f"attention: {path}", file=sys.stderr)
    return 0


def draw_attention(model: Transformer, vocab: Vocab, sentence: str, path: str | Path, beam_size: int = 1,
                   alpha: float = 0.6) -> list[Path]:
    """Heatmaps of how the model attends while translating ``sentence``.

    Decoder cross-attention (target pieces by source pieces, one map per layer and head) goes to
    ``path``, encoder self-attention to ``<stem>-encoder.png`` beside it.
    """
    from models.translator.plots import plot_attention  # matplotlib: slow to import, needed here only

    maps = attention_maps(model, vocab, sentence, beam_size=beam_size, alpha=alpha)
    return plot_attention(path, maps["source_tokens"], maps["target_tokens"], maps["cross"], maps["encoder"],
                          title=_shorten(f"{sentence} -> {maps['translation']}"))


def _shorten(text: str, width: int = 100) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


# ---- evaluate -----------------------------------------------------------------------------------------


def cmd_evaluate(args: argparse.Namespace) -> int:
    model, vocab, config = _load(args)
    if args.data_dir is not None:
        config.data.data_dir = args.data_dir
    pairs = load_pairs(config.data.direction, args.split, config.data.data_dir, args.limit)
    beam = config.decode.beam_size
    scores = score(model, vocab, pairs, config, beam_size=beam)
    search = "greedy" if beam == 1 else f"beam {beam} (alpha {config.decode.alpha:g})"
    print(f"{args.split} {config.data.direction}, {len(pairs)} sentences, {search}, "
          f"{scores['sentences_per_s']:.1f} sentences/s")
    print(format_scores(scores))
    if args.json:
        Path(args.json).write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    return 0


# ---- average ------------------------------------------------------------------------------------------


def cmd_average(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.checkpoints]
    if len(paths) == 1 and paths[0].is_dir():
        run_dir = paths[0]
        found = ckpt.list_checkpoints(run_dir)
        if not found:
            raise ckpt.CheckpointError(f"no ckpt_step<N>.safetensors in {run_dir} to average")
        paths = found[-args.last:]
        output = Path(args.output) if args.output else run_dir / ckpt.AVERAGED_NAME
    else:
        for p in paths:
            if not p.is_file():
                raise ckpt.CheckpointError(f"checkpoint not found: {p}")
        if not args.output:
            raise ConfigError("average: give --output when averaging explicit checkpoint files")
        output = Path(args.output)
    ckpt.write_averaged(paths, output)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) into {output}")
    return 0


# ---- the parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="A Transformer translator on tinygrad_attn (Multi30k).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,translate,evaluate,average}")

    p = sub.add_parser("train", help="train a model (or --resume a run)",
                       description="Train on Multi30k. Settings: defaults < CONFIG < flags < --set.")
    p.add_argument("config", nargs="?", help="a .yaml/.toml config (e.g. configs/small.yaml)")
    p.add_argument("--preset", help="model preset: tiny, small or base")
    p.add_argument("--run-dir", help="where the run is written (default: runs/<preset>)")
    p.add_argument("--data-dir", help="folder with the Multi30k .gz files")
    p.add_argument("--device", help="cpu, cuda or cuda:N")
    p.add_argument("--max-minutes", type=float,
                   help="training time budget in minutes (a cosine schedule reaches 0 when it is used up)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    p.add_argument("--max-epochs", type=int, help="stop after this many epochs")
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set model.d_model=256 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its newest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="delete an existing run in --run-dir first")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    def model_args(q: argparse.ArgumentParser) -> None:
        q.add_argument("-c", "--checkpoint", required=True, help="a checkpoint file or a run directory")
        q.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
        q.add_argument("--beam-size", type=int, help="1 = greedy (default: the run's decode.beam_size)")
        q.add_argument("--alpha", type=float, help="length penalty of beam search (default: the run's)")
        q.add_argument("--workers", type=int, help="processes decoding side by side on the CPU, at most one per "
                       "core (default: the run's decode.workers)")
        q.add_argument("--vocab", help="a SentencePiece .model to use instead of the checkpoint's own")
        q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override decode settings, e.g. --set decode.max_len_b=80")

    p = sub.add_parser("translate", help="translate sentences (arguments, --input, stdin, or interactively)")
    model_args(p)
    p.add_argument("sentences", nargs="*", help="sentences to translate")
    p.add_argument("--input", "-i", help="a file with one sentence per line")
    p.add_argument("--output", "-o", help="write translations here instead of stdout")
    p.add_argument("--attention", metavar="PNG", help="draw the first (non-empty) sentence's attention to this image")
    p.add_argument("--errors", choices=ERRORS, default="strict",
                   help="input bytes that are not UTF-8: stop with an error naming the line and byte (strict, the "
                   "default), translate them as U+FFFD (replace), or drop them (ignore)")
    p.set_defaults(func=cmd_translate)

    p = sub.add_parser("evaluate", help="BLEU and chrF on a Multi30k split")
    model_args(p)
    p.add_argument("--split", default="test_2016_flickr", choices=SPLITS)
    p.add_argument("--data-dir", help="folder with the Multi30k .gz files")
    p.add_argument("--limit", type=int, help="only the first N sentence pairs")
    p.add_argument("--json", metavar="PATH", help="also write the scores as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("average", help="average the last K checkpoints of a run into one")
    p.add_argument("checkpoints", nargs="+", help="a run directory, or checkpoint files")
    p.add_argument("--last", type=int, default=5, help="how many of a run's newest checkpoints (default 5)")
    p.add_argument("--output", "-o", help="output file (default: <run>/averaged.safetensors)")
    p.set_defaults(func=cmd_average)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m models.translator`` and ``ta-translate``; returns the exit status."""
    ta.keep_freed_memory()  # each training or decoding step frees and allocates arrays of the same sizes again
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, ckpt.CheckpointError, DataError, RunDirError, InputError, FileNotFoundError) as e:
        fail_job(f"{PROG} {args.command}: error: {e}", 2)  # under MPI: says it, ends every rank, does not return
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:
        if not ta.distributed.is_initialized():
            raise
        traceback.print_exc()  # under MPI: then end every rank, which would otherwise wait for this one
        fail_job(f"{PROG} {args.command}: failed (traceback above)", 1)
        return 1


if __name__ == "__main__":
    sys.exit(main())
