#!/usr/bin/env bash
# The paper's regime in miniature (issue #24): pretrain the plain narrow ResNet on
# the synthetic classification set, transplant it into every Table 3(a) network,
# fine-tune on the synthetic ReID target with the paper's freezing; the same
# networks from scratch; the StRA-vs-baseline gap against the target's size; the
# L_d weight; the same-domain pretraining (synthetic people) for comparison; a
# held-out target (another seed of the synthetic set). The runs behind the
# transfer section of docs/results.md.
#
#   bash benchmarks/transfer_synthetic.sh                   # everything, into runs/
#   STAGES="pretrain table3" bash benchmarks/transfer_synthetic.sh
#   JOBS=2 SEEDS=0,1,2 SIZE_SEEDS=0 LD_SEEDS=0 PEOPLE_SEEDS=0 bash benchmarks/transfer_synthetic.sh
#
# Rerunning skips finished runs and resumes the rest (the sweep tool). Every run of
# one target size shares its generated set ($OUT/data_<size>).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs}"
JOBS="${JOBS:-2}"
SEEDS="${SEEDS:-0,1,2}"            # Table 3(a) in both regimes, and the smallest target size
SIZE_SEEDS="${SIZE_SEEDS:-0}"      # the larger target sizes
LD_SEEDS="${LD_SEEDS:-0,1,2}"      # the L_d weights
PEOPLE_SEEDS="${PEOPLE_SEEDS:-0,1,2}"  # the same-domain (people) pretraining
STAGES="${STAGES:-pretrain table3 scratch sizes ld people heldout}"
PRE="$OUT/pretrain"
sweep() { python -m stra_jax.tools.sweep --config configs/reid_synthetic_transfer.py --jobs "$JOBS" "$@"; }
has() { [[ " $STAGES " == *" $1 "* ]]; }

if has pretrain; then
  python train.py --config configs/pretrain_synthetic.py --workdir "$PRE"
fi
if has table3; then
  sweep --variants baseline,local_only,no_interaction,paper --seeds "$SEEDS" --workdir "$OUT/table3_transfer" \
    --set "init_from=$PRE" --set "dataset.root=$OUT/data_n480"
fi
if has scratch; then
  sweep --variants scratch+baseline,scratch+local_only,scratch+no_interaction,scratch+paper --seeds "$SEEDS" \
    --workdir "$OUT/table3_scratch" --set "dataset.root=$OUT/data_n480"
fi
if has sizes; then
  sweep --variants n240+baseline,n240+paper --seeds "$SEEDS" --workdir "$OUT/transfer_n240" \
    --set "init_from=$PRE" --set "dataset.root=$OUT/data_n240"
  for n in n960 n3840; do
    sweep --variants "$n+baseline,$n+paper" --seeds "$SIZE_SEEDS" --workdir "$OUT/transfer_$n" \
      --set "init_from=$PRE" --set "dataset.root=$OUT/data_$n"
  done
fi
if has ld; then
  sweep --variants ld0+paper,ld01+paper --seeds "$LD_SEEDS" --workdir "$OUT/transfer_ld" \
    --set "init_from=$PRE" --set "dataset.root=$OUT/data_n480"
fi
if has people; then
  python train.py --config configs/pretrain_synthetic.py:people --workdir "$OUT/pretrain_people"
  sweep --variants baseline,paper --seeds "$PEOPLE_SEEDS" --workdir "$OUT/transfer_people" \
    --set "init_from=$OUT/pretrain_people" --set "dataset.root=$OUT/data_n480"
fi
if has heldout; then
  sweep --variants baseline,paper --seeds "$SIZE_SEEDS" --workdir "$OUT/transfer_heldout" \
    --set "init_from=$PRE" --set "dataset.synthetic.seed=1" --set "dataset.root=$OUT/data_n480_seed1"
fi
