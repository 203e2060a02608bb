"""Latency of the explorer's endpoints, as the page calls them (JSON in, JSON out, in-process).

    python benchmarks/explorer.py -c runs/tiny                  # a `small`-sized model with that run's vocabulary
    python benchmarks/explorer.py -c runs/small --trained       # the run's own model, as it is
    python benchmarks/explorer.py -c runs/tiny --quick          # a smoke run (3 rounds)
    python benchmarks/explorer.py -c runs/tiny --threads 1 --clock cpu   # CPU time of one thread (busy machine)

Without ``--trained`` the model is the ``small`` preset (D = 256, 4 heads, 3+3 layers) with fresh weights
and the run's SentencePiece vocabulary, decoding exactly ``--out-tokens`` tokens (25 by default: about
a 20-word English sentence) for the 20-word German sentence below: latency depends on the sizes, not on
what the weights learned. Each endpoint is called ``--rounds`` times, the endpoints in turn round after
round (so they share the machine's moments of load); the table gives the median and the slowest round.
``plain translate`` is the translator's own ``translate_sentences`` (no attention kept, no JSON), the twin
that tells what watching the decoding costs. ``--clock cpu`` measures the process's CPU time instead of wall
time: with ``--threads 1`` (one BLAS thread) that is what a request costs on an idle core, whatever else
the machine is running. Goals (issue #19): translate with every map < 300 ms, every
other view < 100 ms, on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SENTENCE = ("Ein älterer Mann mit einem roten Hut sitzt auf einer Bank im Park und liest seiner Enkelin "
            "eine Geschichte vor.")  # 20 words


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--checkpoint", required=True, help="a run directory (its vocabulary, or its model)")
    p.add_argument("--trained", action="store_true", help="time the run's own model instead of a fresh `small` one")
    p.add_argument("--out-tokens", type=int, default=25, help="tokens decoded per translation (fresh model)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--quick", action="store_true", help="3 rounds")
    p.add_argument("--threads", type=int, help="BLAS threads (set before NumPy loads); default: NumPy's own")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="wall time, or this process's CPU time")
    args = p.parse_args()
    if args.threads:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time

    import warnings

    from starlette.testclient import TestClient

    import tinygrad_attn as ta
    from models.explorer.app import create_app
    from models.explorer.sessions import TranslatorSession, load_session
    from models.transformer import build_model
    from models.translator.search import translate_sentences

    session = load_session(args.checkpoint)
    assert isinstance(session, TranslatorSession)
    if not args.trained:
        ta.manual_seed(0)
        session.model = build_model(session.model.vocab_size, pad_id=session.model.pad_id, preset="small").eval()
        session.max_len_a, session.max_len_b = 0.0, args.out_tokens
    m = session.model
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    client = TestClient(create_app([session]))
    first = client.post("/api/translate", json={"sentence": SENTENCE}).json()
    target = first["target_ids"]

    def plain() -> Any:
        return translate_sentences(m, session.vocab, [SENTENCE], max_len_a=session.max_len_a,
                                   max_len_b=session.max_len_b)

    calls = {
        "translate, greedy, all maps": ("POST", "/api/translate", {"sentence": SENTENCE}, 300),
        "translate, beam 4, all maps + tree": ("POST", "/api/translate", {"sentence": SENTENCE, "beam_size": 4}, None),
        "plain translate (no maps, no HTTP)": (None, None, None, None),
        "inside one head (cross, last layer)": ("POST", "/api/head", {
            "sentence": SENTENCE, "target_ids": target, "attention": "cross", "layer": m.n_decoder_layers - 1,
            "head": 0, "query": len(target) // 2}, 100),
        "positional encoding (50 positions)": ("POST", "/api/positional", {"positions": 50}, 100),
        "next token": ("POST", "/api/next_token", {"source": SENTENCE, "prefix": "An older man", "top_k": 40,
                                                   "temperature": 0.8}, 100),
        "autograd (graph + backward steps)": ("POST", "/api/autograd",
                                              {"expression": "sum((relu(x @ w + b) - y) ** 2)"}, 100),
        "models": ("GET", "/api/models", None, 100),
    }
    times: dict[str, list[float]] = {name: [] for name in calls}
    rounds = 3 if args.quick else args.rounds
    for _ in range(rounds):
        for name, (method, path, body, _goal) in calls.items():
            start = clock()
            if method is None:
                plain()
            else:
                r = client.post(path, json=body) if method == "POST" else client.get(path)
                assert r.status_code == 200, (name, r.text)
            times[name].append(1000 * (clock() - start))

    print(f"model: d_model {m.d_model}, {m.n_heads} heads, {m.n_encoder_layers}+{m.n_decoder_layers} layers, "
          f"vocabulary {m.vocab_size} ({'trained' if args.trained else 'fresh small preset'}); "
          f"source {len(first['source_tokens'])} pieces, output {len(target)} tokens; {rounds} rounds, "
          f"{args.clock} clock, BLAS threads {args.threads or 'default'}")
    print("| endpoint | median ms | slowest ms | goal ms |")
    print("|---|---:|---:|---:|")
    for name, (_, _, _, goal) in calls.items():
        print(f"| {name} | {statistics.median(times[name]):.1f} | {max(times[name]):.1f} | {goal or '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
