"""The language model's command line: ``python -m models.lm train|sample|evaluate`` (console script ``ta-lm``).

    train     python -m models.lm train configs/shakespeare_char.yaml --run-dir runs/shakespeare_char
              ... --max-iters 200 --set model.dropout=0.1 --device cuda
              ... --resume --run-dir runs/shakespeare_char              (continue a killed run exactly)
    sample    python -m models.lm sample -c runs/shakespeare_char --prompt "ROMEO:" --max-new-tokens 500
              ... --temperature 0.8 --top-k 50 --top-p 0.95 --seed 1 --stop "\\n\\n" --num-samples 2
              ... --attention attention.png           (the prompt's attention maps: the causal triangle)
    evaluate  python -m models.lm evaluate -c runs/shakespeare_char      (val loss and bits per character
              over the whole val split, in consecutive windows of the model's block size)

``-c`` takes a checkpoint file or a run directory (its ``best.safetensors``, else the newest step). Problems the
user can fix (a missing run, a bad config value, an empty prompt, characters the vocabulary lacks, a context
longer than the model's block size) are reported in one line, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import tinygrad_attn as ta
from models.gpt import GPT, GPTConfig
from models.lm import config as lmcfg
from models.lm.config import ConfigError, LMConfig
from models.lm.train import build_corpus, evaluate_split, train
from models.lm.vocab import load_vocab
from models.translator import checkpoints as ckpt
from models.translator.data import DataError
from models.translator.machine import resolve_device
from models.translator.run_dir import RunDirError

PROG = "python -m models.lm"


class InputError(ValueError):
    """A prompt or option the model cannot take."""


def cmd_train(args: argparse.Namespace) -> int:
    base = args.config
    if base is None and args.resume and args.run_dir and (Path(args.run_dir) / "config.yaml").is_file():
        base = Path(args.run_dir) / "config.yaml"
    overrides = list(args.set)
    for key, value in (("train.max_iters", args.max_iters), ("train.max_minutes", args.max_minutes),
                       ("data.data_dir", args.data_dir), ("device", args.device), ("train.seed", args.seed)):
        if value is not None:
            overrides.insert(0, f"{key}={json.dumps(value)}")
    if args.no_progress:
        overrides.insert(0, "train.progress=false")
    config = lmcfg.load(base, overrides)
    run_dir = Path(args.run_dir) if args.run_dir else Path("runs") / (Path(args.config).stem if args.config else "lm")
    results = train(config, run_dir, resume=args.resume, overwrite=args.overwrite)
    print(f"{run_dir}: {results['step']} iterations in {results['train_minutes']} min "
          f"({results['ms_per_iter']} ms/iter); best val loss {results['best_val_loss']} at {results['best_step']}")
    return 0


def load_model(path: str, device: ta.Device) -> tuple[GPT, Any, LMConfig]:
    """``(model, vocab, config)`` from a checkpoint file or run directory, the model in eval mode."""
    checkpoint = ckpt.load_checkpoint(path)
    try:
        config = lmcfg.from_dict(checkpoint.config, where=f"{checkpoint.path} (its config)")
        vocab = load_vocab(checkpoint.vocab_bytes)
    except (ConfigError, ValueError) as e:
        raise ckpt.CheckpointError(f"{checkpoint.path} is not a language-model checkpoint: {e}") from None
    model = GPT(GPTConfig(vocab_size=len(vocab), **config.gpt_kwargs()))
    try:
        model.load_state_dict(checkpoint.model)
    except RuntimeError as e:
        raise ckpt.CheckpointError(f"{checkpoint.path} does not fit the model its config describes: {e}") from None
    model.to(device)
    model.eval()
    return model, vocab, config


def encode_prompt(vocab: Any, prompt: str) -> list[int]:
    if not prompt:
        raise InputError("the prompt is empty; give at least one character, e.g. --prompt \"ROMEO:\"")
    try:
        ids = vocab.encode(prompt)
    except ValueError as e:
        raise InputError(f"the prompt has {e}") from None
    if not ids:
        raise InputError(f"the prompt {prompt!r} encodes to no tokens")
    return list(ids)


def cmd_sample(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, vocab, _ = load_model(args.checkpoint, device)
    ids = encode_prompt(vocab, args.prompt)
    if args.max_new_tokens < 0:
        raise InputError(f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if args.temperature < 0:
        raise InputError(f"--temperature must be >= 0 (0: greedy), got {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise InputError(f"--top-k must be >= 1, got {args.top_k}")
    if args.top_p is not None and not 0 < args.top_p <= 1:
        raise InputError(f"--top-p must be in (0, 1], got {args.top_p}")
    if args.attention:
        from models.translator.plots import plot_attention_grid  # matplotlib: slow to import, needed here only

        if len(ids) > model.config.block_size:
            raise InputError(f"--attention: the prompt has {len(ids)} tokens, more than the model's block size "
                             f"({model.config.block_size})")
        weights = model.attention_weights(ta.tensor(np.asarray([ids]), device=device))
        labels = vocab.pieces(ids)
        plot_attention_grid(weights, labels, labels, args.attention,
                            title=f"GPT causal self-attention: {args.prompt!r}", query_name="position (query)",
                            key_name="position (key)")
        print(f"attention maps: {args.attention}", file=sys.stderr)
    for n in range(args.num_samples):
        seed = None if args.seed is None else args.seed + n
        new: list[int] = []
        text = ""
        for token in model.generate_tokens(np.asarray([ids]), args.max_new_tokens, args.temperature, args.top_k,
                                           args.top_p, seed):
            new.append(int(token[0]))
            text = vocab.decode(new)  # the whole continuation again: BPE pieces join with spaces between them
            if args.stop and args.stop in text:
                text = text[: text.index(args.stop) + len(args.stop)]
                break
        print(args.prompt + text)
        if n + 1 < args.num_samples:
            print("---------------")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, vocab, config = load_model(args.checkpoint, device)
    if args.data_dir is not None:
        config.data.data_dir = args.data_dir
    corpus = build_corpus(config, vocab)
    nats, n_tokens = evaluate_split(model, corpus.val, args.batch_size, device)
    n_chars = n_tokens * corpus.val_chars_per_token
    result = {"val_loss": nats / n_tokens, "val_bpc": nats / n_chars / math.log(2),
              "val_ppl": math.exp(nats / n_tokens), "tokens": n_tokens, "block_size": model.config.block_size}
    print(json.dumps({k: round(v, 5) if isinstance(v, float) else v for k, v in result.items()}))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Train and sample a GPT language model on Tiny Shakespeare.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (or resume) a run")
    t.add_argument("config", nargs="?", help="YAML/TOML config (default: nanoGPT's shakespeare_char CPU recipe)")
    t.add_argument("--run-dir", help="where the run's files go (default: runs/<config name>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its newest checkpoint")
    t.add_argument("--overwrite", action="store_true", help="delete the run already in --run-dir and start over")
    t.add_argument("--max-iters", type=int, help="train.max_iters")
    t.add_argument("--max-minutes", type=float, help="train.max_minutes")
    t.add_argument("--data-dir", help="data.data_dir: a folder holding Tiny Shakespeare's input.txt")
    t.add_argument("--device", help="cpu, cuda or cuda:N")
    t.add_argument("--seed", type=int, help="train.seed")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config key, e.g. model.n_layer=6")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="continue a prompt")
    s.add_argument("-c", "--checkpoint", required=True, help="a checkpoint file or run directory")
    s.add_argument("--prompt", default="\n", help="the text to continue (default: a newline)")
    s.add_argument("--max-new-tokens", type=int, default=500)
    s.add_argument("--temperature", type=float, default=0.8, help="0: always the most likely token")
    s.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    s.add_argument("--top-p", type=float, default=None,
                   help="sample among the fewest tokens with this much probability")
    s.add_argument("--seed", type=int, default=None, help="for reproducible samples (sample n uses seed + n)")
    s.add_argument("--stop", default=None, help="end a sample after this string appears (it is kept)")
    s.add_argument("--num-samples", type=int, default=1)
    s.add_argument("--attention", metavar="PNG", help="draw the prompt's attention maps (layers x heads) to PNG")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_sample)

    e = sub.add_parser("evaluate", help="val loss and bits per character")
    e.add_argument("-c", "--checkpoint", required=True, help="a checkpoint file or run directory")
    e.add_argument("--batch-size", type=int, default=64, help="windows scored together (default 64)")
    e.add_argument("--data-dir", help="a folder holding Tiny Shakespeare's input.txt")
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=cmd_evaluate)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m models.lm`` and ``ta-lm``; returns the exit status."""
    ta.keep_freed_memory()  # each training step frees and allocates arrays of the same sizes again
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, ckpt.CheckpointError, DataError, RunDirError, InputError, FileNotFoundError) as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
