"""Data-parallel training of the translator on this machine: one process, the fork engine, MPI ranks.

    python benchmarks/distributed.py                 # preset small, 2 processes: the table
    python benchmarks/distributed.py --quick         # tiny sizes, a smoke run
    python benchmarks/distributed.py --json out.json

Three ways to train the same model on the same batches, measured side by side in one run:

- **one process**: ``train_step`` with every core's BLAS threads (``train.workers: 1``);
- **fork engine**: ``--processes`` forked processes of one BLAS thread share each batch, gradients summed
  through shared memory (``train.workers: N``, models/translator/parallel.py);
- **MPI**: ``mpiexec -n N``, ranks of one BLAS thread, gradients summed by bucketed all-reduce
  (models/translator/ranks.py, tinygrad_attn.distributed).

Each runs in processes of its own that prepare once (model, optimiser, the same Multi30k batches of
``--max-tokens``, which this script builds first and hands to all), then take turns: ``--steps`` training
steps each, ``--rounds`` times, in an order that rotates, so machine load hits all alike; while one works,
the others wait (the MPI ranks in a collective that naps, the others on a pipe). Each engine runs in a
session of its own, its MPI ranks too (MPICH's ``mpiexec.gforker``; hydra's ``mpiexec`` would give every
rank its own session, and where Linux shares the CPU between sessions, "autogroup", a busy machine would
give the ranks N times the share of the other engines). Reported: target tokens/s over all timed steps,
and its ratio to one process.

Then the all-reduce alone: the MPI ranks call ``DistributedDataParallel.sync_gradients`` on the whole
model's gradients ``--reduce-repeats`` times after a barrier; its time per step, the bytes it moves, and the
cost model of docs/distributed.md: on N machines a ring all-reduce sends 2 (N - 1) / N times the gradient
bytes from each machine, and it stays under 10% of a step at a bandwidth of at least that over a tenth of
the step time.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's tinygrad_attn and models, run as a script


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=["tiny", "small", "base"], default="small")
    p.add_argument("--processes", type=int, default=2, help="processes sharing a batch (default 2)")
    p.add_argument("--steps", type=int, default=5, help="timed steps per turn (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="turns per engine (default 3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per engine first (default 2)")
    p.add_argument("--max-tokens", type=int, default=4000, help="padded tokens per batch (default 4000)")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--reduce-repeats", type=int, default=20, help="all-reduces timed alone (default 20)")
    p.add_argument("--data-dir", help="folder with the Multi30k .gz files (default: models.translator.data's lookup)")
    p.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    p.add_argument("--quick", action="store_true", help="tiny model, few steps: a smoke run")
    p.add_argument("--worker", choices=["one", "fork", "mpi"], help=argparse.SUPPRESS)
    p.add_argument("--setup", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.preset, args.steps, args.rounds, args.warmup, args.max_tokens, args.vocab_size = "tiny", 2, 2, 1, 600, 500
        args.reduce_repeats = 5
    return args


# ---- the workers: prepare once, then train on command -------------------------------------------------


def worker(kind: str, setup_path: str) -> None:
    """A process (or the MPI ranks) that trains on the prepared batches: reads 'steps K', 'reduce R' or
    'quit' on stdin (rank 0), answers one JSON line on stdout."""
    import tinygrad_attn as ta
    import tinygrad_attn.distributed as dist
    from models.translator import config as cfg
    from models.translator.parallel import GradientWorkers
    from models.translator.ranks import MPIGradients, Ranks
    from models.translator.step import build, make_optimizer, train_step

    with open(setup_path, "rb") as f:
        setup = pickle.load(f)
    config = cfg.resolve(cfg.load(overrides=[f"model.preset={setup['preset']}", "train.schedule=noam",
                                             "train.max_steps=100000"]))
    device = ta.device("cpu")
    ranks = Ranks()
    if kind == "mpi":
        dist.init_process_group("mpi", timeout=600)
        ranks = Ranks(dist.get_rank(), dist.get_world_size())
    ta.manual_seed(config.train.seed)
    model = build(config, setup["vocab_size"], device)
    optimizer, scheduler = make_optimizer(config, model)
    engine: Any = None
    if kind == "fork":
        engine = GradientWorkers(model, setup["processes"], config.train.label_smoothing, device)
    elif kind == "mpi":
        engine = MPIGradients(model, ranks, config.train.label_smoothing, device)
    batches, done = setup["batches"], 0

    def command() -> str:
        line = [sys.stdin.readline().strip() if ranks.rank == 0 else ""]
        if kind == "mpi":
            dist.broadcast_object_list(line, src=0)
        return line[0]

    def answer(record: dict[str, Any]) -> None:
        if ranks.rank == 0:
            print(json.dumps(record), flush=True)

    answer({"ready": True})
    while (line := command()) != "quit":
        what, count = line.split()
        if what == "steps":
            tokens, start = 0, time.perf_counter()
            for _ in range(int(count)):
                batch = batches[done % len(batches)]
                done += 1
                tokens += train_step(model, optimizer, scheduler, [batch], config, device, engine)[1]
            answer({"tokens": tokens, "seconds": ranks.from_rank0(time.perf_counter() - start)})
        elif what == "reduce":
            seconds = []
            for _ in range(int(count)):
                dist.barrier()
                start = time.perf_counter()
                engine.ddp.sync_gradients(dist.ReduceOp.SUM)
                seconds.append(time.perf_counter() - start)
            n_bytes = sum(p.grad.data.nbytes for p in model.parameters() if p.grad is not None)
            answer({"seconds": statistics.median(ranks.sum(seconds)) / ranks.size, "bytes": n_bytes,
                    "buckets": engine.ddp.n_buckets})
    if engine is not None and kind == "fork":
        engine.close()


# ---- the driver --------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, folder: Path) -> Path:
    """Vocabulary and batches of real Multi30k pairs, pickled for every worker."""
    from models.translator.batching import TokenBatcher
    from models.translator.data import load_pairs
    from models.translator.train import encode_pairs
    from models.translator.vocab import Vocab

    pairs = load_pairs("de-en", "train", args.data_dir, 20_000 if not args.quick else 2_000)
    vocab = Vocab.train([s for s, _ in pairs] + [t for _, t in pairs], folder, vocab_size=args.vocab_size)
    batcher = TokenBatcher(encode_pairs(vocab, pairs), args.max_tokens, 256, seed=1234)
    n = args.warmup + args.steps * args.rounds
    batches = [batch for _, batch in zip(range(n), batcher.epoch(0))]
    path = folder / "setup.pkl"
    with open(path, "wb") as f:
        pickle.dump({"preset": args.preset, "vocab_size": len(vocab), "processes": args.processes,
                     "batches": batches}, f)
    return path


class Worker:
    def __init__(self, kind: str, command: list[str], env: dict[str, str]) -> None:
        self.kind = kind
        # A session of its own: where the kernel shares the CPU between sessions (autogroup), every engine
        # then gets the same share of a busy machine, whatever its number of processes.
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        cwd=ROOT, env=env, start_new_session=True)
        self.ask(None)  # ready

    def ask(self, line: str | None) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        if line is not None:
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the {self.kind} worker exited (status {self.process.wait()})")
        return json.loads(answer)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("quit\n")
        self.process.stdin.close()
        self.process.wait(timeout=60)


def start_workers(args: argparse.Namespace, setup: Path) -> dict[str, Worker]:
    import tinygrad_attn.distributed as dist

    script = [sys.executable, str(Path(__file__).resolve()), "--setup", str(setup), "--worker"]
    base = dict(os.environ, PYTHONPATH=str(ROOT))
    one_blas = dict(base, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    workers = {"one process": Worker("one process", [*script, "one"], base),
               "fork engine": Worker("fork engine", [*script, "fork"], base)}
    if dist.is_available():
        workers["MPI"] = Worker("MPI", [*mpi_launcher(), "-n", str(args.processes), *script, "mpi"], one_blas)
    return workers


def mpi_launcher() -> list[str]:
    """MPICH's ``mpiexec.gforker`` where there is one: it starts the ranks on this machine in its own session,
    while ``mpiexec`` (hydra) gives each rank a session of its own, and so, on a busy Linux machine that
    shares the CPU between sessions (autogroup), N times the CPU share of the other engines."""
    import tinygrad_attn.distributed as dist

    mpiexec = Path(dist.find_mpiexec())
    gforker = mpiexec.with_name("mpiexec.gforker")
    return [str(gforker)] if gforker.is_file() else [str(mpiexec)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args.worker, args.setup)
        return 0
    with tempfile.TemporaryDirectory() as folder:
        setup = prepare(args, Path(folder))
        workers = start_workers(args, setup)
        try:
            for w in workers.values():
                w.ask(f"steps {args.warmup}")
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in workers}
            names = list(workers)
            for round_ in range(args.rounds):
                for name in names[round_ % len(names):] + names[: round_ % len(names)]:
                    runs[name].append(workers[name].ask(f"steps {args.steps}"))
            reduce = workers["MPI"].ask(f"reduce {args.reduce_repeats}") if "MPI" in workers else None
        finally:
            for w in workers.values():
                w.close()
    results = report(args, runs, reduce)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def report(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]], reduce: dict[str, Any] | None
           ) -> dict[str, Any]:
    speed = {name: sum(r["tokens"] for r in rs) / sum(r["seconds"] for r in rs) for name, rs in runs.items()}
    step = {name: sum(r["seconds"] for r in rs) / (args.steps * args.rounds) for name, rs in runs.items()}
    print(f"preset {args.preset}, batches of {args.max_tokens} tokens, {args.processes} processes, "
          f"{args.rounds} x {args.steps} timed steps each, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}, MPI ranks started by {Path(mpi_launcher()[0]).name}")
    print("| engine | target tokens/s | s/step | vs one process |")
    print("|---|---:|---:|---:|")
    for name in runs:
        print(f"| {name} | {speed[name]:,.0f} | {step[name]:.3f} | {speed[name] / speed['one process']:.2f}x |")
    results: dict[str, Any] = {"preset": args.preset, "processes": args.processes, "tokens_per_s": speed,
                               "seconds_per_step": step}
    if reduce is not None:
        n, size, t = args.processes, reduce["bytes"], reduce["seconds"]
        print(f"\nall-reduce of the gradients ({size / 2**20:.1f} MiB in {reduce['buckets']} buckets) on "
              f"{n} ranks here: {1e3 * t:.1f} ms, {100 * t / step['MPI']:.1f}% of an MPI step")
        print("| machines N | bytes sent per machine per step | bandwidth for < 10% of a step |")
        print("|---:|---:|---:|")
        for machines in (2, 4, 8, 16):
            volume = 2 * (machines - 1) / machines * size
            print(f"| {machines} | {volume / 2**20:.1f} MiB | {volume / (0.1 * step['MPI']) * 8 / 1e9:.2f} Gbit/s |")
        results["all_reduce"] = dict(reduce, fraction_of_step=t / step["MPI"])
    return results


if __name__ == "__main__":
    sys.exit(main())
