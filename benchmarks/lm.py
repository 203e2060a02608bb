"""Our GPT (models/gpt.py) against a PyTorch twin of nanoGPT's model, on nanoGPT's shakespeare_char CPU recipe.

    python benchmarks/lm.py                       # 2,000 iterations each, 200 eval batches: the full anchor
    python benchmarks/lm.py --iters 20 --eval-iters 4 --json out.json   # a smoke run

The recipe (nanoGPT's README, "I only have a macbook"): ``--device=cpu --compile=False --block_size=64
--batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0``
with config/train_shakespeare_char.py's AdamW (lr 1e-3, betas (0.9, 0.99), weight decay 0.1 on the 2-D
parameters only), warmup 100 iterations, cosine to 1e-4 at 2,000, gradient clipping at 1.0.

1. Both models are built, our initial weights are copied into the twin, and the check runs: the same logits,
   loss and first-step gradients (relative difference printed; the run stops if it exceeds 1e-4).
2. Both train on the same batches (one shared stream of random offsets, as nanoGPT's ``get_batch``), in
   alternating chunks of ``--chunk`` iterations so that both see the same machine load; each chunk is timed.
3. At the end nanoGPT's ``estimate_loss``: the mean loss over ``--eval-iters`` random val (and train) batches,
   the same batches for both. Peak RSS: one child process per framework runs a few training iterations.

Threads: ``--threads`` (default 2) sets OMP/OpenBLAS/MKL thread counts before NumPy and PyTorch load and calls
``torch.set_num_threads``. Prints one table; ``--json PATH`` writes every figure.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=2000, help="training iterations per framework (default 2000)")
    p.add_argument("--eval-iters", type=int, default=200, help="batches in each loss estimate (default 200)")
    p.add_argument("--chunk", type=int, default=50, help="iterations per timed chunk, alternating (default 50)")
    p.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads for both (default 2)")
    p.add_argument("--seed", type=int, default=1337, help="weights and batch order (default 1337, nanoGPT's)")
    p.add_argument("--rss-iters", type=int, default=5, help="iterations in each peak-RSS child (default 5)")
    p.add_argument("--gelu", choices=["exact", "tanh"], default="exact",
                   help="both models' GELU: exact (nanoGPT's, default) or GPT-2's tanh approximation")
    p.add_argument("--data-dir", help="folder with Tiny Shakespeare's input.txt (default: models.lm.data's lookup)")
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH")
    p.add_argument("--rss-child", choices=["ours", "torch"], help=argparse.SUPPRESS)  # internal
    args = p.parse_args(argv)
    for name in ("iters", "eval_iters", "chunk", "threads", "rss_iters"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


# Thread counts must be in the environment before NumPy and PyTorch start (imported as a module, e.g. by the
# tests, this file leaves the environment and PyTorch's settings alone).
ARGS = parse_args() if __name__ == "__main__" else parse_args([])
if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(ARGS.threads)
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import tinygrad_attn as ta  # noqa: E402
from models.gpt import GPT, GPTConfig  # noqa: E402
from models.lm.data import get_batch, load_text, split_text  # noqa: E402
from models.lm.vocab import CharVocab  # noqa: E402
from models.translator.machine import peak_rss_mb  # noqa: E402

torch: Any = None
if ARGS.rss_child != "ours":
    try:
        import torch

        if __name__ == "__main__":
            torch.set_num_threads(ARGS.threads)
    except ImportError:
        torch = None

# nanoGPT's shakespeare_char CPU recipe (README), with config/train_shakespeare_char.py's optimiser settings.
RECIPE = dict(block_size=64, batch_size=12, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=True, lr=1e-3,
              min_lr=1e-4, warmup_iters=100, lr_decay_iters=2000, beta1=0.9, beta2=0.99, weight_decay=0.1,
              grad_clip=1.0)


# ---- the PyTorch twin: nanoGPT's model.py architecture (bias=True), written out ---------------------------------

def torch_twin(config: GPTConfig) -> Any:
    """nanoGPT's GPT as a ``torch.nn.Module`` (names as nanoGPT's: transformer.wte/wpe/h.i.ln_1/attn.c_attn/...)."""
    nn, F = torch.nn, torch.nn.functional
    E, H = config.n_embd, config.n_head

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(E), nn.LayerNorm(E)
            self.attn = nn.Module()
            self.attn.c_attn, self.attn.c_proj = nn.Linear(E, 3 * E), nn.Linear(E, E)
            self.mlp = nn.Module()
            self.mlp.c_fc, self.mlp.c_proj = nn.Linear(E, 4 * E), nn.Linear(4 * E, E)

        def forward(self, x: Any) -> Any:
            B, T, _ = x.shape
            q, k, v = self.attn.c_attn(self.ln_1(x)).split(E, dim=2)
            q, k, v = (t.view(B, T, H, E // H).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, E)
            x = x + self.attn.c_proj(y)
            gelu = F.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="none" if config.gelu == "exact" else "tanh")
            return x + self.mlp.c_proj(gelu)

    class TwinGPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(config.vocab_size, E), wpe=nn.Embedding(config.block_size, E),
                h=nn.ModuleList([Block() for _ in range(config.n_layer)]), ln_f=nn.LayerNorm(E)))

        def forward(self, idx: Any) -> Any:
            t = self.transformer
            x = t.wte(idx) + t.wpe(torch.arange(idx.shape[1]))
            for block in t.h:
                x = block(x)
            return F.linear(t.ln_f(x), t.wte.weight)  # lm_head tied to wte

    return TwinGPT()


def twin_names(n_layer: int) -> dict[str, str]:
    """Our parameter name -> the twin's (nanoGPT's)."""
    names = {"token_embedding.weight": "transformer.wte.weight", "position_embedding.weight": "transformer.wpe.weight",
             "blocks.norm.weight": "transformer.ln_f.weight", "blocks.norm.bias": "transformer.ln_f.bias"}
    per_layer = {"norm1.{}": "ln_1.{}", "self_attn.in_proj_{}": "attn.c_attn.{}",
                 "self_attn.out_proj.{}": "attn.c_proj.{}", "norm2.{}": "ln_2.{}", "linear1.{}": "mlp.c_fc.{}",
                 "linear2.{}": "mlp.c_proj.{}"}
    for i in range(n_layer):
        for ours, twin in per_layer.items():
            for kind in ("weight", "bias"):
                names[f"blocks.layers.{i}.{ours.format(kind)}"] = f"transformer.h.{i}.{twin.format(kind)}"
    return names


def copy_into_twin(model: GPT, twin: Any) -> None:
    """Our weights, copied into the twin (every parameter of both accounted for)."""
    names = twin_names(model.config.n_layer)
    ours, theirs = dict(model.named_parameters()), dict(twin.named_parameters())
    if set(names) != set(ours) or set(names.values()) != set(theirs):
        raise RuntimeError(f"twin mapping incomplete: ours {sorted(set(ours) ^ set(names))}, "
                           f"twin {sorted(set(theirs) ^ set(names.values()))}")
    with torch.no_grad():
        for name, p in ours.items():
            theirs[names[name]].copy_(torch.from_numpy(p.numpy().copy()))


# ---- one training setup per framework ---------------------------------------------------------------------------

class Trainer:
    """One framework's model with nanoGPT's ``configure_optimizers`` and training step: AdamW with weight decay on
    the parameters of 2 or more dimensions only, the loss, backward, clipping at ``grad_clip``, the update."""

    def __init__(self, model: Any, params: list[Any], adamw: Any, loss: Any, clip: Any, no_grad: Any) -> None:
        self.model, self.loss, self.clip, self.no_grad = model, loss, clip, no_grad
        groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": RECIPE["weight_decay"]},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
        self.optimizer = adamw(groups, lr=RECIPE["lr"], betas=(RECIPE["beta1"], RECIPE["beta2"]))

    def step(self, x: np.ndarray, y: np.ndarray, lr: float) -> float:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self.loss(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.clip(self.model.parameters(), RECIPE["grad_clip"])
        self.optimizer.step()
        return float(loss.item())

    def eval_loss(self, x: np.ndarray, y: np.ndarray) -> float:
        with self.no_grad():
            return float(self.loss(x, y).item())


def ours_trainer(model: GPT) -> Trainer:
    def loss(x: np.ndarray, y: np.ndarray) -> Any:
        return model.loss(model(ta.tensor(x)), ta.tensor(y))

    return Trainer(model, list(model.parameters()), ta.optim.AdamW, loss, ta.nn.utils.clip_grad_norm_, ta.no_grad)


def twin_trainer(twin: Any) -> Trainer:
    def loss(x: np.ndarray, y: np.ndarray) -> Any:
        logits = twin(torch.from_numpy(x))
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), torch.from_numpy(y).reshape(-1))

    return Trainer(twin, list(twin.parameters()), torch.optim.AdamW, loss, torch.nn.utils.clip_grad_norm_,
                   torch.no_grad)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def check_twin(model: GPT, twin: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The largest relative differences between ours and the twin: logits, loss, first-step gradients."""
    logits = model(ta.tensor(x))
    loss = model.loss(logits, ta.tensor(y))
    loss.backward()
    t_logits = twin(torch.from_numpy(x))
    t_loss = torch.nn.functional.cross_entropy(t_logits.view(-1, t_logits.shape[-1]), torch.from_numpy(y).reshape(-1))
    t_loss.backward()
    names, theirs = twin_names(model.config.n_layer), dict(twin.named_parameters())
    grad = max(_rel(p.grad.numpy(), theirs[names[n]].grad.numpy()) for n, p in model.named_parameters())
    model.zero_grad(set_to_none=True)
    twin.zero_grad(set_to_none=True)
    return {"logits_rel_diff": _rel(logits.numpy(), t_logits.detach().numpy()),
            "loss_rel_diff": abs(float(loss.item()) - float(t_loss.item())) / float(t_loss.item()),
            "grad_rel_diff": grad}


