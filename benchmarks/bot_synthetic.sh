#!/usr/bin/env bash
# Plain recipe vs the ReID bag of tricks (:bot) for the baseline and StRA (issue #25),
# on the synthetic demo set (from scratch) and on the transfer target (the trunk of
# benchmarks/transfer_synthetic.sh's pretraining transplanted). The runs behind the
# bag-of-tricks section of docs/results.md.
#
#   bash benchmarks/bot_synthetic.sh                            # everything, into runs/
#   STAGES="transfer_bot demo_bot" SEEDS=0,1,2 bash benchmarks/bot_synthetic.sh
#   PRE=runs/pretrain bash benchmarks/bot_synthetic.sh           # an existing pretraining run
#
# The *_bot32 stages run :bot at the synthetic configs' own global batch, 32 = 8 x 4, so
# that it takes as many optimiser steps as the plain recipe (16 x 4 takes half as many).
#
# transfer_late, transfer_late_notriplet and transfer_late_parts (seed 0 only) are
# diagnostics: StRA under :bot with the plain recipe's late decay (x0.1 at epochs 13 and
# 19), with and without the triplet term, without BNNeck, with the plain recipe's frozen
# stages, without label smoothing at batch 32, with the random sampler and no triplet;
# and the plain recipe with the P x K sampler.
#
# Rerunning skips finished runs and resumes the rest (the sweep tool). The transfer
# stages need the pretraining run ($PRE; STAGES=pretrain makes it, 11 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs}"
JOBS="${JOBS:-2}"
SEEDS="${SEEDS:-0,1,2}"
PRE="${PRE:-$OUT/pretrain}"
STAGES="${STAGES:-pretrain transfer_bot demo_bot transfer_plain demo_plain transfer_bot32 demo_bot32 transfer_late transfer_late_notriplet transfer_late_parts}"
has() { [[ " $STAGES " == *" $1 "* ]]; }
demo() { python -m stra_jax.tools.sweep --config configs/reid_synthetic.py --jobs "$JOBS" --seeds "$SEEDS" \
           --set "dataset.root=$OUT/data_demo" "$@"; }
transfer() { python -m stra_jax.tools.sweep --config configs/reid_synthetic_transfer.py --jobs "$JOBS" \
               --seeds "$SEEDS" --set "init_from=$PRE" --set "dataset.root=$OUT/data_n480" "$@"; }
if has pretrain; then
  python train.py --config configs/pretrain_synthetic.py --workdir "$PRE"
fi
if has transfer_bot; then
  transfer --variants bot+baseline,bot+paper --workdir "$OUT/bot_transfer"
fi
if has demo_bot; then
  demo --variants bot+baseline,bot+paper --workdir "$OUT/bot_demo"
fi
if has transfer_plain; then
  transfer --variants baseline,paper --workdir "$OUT/plain_transfer"
fi
if has demo_plain; then
  demo --variants baseline,paper --workdir "$OUT/plain_demo"
fi
if has transfer_bot32; then
  transfer --variants bot+baseline,bot+paper --set train.batch_size=32 --workdir "$OUT/bot32_transfer"
fi
if has demo_bot32; then
  demo --variants bot+baseline,bot+paper --set train.batch_size=32 --workdir "$OUT/bot32_demo"
fi
late() { transfer --variants "$1" --set 'train.schedule.milestones=(11,17)' "${@:2}"; }
if has transfer_late; then
  SEEDS=0 late bot+paper,bot+baseline --workdir "$OUT/botlate_transfer"
fi
if has transfer_late_notriplet; then
  SEEDS=0 late bot+paper --set train.losses.triplet.weight=0.0 --workdir "$OUT/botlate_notriplet_transfer"
fi
if has transfer_late_parts; then
  SEEDS=0 late bot+paper --set model.kwargs.bnneck=False --workdir "$OUT/botlate_nobnneck_transfer"
  SEEDS=0 late bot+paper --set train.frozen_epochs=2 --workdir "$OUT/botlate_frozen_transfer"
  SEEDS=0 late bot+paper --set train.losses.ce.label_smoothing=0.0 --set train.batch_size=32 \
    --workdir "$OUT/botlate_nols32_transfer"
  SEEDS=0 transfer --variants paper --set input.sampler=pk --workdir "$OUT/plainpk_transfer"
  # the random sampler cannot take the triplet term (its batches have single images): drop it in Python
  python - "$PRE" "$OUT" <<'PY'
import sys
from configs import reid_synthetic_transfer
from stra_jax.training.loop import train_and_evaluate
pre, out = sys.argv[1:]
config = reid_synthetic_transfer.get_config("bot,paper")
config.update(init_from=pre, seed=0)
config.dataset.root = f"{out}/data_n480"
config.train.schedule.milestones = (11, 17)
del config.train.losses["triplet"]
config.input.sampler, config.input.sampler_options = "random", {}
train_and_evaluate(config, f"{out}/botlate_random_notriplet_transfer/bot+paper/seed0")
PY
fi
