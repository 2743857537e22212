#!/usr/bin/env bash
# Every benchmark table on an accelerator host, in one pass (under 8 minutes on one GPU or TPU).
#
#   bash benchmarks/device.sh            # accelerator sizes (batch 64 at 256x128, paper-shape modules)
#   bash benchmarks/device.sh --quick    # tiny sizes: a CPU smoke run of every step (a few minutes)
#
# Steps, each under its own `timeout` (a step that runs out keeps the rows it printed):
#   auto_choices   benchmarks/auto_choices.py: every AUTO_* table's candidates at the paper's shape
#   attention      benchmarks/attention.py, K 3, fused/shift x einsum/conv, float32 and bfloat16
#   network_train  benchmarks/network_step.py --mode train, float32 and bfloat16 (+ PyTorch if on this device)
#   network_eval   benchmarks/network_step.py --mode eval (the evaluators' forward pass, embedding)
#   extract        benchmarks/extract_features.py (JPEG decode + resize + forward, end to end)
#   input          benchmarks/input_pipeline.py (tf.data training input, img/s by host cores)
# and at the end prints the AUTO_* entries it would pick for this backend (and the edits).
#
# Everything goes to one directory, $OUT if set, else ./device_bench_<date>:
# device_bench.log (all the tables, as printed), stderr.log (the steps' stderr),
# network_train.json, network_eval.json (network_step's rows). Exit status 1 if any step
# failed or timed out.
set -u -o pipefail
cd "$(dirname "$0")/.."

QUICK=false
case "${1:-}" in
  --quick) QUICK=true ;;
  "") ;;
  *) echo "device.sh: unknown argument '$1': expected --quick or nothing" >&2; exit 2 ;;
esac
LOG=${OUT:-./device_bench_$(date +%Y%m%d_%H%M%S)}
mkdir -p "$LOG"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
FAILED=()

# step NAME LIMIT_S CMD...: run CMD under `timeout LIMIT_S` (300 s each with --quick: CPU compiles
# are slow), its stderr appended to stderr.log; record failures.
step() {
  local name=$1 limit=$2
  shift 2
  if $QUICK; then limit=300; fi
  echo
  echo "=== $name (timeout ${limit} s): $*"
  echo "=== $name: $*" >>"$LOG/stderr.log"
  local start=$SECONDS rc
  timeout -k 10 "$limit" "$@" 2>>"$LOG/stderr.log"
  rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "=== $name: done in $((SECONDS - start)) s"
  else
    [ "$rc" -eq 124 ] && echo "=== $name: TIMED OUT after $limit s" || echo "=== $name: FAILED (exit $rc)"
    tail -n 15 "$LOG/stderr.log" | sed 's/^/    /'
    FAILED+=("$name")
  fi
}

main() {
  echo "# benchmarks/device.sh $([ "$QUICK" = true ] && echo --quick) -- $(date -u +%Y-%m-%dT%H:%M:%SZ), log dir $LOG"
  echo "# commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  # --torch only where PyTorch runs on the same device as JAX (a CPU torch beside a GPU JAX compares nothing)
  local torch_flag
  torch_flag=$($PY - <<'EOF' 2>>"$LOG/stderr.log"
import jax
print(f"# jax {jax.__version__}: {jax.default_backend()} x{jax.device_count()} ({jax.devices()[0].device_kind})")
try:
    import torch
    print("--torch" if jax.default_backend() == "cpu" or torch.cuda.is_available() else "")
except ImportError:
    print("")
EOF
  )
  echo "${torch_flag%$'\n'*}"
  torch_flag=${torch_flag##*$'\n'}
  [[ "$torch_flag" == "#"* ]] && torch_flag=""

  local attn net in_sizes
  if $QUICK; then  # network steps in float32 only: bfloat16 doubles the CPU compile time and runs the same code
    attn=(--batch 2 --height 8 --width 4 --channels 64 --iters 1)
    net=(--batch 2 --height 64 --width 32 --iters 1 --rounds 1 --dtype float32)
    in_sizes=(--cores 1 --batch 4 --batches 2 --ids 4)
    step auto_choices 60 "$PY" benchmarks/auto_choices.py --quick --dtype float32 bfloat16
  else
    attn=(--iters 10)
    net=(--batch 64 --height 256 --width 128 --iters 5 --rounds 5 --dtype float32 bfloat16)
    in_sizes=(--cores 1 2 4 8 --batch 64 --batches 10)
    step auto_choices 60 "$PY" benchmarks/auto_choices.py --dtype float32 bfloat16 --iters 10
  fi
  for dtype in float32 bfloat16; do
    step "attention_$dtype" 45 "$PY" benchmarks/attention.py "${attn[@]}" --kernels 3 --dtype "$dtype" \
      --implementations fused shift --grouped-convs split einsum conv
  done
  # JAX takes at most 60% of the GPU's memory, leaving the rest to the PyTorch column
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.6 step network_train 180 "$PY" benchmarks/network_step.py "${net[@]}" \
    --mode train $torch_flag --json "$LOG/network_train.json"
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.6 step network_eval 60 "$PY" benchmarks/network_step.py "${net[@]}" \
    --mode eval $torch_flag --json "$LOG/network_eval.json"
  if $QUICK; then
    step extract 30 "$PY" benchmarks/extract_features.py --images 4 --batch 2
  else
    step extract 30 "$PY" benchmarks/extract_features.py --images 96 --batch 32
  fi
  # the StRA train step's img/s (float32) beside the input pipeline's
  local model_rate
  model_rate=$($PY -c "import json, sys; rows = json.load(open(sys.argv[1]))
print(round(next(r['img_per_s'] for r in rows if r['dtype'] == 'float32' and r['network'].startswith('stra')), 1))" \
    "$LOG/network_train.json" 2>/dev/null)
  step input 45 "$PY" benchmarks/input_pipeline.py "${in_sizes[@]}" ${model_rate:+--model-img-s "$model_rate"}

  echo
  echo "=== AUTO_* picks for this backend (from auto_choices above)"
  sed -n '/^# picks/,/^===/p' "$LOG/device_bench.log" | grep -v '^===' || echo "(none: auto_choices failed)"
  echo "=== total $SECONDS s; ${#FAILED[@]} step(s) failed or timed out${FAILED[*]:+: ${FAILED[*]}}"
  [ "${#FAILED[@]}" -eq 0 ]
}

main 2>&1 | tee "$LOG/device_bench.log"
