#!/usr/bin/env bash
# The prepared GPU check (issue #17): one command for a machine with an NVIDIA GPU, about 10 minutes on one
# modern GPU. Phases, each with its own timeout; a failed phase does not stop the next; a summary at the end.
#
#   install     pip install -e ".[gpu,test]" and a CUDA build of PyTorch (the twin's), unless already there
#   machine     nvidia-smi, versions, and whether CuPy and PyTorch can each use the GPU
#   suite       the whole test suite with TINYGRAD_ATTN_REQUIRE_CUDA=1 (a skipped CUDA test is a failure)
#   bench_fp32  benchmarks/translator.py --preset base --device cuda: a training step, greedy and beam
#               decoding, ours and the PyTorch twin side by side
#   bench_fp16  the same training step in mixed precision (autocast + loss scaling), both frameworks
#   kernels     benchmarks/cuda_kernels.py: the fused CUDA kernels against the array code they replace
#   train       `base` on Multi30k for GPU_CHECK_TRAIN_MINUTES minutes: BLEU and target tokens/s
#
# Usage (from anywhere; it runs in the repository root):
#   benchmarks/gpu_check.sh [OUT_DIR]              everything goes to OUT_DIR: one log per phase, the benchmark
#                                                  JSON and table, the training run, summary.txt
#   benchmarks/gpu_check.sh --cpu-smoke [OUT_DIR]  every phase at tiny sizes on the CPU, the CUDA-only ones
#                                                  skipped with a line saying so: checks the script itself
# OUT_DIR defaults to $OUT/gpu_check when $OUT is set (a lent machine's folder that comes back), else
# runs/gpu_check/<UTC time>.
#
# Environment (all optional):
#   GPU_CHECK_INSTALL=auto|1|0   install: auto (default) skips it when CuPy, a CUDA PyTorch, pytest and the
#                                translator's packages all import; 1 always; 0 never (offline machines)
#   GPU_CHECK_TORCH_INSTALL      the command that installs the twin's PyTorch; default
#                                "python -m pip install torch" (PyPI's Linux x86_64 wheels are CUDA builds);
#                                for a given CUDA: "python -m pip install torch --index-url
#                                https://download.pytorch.org/whl/cu128"
#   CUPY_CACHE_DIR               CuPy's compiled-kernel cache (default: .cupy_cache in the repository). The first
#                                run compiles every kernel (minutes); keep this folder between runs. With
#                                OUT_DIR elsewhere it is also copied to OUT_DIR/cupy_cache at the end, to carry.
#   GPU_CHECK_PHASES             the phases to run, e.g. "suite bench_fp16" (default: all, in the order above)
#   GPU_CHECK_TRAIN_MINUTES      training time of the train phase (default 2)
#   GPU_CHECK_FINAL_SUBSET       sentences per split in the final BLEU (default 500; "null": all)
#   GPU_CHECK_TRAIN_SET          extra --set overrides for the train phase, e.g. "train.precision=fp16"
#   GPU_CHECK_DATA_DIR           folder with Multi30k's .gz files (else --data-dir's usual lookup:
#                                $TINYGRAD_ATTN_DATA, ~/.cache/tinygrad_attn, ../shared/data/multi30k, download)
#   GPU_CHECK_PYTEST_ARGS        extra pytest arguments for the suite (e.g. "-x", or "-n 8" with pytest-xdist)
#   GPU_CHECK_TIMEOUT_<PHASE>    seconds for a phase (INSTALL 300, MACHINE 60, SUITE 300, BENCH_FP32 180,
#                                BENCH_FP16 120, KERNELS 60, TRAIN 60 * minutes + 150)
#   PYTHON                       the interpreter (default python3)
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT="$ROOT/benchmarks/gpu_check.sh"
cd "$ROOT" || exit 1
PYTHON=${PYTHON:-python3}
SKIP=75  # a phase's exit status for "skipped" (it prints why)

# --- one phase, run by a child of this script (so that `timeout` can stop it, and all it started) ----------

