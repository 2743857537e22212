#!/usr/bin/env bash
# Paper Table 2 / Fig. 3 on the built-in synthetic ReID set: one narrow run per
# network (the demo's recipe, shortened), then the summary table and the PNG.
#
#   bash benchmarks/table2_synthetic.sh                 # EPOCHS=20, into runs/table2
#   EPOCHS=60 OUT=runs/table2_long bash benchmarks/table2_synthetic.sh
#
# Every run shares the synthetic set (generated once into $OUT/data), the seed
# and the schedule; only the network differs. Rerunning resumes or re-evaluates.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${EPOCHS:-20}"
OUT="${OUT:-runs/table2}"
VARIANTS="${VARIANTS:-baseline stra se nonlocal sasa mnetv2 stra_mnetv2 mnetv2_x1_4 stra_mnetv2_x1_4}"
decay=$(( EPOCHS * 2 / 3 ))
for v in $VARIANTS; do
  arg=":$v"
  [ "$v" = stra ] && arg=""            # the demo's own network: narrow StRA-ResNet-50
  python train.py --config "configs/reid_synthetic.py$arg" --workdir "$OUT/$v" \
    --config.dataset.root="$OUT/data" --config.train.epochs="$EPOCHS" \
    --config.train.schedule.decay_every="$decay" --config.train.eval_every_epochs="$EPOCHS" \
    > "$OUT/$v.log" 2>&1 || { echo "run $v failed: see $OUT/$v.log" >&2; exit 1; }
  echo "done $v"
done
python -m stra_jax.tools.summary --plot "$OUT/fig3_size_vs_map.png" \
  --results $(for v in $VARIANTS; do echo "$OUT/$v/final_metrics.json"; done)