def estimate_loss(trainers: dict[str, Any], data: dict[str, np.ndarray], eval_iters: int,
                  seed: int) -> dict[str, dict[str, float]]:
    """nanoGPT's ``estimate_loss``: the mean loss over ``eval_iters`` random batches of each split (the same
    batches for every framework)."""
    out: dict[str, dict[str, float]] = {name: {} for name in trainers}
    for split, tokens in data.items():
        rng = np.random.default_rng(seed)
        batches = [get_batch(tokens, RECIPE["block_size"], RECIPE["batch_size"], rng) for _ in range(eval_iters)]
        for name, trainer in trainers.items():
            out[name][split] = float(np.mean([trainer.eval_loss(x, y) for x, y in batches]))
    return out


@functools.cache
def lr_schedule() -> tuple[float, ...]:
    """The learning rate of every iteration: warmup then cosine to min_lr at lr_decay_iters, as
    ``ta.optim.lr_scheduler.LinearWarmupCosineDecay`` (what ``python -m models.lm train`` uses) computes it.
    (nanoGPT's ``get_lr`` is the same curve one iteration later: (it + 1) / (warmup + 1) during the warmup.)"""
    probe = ta.optim.SGD([ta.nn.Parameter(ta.zeros(1))], lr=RECIPE["lr"])
    schedule = ta.optim.lr_scheduler.LinearWarmupCosineDecay(probe, RECIPE["warmup_iters"], RECIPE["lr_decay_iters"],
                                                              min_lr=RECIPE["min_lr"])
    lrs = []
    for _ in range(RECIPE["lr_decay_iters"]):
        lrs.append(probe.param_groups[0]["lr"])
        schedule.step()
    return tuple(lrs)