phase_install() {
    if [ -n "${GPU_CHECK_SMOKE:-}" ]; then
        echo "skipped (CUDA-only): --cpu-smoke installs nothing, it uses the packages that are there"; return $SKIP
    fi
    local mode=${GPU_CHECK_INSTALL:-auto}
    if [ "$mode" = 0 ]; then echo "skipped: GPU_CHECK_INSTALL=0"; return $SKIP; fi
    if [ "$mode" = auto ] && "$PYTHON" - <<'EOF'
import cupy, hypothesis, pytest, sacrebleu, sentencepiece, torch, yaml  # noqa: F401
import tinygrad_attn  # noqa: F401
assert torch.cuda.is_available(), "torch without CUDA"
cupy.cuda.runtime.getDeviceCount()
EOF
    then
        echo "skipped: CuPy, a CUDA PyTorch and the test packages are installed (GPU_CHECK_INSTALL=1 installs anyway)"
        return $SKIP
    fi
    "$PYTHON" -m pip install -e ".[gpu,test]" || return 1
    # CuPy's wheel needs the CUDA toolkit's NVRTC to compile kernels; without a system CUDA, its [ctk] extra
    # installs the toolkit's pieces from PyPI.
    if ! "$PYTHON" -c "import cupy; cupy.arange(3).sum()"; then
        "$PYTHON" -m pip install "cupy-cuda12x[ctk]>=13.2" || return 1
    fi
    if ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
        ${GPU_CHECK_TORCH_INSTALL:-"$PYTHON" -m pip install torch} || return 1
    fi
}

phase_machine() {
    command -v nvidia-smi >/dev/null && nvidia-smi
    "$PYTHON" - <<'EOF'
import os, platform, subprocess
import numpy as np
import tinygrad_attn as ta
print(f"python {platform.python_version()}, numpy {np.__version__}, tinygrad_attn {ta.__version__}, commit",
      subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip())
print("CUPY_CACHE_DIR", os.environ.get("CUPY_CACHE_DIR"))
try:
    import torch
    print(f"torch {torch.__version__}, CUDA available to torch: {torch.cuda.is_available()}"
          + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""))
except ImportError:
    print("torch: not installed (the benchmark then times ours alone)")
try:
    ta.zeros(1, device="cuda")
    import cupy
    print(f"CuPy {cupy.__version__}: CUDA usable by tinygrad_attn, runtime {cupy.cuda.runtime.runtimeGetVersion()}")
except RuntimeError as e:
    print(f"CUDA not usable by tinygrad_attn: {e}")
    if not os.environ.get("GPU_CHECK_SMOKE"):
        raise SystemExit(1)
EOF
}

phase_suite() {
    if [ -n "${GPU_CHECK_SMOKE:-}" ]; then
        echo "--cpu-smoke: the CUDA-only whole-suite run (TINYGRAD_ATTN_REQUIRE_CUDA=1) skipped; one small test file on the CPU instead"
        "$PYTHON" -m pytest -q -p no:cacheprovider ${GPU_CHECK_SMOKE_TESTS:-tests/test_backend.py} \
            --junitxml="$OUT_DIR/suite.xml"
        return
    fi
    # shellcheck disable=SC2086  # GPU_CHECK_PYTEST_ARGS is a list of arguments
    TINYGRAD_ATTN_REQUIRE_CUDA=1 "$PYTHON" -m pytest -q -p no:cacheprovider ${GPU_CHECK_PYTEST_ARGS:-} \
        --junitxml="$OUT_DIR/suite.xml"
}

bench() {  # bench PRECISION EXTRA_ARGS...: one benchmarks/translator.py run -> bench_PRECISION.json
    local precision=$1; shift
    local args=(--precision "$precision" --no-rss --no-decode-without-cache --json "$OUT_DIR/bench_$precision.json")
    if [ -n "${GPU_CHECK_SMOKE:-}" ]; then
        args+=(--quick --device cpu --threads 1 --same-process --steps 1 --warmup 0 --decode-sentences 2)
    else
        # --same-process: one data load and vocabulary instead of three (the separate processes are for CPU
        # thread pools; on the GPU both frameworks' kernels run on the device)
        args+=(--preset base --device cuda --same-process --steps 10 --warmup 3 --decode-sentences 128
               --decode-batch 64 --decode-rounds 2 --pause 0)
    fi
    "$PYTHON" -c "import torch" 2>/dev/null || args+=(--no-torch)
    [ -n "${GPU_CHECK_DATA_DIR:-}" ] && args+=(--data-dir "$GPU_CHECK_DATA_DIR")
    "$PYTHON" benchmarks/translator.py "${args[@]}" "$@"
}

