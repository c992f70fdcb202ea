#!/usr/bin/env bash
# GPU check: correctness against the CPU, then rollout and RL-update throughput with MFU and HBM
# bandwidth use. Run from anywhere on a machine with a CUDA build of JAX (pip install -e '.[cuda]').
# See docs/launch.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: launch/gpu_check.sh [--model NAME] [--out DIR] [--quick] [--allow-cpu] [-h]

  1. correctness: the tiny model's float32 logits on the GPU match the CPU's (same weights), and a few
     greedy decode tokens are identical;
  2. ascl bench rollout  (bf16): prefill/decode tokens/s, decode ms/step -> HBM bandwidth use;
  3. ascl bench train    (bf16): RL update tokens/s -> MFU;
  4. a summary (printed, and written to DIR/summary.json).

options:
  --model NAME   model for the benchmarks (default: bench-qwen3-1b, ~1.1B random-weight Qwen3-style;
                 a Hugging Face folder works too)
  --out DIR      where the logs and JSON go (default: gpu_check_out)
  --quick        small sizes (a smoke test of the script, seconds on a GPU)
  --allow-cpu    without a GPU, compare CPU with CPU and benchmark on the CPU (dry run of the script;
                 use with --quick --model tiny)
  -h, --help     this text
EOF
}

die() {
  echo "gpu_check.sh: error: $*" >&2
  exit 2
}

model="bench-qwen3-1b"
out="gpu_check_out"
quick=0
allow_cpu=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --model)
      [[ $# -ge 2 && -n "$2" ]] || die "--model needs a value (try --help)"
      model="$2"
      shift 2
      ;;
    --out)
      [[ $# -ge 2 && -n "$2" ]] || die "--out needs a value (try --help)"
      out="$2"
      shift 2
      ;;
    --quick) quick=1; shift ;;
    --allow-cpu) allow_cpu=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v ascl >/dev/null || die "the ascl command is not on PATH: pip install -e '.[cuda]' (in a venv) first"
python="${PYTHON:-python}"
command -v "$python" >/dev/null || die "no $python on PATH (set PYTHON=...)"
mkdir -p "$out"

cpu_flag=()
if [[ "$allow_cpu" -eq 1 ]]; then
  cpu_flag=(--allow-cpu)
elif command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.csv"
else
  echo "gpu_check.sh: note: nvidia-smi not found; relying on JAX to find the GPU" >&2
fi

if [[ "$quick" -eq 1 ]]; then
  rollout_args=(--batch 2 --prompt-len 16 --new-tokens 16 --splice-len 16 --repeats 1)
  train_args=(--batch 4 --seq-len 64 --micro-batches 2 --repeats 1)
else
  rollout_args=(--batch 32 --prompt-len 512 --new-tokens 256 --splice-len 128 --repeats 3)
  train_args=(--batch 16 --seq-len 1024 --micro-batches 4 --repeats 3)
fi

echo "== 1/4 correctness (GPU vs CPU, tiny model, float32)"
"$python" "$here/gpu_check.py" correctness --model tiny "${cpu_flag[@]}" | tee "$out/correctness.log"

echo "== 2/4 ascl bench rollout --model $model --dtype bfloat16 ${rollout_args[*]}"
ascl bench rollout --model "$model" --dtype bfloat16 --greedy "${rollout_args[@]}" --json | tee "$out/rollout.log"
tail -n 1 "$out/rollout.log" >"$out/rollout.json"

echo "== 3/4 ascl bench train --model $model --dtype bfloat16 ${train_args[*]}"
ascl bench train --model "$model" --dtype bfloat16 "${train_args[@]}" --json | tee "$out/train.log"
tail -n 1 "$out/train.log" >"$out/train.json"

echo "== 4/4 summary"
"$python" "$here/gpu_check.py" report --model "$model" --rollout "$out/rollout.json" --train "$out/train.json" \
  --out "$out/summary.json" | tee "$out/summary.log"
echo "gpu_check.sh: done; results in $out/"
