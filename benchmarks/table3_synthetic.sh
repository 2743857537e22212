#!/usr/bin/env bash
# Paper Table 3(a) on the built-in synthetic ReID set, three seeds per row, then
# the full StRA network with a smaller L_d weight (0.1, 0): the runs behind the
# Table 3 section of docs/results.md.
#
#   bash benchmarks/table3_synthetic.sh                     # EPOCHS=20, into runs/table3
#   EPOCHS=60 SEEDS=0,1,2,3,4 OUT=runs/table3_long bash benchmarks/table3_synthetic.sh
#
# Every run shares the synthetic set (generated once into $OUT/data) and the
# schedule (the demo's recipe cut to EPOCHS with the decay at 2/3); only the
# variant and the seed differ. Rerunning skips finished runs and resumes the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${EPOCHS:-20}"
SEEDS="${SEEDS:-0,1,2}"
OUT="${OUT:-runs/table3}"
common=(--config configs/reid_synthetic.py --seeds "$SEEDS" --set "dataset.root=$OUT/data"
        --set "train.epochs=$EPOCHS" --set "train.schedule.decay_every=$(( EPOCHS * 2 / 3 ))"
        --set "train.eval_every_epochs=$(( EPOCHS / 2 ))")
python -m stra_jax.tools.sweep "${common[@]}" --variants baseline,local_only,no_interaction,paper \
  --workdir "$OUT"
for w in 0.1 0.0; do
  python -m stra_jax.tools.sweep "${common[@]}" --variants paper --set "train.losses.diversity.weight=$w" \
    --workdir "${OUT}_ld$w"
done