phase_bench_fp32() { bench fp32; }

phase_bench_fp16() { bench fp16 --no-decode; }

phase_kernels() {
    if [ -n "${GPU_CHECK_SMOKE:-}" ]; then
        echo "skipped (CUDA-only): the fused kernels run only on a GPU"; return $SKIP
    fi
    "$PYTHON" benchmarks/cuda_kernels.py
}

phase_train() {
    local run="$OUT_DIR/train_base"
    local args=(configs/base.yaml --run-dir "$run" --overwrite --no-progress
                --set train.eval_every=0 --set train.checkpoint_every=0)
    if [ -n "${GPU_CHECK_SMOKE:-}" ]; then
        args+=(--device cpu --max-steps 1)
        for s in model.d_model=32 model.n_heads=2 model.n_encoder_layers=1 model.n_decoder_layers=1 model.d_ff=64 \
                 data.vocab_size=300 data.train_subset=200 data.max_tokens=400 train.warmup=1 \
                 train.final_subset=2 decode.max_len_a=0 decode.max_len_b=4 decode.beam_size=2; do
            args+=(--set "$s")
        done
    else
        args+=(--device cuda --max-minutes "${GPU_CHECK_TRAIN_MINUTES:-2}"
               --set "train.final_subset=${GPU_CHECK_FINAL_SUBSET:-500}")
    fi
    for s in ${GPU_CHECK_TRAIN_SET:-}; do args+=(--set "$s"); done
    [ -n "${GPU_CHECK_DATA_DIR:-}" ] && args+=(--data-dir "$GPU_CHECK_DATA_DIR")
    "$PYTHON" -m models.translator train "${args[@]}"
}

# --- what each phase reports in the summary ------------------------------------------------------------------

result_of() {  # result_of PHASE: one line for the summary (from the phase's log and files)
    local name=$1
    case $name in
        suite)  # pytest's last line: "N passed, M skipped in T s" (or what failed)
            grep -E "(passed|failed|error|no tests ran)" "$OUT_DIR/suite.log" | tail -n 1 ;;
        bench_fp32|bench_fp16)
            "$PYTHON" - "$OUT_DIR/$name.json" <<'EOF' 2>/dev/null
import json, sys
r = json.load(open(sys.argv[1]))
t = r["training"]
parts = [f"step {n} {v['step_s_median'] * 1000:.1f} ms" for n, v in t.items()]
if "torch" in t:
    parts.append(f"ours/torch {t['ours']['step_s_median'] / t['torch']['step_s_median']:.2f}x")
print(", ".join(parts))
EOF
            ;;
        train)
            "$PYTHON" - "$OUT_DIR/train_base/results.json" <<'EOF' 2>/dev/null
import json, sys
r = json.load(open(sys.argv[1]))
bleu = "; ".join(f"{split} " + " / ".join(f"{m} {s['bleu']:.2f}" for m, s in by.items())
                 for split, by in r["splits"].items())
print(f"{r['train_minutes']} min of training, {r['step']} steps, {r['tgt_tokens_per_s']:,.0f} target tokens/s; "
      f"BLEU {bleu}")
EOF
            ;;
        kernels)  # each op's array / fused ratio, from the table's rows (else the log's last line: why not)
            if grep -qE '^\| [A-Za-z].*x \|$' "$OUT_DIR/kernels.log"; then
                grep -E '^\| [A-Za-z].*x \|$' "$OUT_DIR/kernels.log" \
                    | awk -F'|' '{gsub(/^ +| +$/, "", $2); gsub(/ /, "", $5); printf "%s%s %s", sep, $2, $5; sep="; "}
                                 END {print ""}'
            else
                tail -n 1 "$OUT_DIR/kernels.log"
            fi ;;
        *) tail -n 1 "$OUT_DIR/$name.log" ;;
    esac
}

if [ "${1:-}" = "--phase" ]; then  # internal: run one phase (a child of the main script, under `timeout`)
    "phase_$2"
    exit $?
fi

# --- the main script -----------------------------------------------------------------------------------------

