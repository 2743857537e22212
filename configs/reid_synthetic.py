"""The built-in demo: the synthetic part-structured ReID set, a small StRA net.

    python train.py --config configs/reid_synthetic.py --workdir runs/synthetic

Generates the synthetic set (Market-1501 layout) into WORKDIR/data when absent,
trains a narrow StRA-ResNet from scratch (no pretrained weights exist for it)
and evaluates it (mAP, rank-1). ``:smoke`` is a tiny version for tests.

Paper Table 3 on this set: the ablations of ``configs/reid_market.py``
(``:local_only``, ``:no_interaction``, ``:softmax_gate``, ``:k5``, ``:k7``,
``:g4``, ``:g16``, ``:g32``, ``:baseline``) apply to the narrow network, and
``:paper`` names the demo's own (full StRA); with three seeds:

    python -m stra_jax.tools.sweep --config configs/reid_synthetic.py \
        --variants baseline,local_only,no_interaction,paper --seeds 0,1,2 --workdir runs/table3

``benchmarks/table3_synthetic.sh`` runs them (20 epochs, decay at 13); the
measured table is in docs/results.md.

Paper Table 2 on this set: ``:baseline`` (ResNet-50 with StRA's head) and one
variant per comparison network (``:se``, ``:nonlocal``, ``:sasa``, ``:mnetv2``,
``:mnetv2_x1_4``, ``:stra_mnetv2``, ``:stra_mnetv2_x1_4``), narrowed like the
demo's network (ResNets at width 16 with (1, 1, 2, 3) blocks, MobileNetV2 at
half its width with one block per row); ``benchmarks/table2_synthetic.sh``
runs them all and draws Fig. 3. Measured results: docs/results.md.

``:bot``: the ReID bag of tricks (``configs/common.py`` ``apply_bot``; published
Market-1501 numbers of reid-strong-baseline's ResNet-50, rank-1 94.1 / mAP 85.7,
in ``configs/reid_market.py``) at this config's own length and lr (60 epochs,
Adam 1e-3), its warmup and milestones at the recipe's fractions (5 warmup epochs,
x0.1 at 20 and 35), P x K 16 x 4; ``:bot,baseline`` is reid-strong-baseline's
network narrowed like the demo's. ``benchmarks/bot_synthetic.sh`` compares it with
the plain recipe (docs/results.md).
"""
from __future__ import annotations

import ml_collections

from configs.common import ABLATIONS, NETWORKS, apply_bot, narrow, parse_variants, reid_config
from stra_jax.models.registry import get_entry

# ``paper`` is the demo's own network (full StRA); ``baseline`` is in ABLATIONS.
VARIANTS = ("smoke", "paper", "bot", "center") + ABLATIONS + tuple(NETWORKS)


def get_config(arg: str | None = None):
    config = reid_config("synthetic", "", arg, known=VARIANTS)
    config.dataset.synthetic = ml_collections.ConfigDict(dict(seed=0, num_ids=40, num_cameras=6,
                                                              images_per_id=12, height=128, width=64))
    if "smoke" in parse_variants(arg, VARIANTS):  # reid_config already made the run tiny
        config.dataset.synthetic.update(num_ids=12, images_per_id=6, height=64, width=32)
        return config
    # MobileNetV2 at half its width (x1.0 -> 0.5, x1.4 -> 0.7), one block per row.
    mobile_width = 0.5 * get_entry(config.model.name).defaults.get("width_mult", 1.0)
    narrow(config, resnet=dict(width=16, stage_sizes=(1, 1, 2, 3)),
           mobile=dict(width_mult=mobile_width, stage_blocks=(1, 1, 1, 1, 1, 1, 1)))
    config.input.image_size = (128, 64)
    config.evals.reid.update(image_size=(128, 64), batch_size=32)
    # An epoch is 7 steps (2-3 s on a CPU): a checkpoint every 5 epochs (and at each evaluation) rather
    # than every epoch, whose saves cost the loop about 12% (benchmarks/loop_overhead.py).
    config.train.update(epochs=60, batch_size=32, lr=1e-3, frozen_epochs=0, log_every=20, eval_every_epochs=20,
                        checkpoint_every_epochs=5)
    config.train.schedule.update(decay_every=40, gamma=0.1)
    if "bot" in parse_variants(arg, VARIANTS):  # the recipe at this run's length and lr (see apply_bot)
        apply_bot(config)
    return config
