"""The paper's regime in miniature: ReID networks fine-tuned from a pretrained
trunk on a synthetic target twice the demo's size.

    python train.py --config configs/pretrain_synthetic.py --workdir runs/pretrain
    python -m stra_jax.tools.sweep --config configs/reid_synthetic_transfer.py \\
        --variants baseline,local_only,no_interaction,paper --seeds 0,1,2 \\
        --workdir runs/table3_transfer --set init_from=runs/pretrain
    python -m stra_jax.tools.sweep --config configs/reid_synthetic_transfer.py \\
        --variants scratch+baseline,scratch+local_only,scratch+no_interaction,scratch+paper \\
        --seeds 0,1,2 --workdir runs/table3_scratch

The target: the synthetic ReID set (``data/reid/synthetic.py``) with 80
identities, 40 for training (12 images each: 480 training images, twice the
demo's) and 40 for testing, at 96x48 (the demo's 128x64 costs twice the CPU
time; layer4's map is 6x3). Every Table 3(a) variant of
``configs/reid_synthetic.py`` (``:baseline``, ``:local_only``,
``:no_interaction``, ``:paper`` = full StRA, and the others) starts from the
run given as ``init_from`` (its plain narrow ResNet trunk transplanted by name
and shape; the StRA modules and the ReID head start random) with the paper's
freezing (stem and layer1-4 frozen, the new modules and the head training, for
the first 2 of 20 epochs: the paper's 8 of 90, rounded). The recipe is the
synthetic Table 3's (Adam 1e-3, coupled L2 5e-4, x0.1 at epoch 13, CE + 1.0 x
L_d, batch 32), the same for both regimes and every network.

Variants besides the networks: ``scratch`` (no freezing; run it without
``init_from``: the same target from random weights); the target's size by
training images, ``n240`` (the demo's 20 training ids), ``n960``, ``n1920``,
``n3840`` (12 images per id; as many test ids as training ids); the L_d weight,
``ld0`` and ``ld01`` (0.1 instead of 1.0); ``smoke`` (seconds, for tests); ``bot``
(the ReID bag of tricks at these 20 epochs: 2 warmup epochs, x0.1 at 7 and 12, no
frozen stages, P x K 16 x 4; see ``configs/reid_synthetic.py``).
``--set dataset.synthetic.seed=N`` draws another target of the same kind.
Measured results (and what they say about the paper's claim): docs/results.md.
"""
from __future__ import annotations

import configs.reid_synthetic as demo
from configs.common import apply_bot, parse_variants

SIZES = {"n240": 240, "n960": 960, "n1920": 1920, "n3840": 3840}
OWN = ("scratch", "ld0", "ld01") + tuple(SIZES)
VARIANTS = demo.VARIANTS + OWN
IMAGES_PER_ID = 12
IMAGE_SIZE = (96, 48)


def get_config(arg: str | None = None):
    variants = parse_variants(arg, VARIANTS)
    sizes = sorted(variants & set(SIZES))
    if len(sizes) > 1:
        raise ValueError(f"config variants {sizes}: pick one target size of {sorted(SIZES)}")
    config = demo.get_config(",".join(sorted(variants - set(OWN))))
    train_ids = SIZES[sizes[0]] // IMAGES_PER_ID if sizes else 40
    config.dataset.synthetic.update(num_ids=2 * train_ids, images_per_id=IMAGES_PER_ID)
    config.train.update(epochs=20, frozen_epochs=2, eval_every_epochs=5, log_every=15)
    config.train.schedule.update(decay_every=13, gamma=0.1)
    if "smoke" in variants:
        config.dataset.synthetic.update(num_ids=12, images_per_id=6)
        config.train.update(epochs=2, frozen_epochs=1, eval_every_epochs=1)
    else:
        config.dataset.synthetic.update(height=IMAGE_SIZE[0], width=IMAGE_SIZE[1])
        config.input.image_size = IMAGE_SIZE
        config.evals.reid.image_size = IMAGE_SIZE
    if "scratch" in variants:
        config.train.frozen_epochs = 0
    if "bot" in variants:  # the recipe at this run's length and lr (no frozen stages: its warmup instead)
        apply_bot(config, batch_size=8 if "smoke" in variants else 64)
    if "ld0" in variants or "ld01" in variants:
        if not config.model.name.startswith("stra_"):
            raise ValueError("config variants ld0 / ld01 set the L_d weight of a StRA network; "
                             f"{config.model.name} has no StRA modules")
        config.train.losses.diversity.weight = 0.0 if "ld0" in variants else 0.1
    return config