if [ "${1:-}" = "--cpu-smoke" ]; then
    export GPU_CHECK_SMOKE=1
    shift
fi
if [ $# -gt 1 ] || [[ "${1:-}" == -* ]]; then
    echo "usage: benchmarks/gpu_check.sh [--cpu-smoke] [OUT_DIR]" >&2
    exit 2
fi
if [ -n "${1:-}" ]; then
    OUT_DIR=$1
elif [ -n "${OUT:-}" ]; then
    OUT_DIR=$OUT/gpu_check
else
    OUT_DIR=runs/gpu_check/$(date -u +%Y%m%d-%H%M%S)
fi
mkdir -p "$OUT_DIR" || exit 1
OUT_DIR=$(cd "$OUT_DIR" && pwd)
export OUT_DIR PYTHON
export CUPY_CACHE_DIR=${CUPY_CACHE_DIR:-$ROOT/.cupy_cache}
TRAIN_MINUTES=${GPU_CHECK_TRAIN_MINUTES:-2}
PHASES=${GPU_CHECK_PHASES:-install machine suite bench_fp32 bench_fp16 kernels train}

declare -A DEFAULT_TIMEOUT=([install]=300 [machine]=60 [suite]=300 [bench_fp32]=180 [bench_fp16]=120 [kernels]=60
                            [train]=$(( ${TRAIN_MINUTES%.*} * 60 + 150 )))
for name in $PHASES; do
    if [ -z "${DEFAULT_TIMEOUT[$name]+set}" ]; then
        echo "unknown phase '$name' in GPU_CHECK_PHASES: use some of install machine suite bench_fp32 bench_fp16 kernels train" >&2
        exit 2
    fi
done
SUMMARY=()
echo "gpu_check${GPU_CHECK_SMOKE:+ (--cpu-smoke)}: phases $PHASES; output in $OUT_DIR"
for name in $PHASES; do
    var=GPU_CHECK_TIMEOUT_${name^^}
    limit=${!var:-${DEFAULT_TIMEOUT[$name]}}
    echo
    echo "=== $name (timeout ${limit} s) ==="
    start=$SECONDS
    timeout --kill-after=15 "$limit" bash "$SCRIPT" --phase "$name" 2>&1 | tee "$OUT_DIR/$name.log"
    rc=${PIPESTATUS[0]}
    seconds=$(( SECONDS - start ))
    case $rc in
        0) status=ok ;;
        "$SKIP") status=skipped ;;
        124|137) status="TIMEOUT after ${limit} s" ;;
        *) status="FAILED (exit $rc)" ;;
    esac
    result=$(result_of "$name" | tr -d '\r' | tail -n 1)
    SUMMARY+=("$(printf '| %-10s | %-22s | %5s | %s |' "$name" "$status" "$seconds" "${result:0:150}")")
done

TABLE=""
jsons=()
for p in fp32 fp16; do [ -s "$OUT_DIR/bench_$p.json" ] && jsons+=("$OUT_DIR/bench_$p.json"); done
if [ ${#jsons[@]} -gt 0 ]; then
    TABLE=$("$PYTHON" benchmarks/translator.py --table "${jsons[@]}" 2>&1)
    echo "$TABLE" > "$OUT_DIR/bench_table.md"
fi
if [ -z "${GPU_CHECK_SMOKE:-}" ] && [ -d "$CUPY_CACHE_DIR" ] && [ "$CUPY_CACHE_DIR" != "$OUT_DIR/cupy_cache" ]; then
    rm -rf "$OUT_DIR/cupy_cache" && cp -r "$CUPY_CACHE_DIR" "$OUT_DIR/cupy_cache"
fi

{
    echo
    echo "=== summary${GPU_CHECK_SMOKE:+ (--cpu-smoke: tiny sizes on the CPU)} ==="
    printf '| %-10s | %-22s | %5s | %s |\n' phase status "s" result
    printf '|%s|%s|%s|%s|\n' ------------ ------------------------ ------: --------
    printf '%s\n' "${SUMMARY[@]}"
    if [ -n "$TABLE" ]; then
        echo
        echo "$TABLE"
    fi
    echo
    echo "logs, benchmark JSON, the training run: $OUT_DIR"
} | tee "$OUT_DIR/summary.txt"