def lr_at(it: int) -> float:
    lrs = lr_schedule()
    return lrs[min(it, len(lrs) - 1)]


def load_data(args: argparse.Namespace) -> tuple[int, dict[str, np.ndarray]]:
    train_text, val_text = split_text(load_text(args.data_dir))
    vocab = CharVocab.from_text(train_text + val_text)
    return len(vocab), {"train": np.asarray(vocab.encode(train_text), dtype=np.int64),
                        "val": np.asarray(vocab.encode(val_text), dtype=np.int64)}


def build(vocab_size: int, seed: int, gelu: str = "exact") -> tuple[GPT, Any]:
    ta.manual_seed(seed)
    config = GPTConfig(vocab_size=vocab_size, gelu=gelu,
                       **{k: RECIPE[k] for k in ("block_size", "n_layer", "n_head", "n_embd", "dropout", "bias")})
    model = GPT(config)
    twin = None
    if torch is not None:
        twin = torch_twin(config)
        copy_into_twin(model, twin)
    return model, twin


def peak_rss_this_process_mb() -> float:
    """Peak resident memory of this process since it started (Linux: VmHWM, which execve resets; getrusage's
    maximum would include the parent's memory at the fork), else ``peak_rss_mb``."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return peak_rss_mb()


def rss_child(args: argparse.Namespace) -> None:
    """Train ``--rss-iters`` iterations of one framework and print the peak RSS (MB) as JSON."""
    vocab_size, data = load_data(args)
    model, twin = build(vocab_size, args.seed, args.gelu)
    trainer = ours_trainer(model) if args.rss_child == "ours" else twin_trainer(twin)
    before = peak_rss_this_process_mb()
    rng = np.random.default_rng(args.seed)
    for it in range(args.rss_iters):
        trainer.step(*get_batch(data["train"], RECIPE["block_size"], RECIPE["batch_size"], rng), lr_at(it))
    print(json.dumps({"before_mb": round(before, 1), "peak_mb": round(peak_rss_this_process_mb(), 1)}))


def measure_rss(args: argparse.Namespace, name: str) -> dict[str, float]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", name, "--rss-iters", str(args.rss_iters),
           "--threads", str(args.threads), "--seed", str(args.seed), "--gelu", args.gelu]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"the peak-RSS child for {name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> dict[str, Any]:
    ta.keep_freed_memory()  # as the CLI does: each step frees and reallocates the same arrays
    vocab_size, data = load_data(args)
    model, twin = build(vocab_size, args.seed, args.gelu)
    trainers: dict[str, Any] = {"ours": ours_trainer(model)}
    result: dict[str, Any] = {"recipe": RECIPE, "iters": args.iters, "eval_iters": args.eval_iters,
                              "threads": args.threads, "vocab_size": vocab_size, "gelu": args.gelu,
                              "parameters": model.num_parameters(non_embedding=True)}
    rng = np.random.default_rng(args.seed)
    batches = [get_batch(data["train"], RECIPE["block_size"], RECIPE["batch_size"], rng) for _ in range(args.iters)]
    if twin is not None:
        trainers["torch"] = twin_trainer(twin)
        result["twin_check"] = check = check_twin(model, twin, *batches[0])
        if max(check.values()) > 1e-4:
            raise SystemExit(f"the twin is not the same model: {check}")
    seconds: dict[str, list[float]] = {name: [] for name in trainers}
    last_loss: dict[str, float] = {}
    for start in range(0, args.iters, args.chunk):
        for name, trainer in trainers.items():  # alternating chunks: both see the same load
            t0 = time.perf_counter()
            for it in range(start, min(start + args.chunk, args.iters)):
                last_loss[name] = trainer.step(*batches[it], lr_at(it))
            seconds[name].append((time.perf_counter() - t0) / (min(start + args.chunk, args.iters) - start))
        print(f"iteration {min(start + args.chunk, args.iters)}/{args.iters}: " + ", ".join(
            f"{name} {1e3 * seconds[name][-1]:.0f} ms/iter, loss {last_loss[name]:.4f}" for name in trainers),
            file=sys.stderr, flush=True)
    losses = estimate_loss(trainers, {"train": data["train"], "val": data["val"]}, args.eval_iters, args.seed + 1)
    for name in trainers:
        result[name] = {"ms_per_iter_mean": 1e3 * float(np.mean(seconds[name])),
                        "ms_per_iter_median_chunk": 1e3 * statistics.median(seconds[name]),
                        "last_train_batch_loss": last_loss[name], **{f"{k}_loss": v for k, v in losses[name].items()},
                        "rss": measure_rss(args, name)}
    if "torch" in result:
        result["speed_ratio"] = result["torch"]["ms_per_iter_mean"] / result["ours"]["ms_per_iter_mean"]
        result["val_loss_diff"] = result["ours"]["val_loss"] - result["torch"]["val_loss"]
    return result


def table(result: dict[str, Any]) -> str:
    names = [n for n in ("ours", "torch") if n in result]
    rows = [("ms / iteration (mean of chunks)", "ms_per_iter_mean", "{:.1f}"),
            ("ms / iteration (median chunk)", "ms_per_iter_median_chunk", "{:.1f}"),
            (f"val loss after {result['iters']} iters", "val_loss", "{:.4f}"),
            ("train loss (estimate)", "train_loss", "{:.4f}")]
    lines = [f"nanoGPT shakespeare_char CPU recipe, {result['parameters'] / 1e6:.2f}M parameters, "
             f"{result['threads']} threads, {result['eval_iters']} eval batches, {result['gelu']} GELU",
             "| figure | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, key, fmt in rows:
        lines.append(f"| {label} | " + " | ".join(fmt.format(result[n][key]) for n in names) + " |")
    lines.append("| peak RSS, MB | " + " | ".join(f"{result[n]['rss']['peak_mb']:.0f}" for n in names) + " |")
    if "speed_ratio" in result:
        lines.append(f"speed ours / torch: {result['speed_ratio']:.2f}x (>1: ours faster); val loss ours - torch: "
                     f"{result['val_loss_diff']:+.4f}; twin check {result['twin_check']}")
    return "\n".join(lines)


def main() -> None:
    if ARGS.rss_child:
        rss_child(ARGS)
        return
    result = run(ARGS)
    print(table(result))
    if ARGS.json:
        tmp = Path(ARGS.json).with_name(f".{Path(ARGS.json).name}.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, ARGS.json)


if __name__ == "__main__":
    main()
    sys.exit(0)
