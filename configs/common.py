"""Shared config pieces and the ``:variant`` argument parser (big_vision style).

``--config configs/reid_market.py:smoke`` calls ``get_config("smoke")``;
several variants combine with commas (``:authors,smoke``). Every key is read in
one place; an unknown ``--config.x=y`` override fails at load time.
"""
from __future__ import annotations

import ml_collections

REID_VARIANTS = ("paper", "authors", "bot", "center", "smoke")
ABLATIONS = ("local_only", "no_interaction", "softmax_gate", "k5", "k7", "g4", "g16", "g32", "baseline")
# Paper Table 2 / Fig. 3: variant -> registered network. Every row gets StRA's
# ReID head (last stride 1, 512-d BN embedding), as ``:baseline`` does, so the
# rows differ only in their attention ("same experimental setup", Sec. 5.1).
NETWORKS = {"se": "se_resnet50", "nonlocal": "nonlocal_resnet50", "sasa": "sasa_resnet50",
            "mnetv2": "mobilenetv2_x1_0", "mnetv2_x1_4": "mobilenetv2_x1_4",
            "stra_mnetv2": "stra_mobilenetv2_x1_0", "stra_mnetv2_x1_4": "stra_mobilenetv2_x1_4"}
# MobileNetV2's pretrained groups (torchvision rows); "layer4"'s equivalent is the
# rows at 1/32 (160, 320) and the last 1x1 conv.
MOBILE_GROUPS = ("stem", "stage1", "stage2", "stage3", "stage4", "stage5", "stage6", "stage7", "last_conv")
MOBILE_LAST_STAGE = ("stage6", "stage7", "last_conv")


def parse_variants(arg: str | None, known: tuple[str, ...]) -> set[str]:
    """'a,b' -> {'a', 'b'}; an unknown variant fails with the list of known ones."""
    variants = {v.strip() for v in (arg or "").split(",") if v.strip()}
    unknown = sorted(variants - set(known))
    if unknown:
        raise ValueError(f"unknown config variant(s) {unknown}; known variants: {sorted(known)}")
    return variants


def reid_eval_config() -> ml_collections.ConfigDict:
    """Test-time settings of the ReID protocol the field reports with: one
    ``config.evals`` entry, the evaluator's defaults (Euclidean distance, no
    flip, no re-ranking, max rank 50, 256x128, batch 128)."""
    from stra_jax.evaluation.reid_retrieval import DEFAULTS

    return ml_collections.ConfigDict(dict(type="reid_retrieval", **DEFAULTS))


def reid_train_config() -> ml_collections.ConfigDict:
    """The paper's supplement recipe (ReID): Adam 3e-4 x0.2 every 20 epochs, batch
    32, coupled L2 5e-4, 90 epochs, pretrained stages frozen for 8 epochs, CE +
    1.0 x L_d."""
    return ml_collections.ConfigDict(dict(
        epochs=90,
        batch_size=32,            # global, over all devices and hosts
        accum_steps=1,            # >1: split each batch into micro-batches (gradient accumulation)
        optimizer=dict(name="adam", b1=0.9, b2=0.999),  # stra_jax.training.optim.OPTIMIZERS
        lr=3e-4,
        lr_reference_batch=0,     # > 0: the run uses lr x batch_size / lr_reference_batch (linear scaling)
        weight_decay=5e-4,        # coupled L2, as torch.optim.Adam
        schedule=dict(name="step", decay_every=20, gamma=0.2),  # StepLR per epoch (training/schedules.py)
        # CE + 1.0 x L_d: weighted terms of stra_jax.losses.LOSSES (name -> weight and options)
        losses=dict(ce=dict(weight=1.0, label_smoothing=0.0), diversity=dict(weight=1.0)),
        frozen_epochs=8,
        # Paper: stages 1-4 frozen (new modules and head train). Authors: layer4 open.
        frozen_groups=("stem", "layer1", "layer2", "layer3", "layer4"),
        log_every=50,
        eval_every_epochs=10,
        checkpoint_every_epochs=1,
        checkpoint_every_steps=0,  # 0: only at epoch ends
        keep_checkpoints=3,
        prefetch=2,               # global batches copied to the devices ahead of the step
        best_metric="reid/mAP",   # keeps the best checkpoint and WORKDIR/model_best
    ))


def apply_authors_recipe(config: ml_collections.ConfigDict, frozen_epochs: int = 8) -> None:
    """The authors' released torchreid scripts (see docs: where they differ)."""
    t = config.train
    t.optimizer.b2 = 0.99
    t.schedule.update(decay_every=20, gamma=0.1)
    t.losses.ce.label_smoothing = 0.1
    t.update(epochs=100,
             frozen_epochs=frozen_epochs, frozen_groups=frozen_groups(config.model.name, last_stage_open=True))
    config.evals.reid.update(normalize=True, metric="sqeuclidean")


def apply_ablation(config: ml_collections.ConfigDict, name: str) -> None:
    """Paper Table 3 variants and the plain ResNet-50 baseline."""
    kw = config.model.kwargs
    if name == "baseline":
        config.model.name = "resnet50"
        config.model.kwargs = dict(last_stride=1, embedding_dim=512)
        return
    updates = {"local_only": dict(mode_attention=False), "no_interaction": dict(mode_interaction=False),
               "softmax_gate": dict(gate="softmax"), "k5": dict(kernel_size=5), "k7": dict(kernel_size=7),
               "g4": dict(heads=4), "g16": dict(heads=16), "g32": dict(heads=32)}[name]
    config.model.kwargs = dict(kw, **updates)


# The bag-of-tricks recipe (Luo et al. 2019, reid-strong-baseline configs/softmax_triplet.yml):
# 120 epochs, 10 of linear warmup from 0.01 x lr, x0.1 at epochs 40 and 70.
BOT_EPOCHS, BOT_WARMUP, BOT_MILESTONES = 120, 10, (40, 70)


def bot_schedule(epochs: int) -> dict:
    """The recipe's warmup and milestones placed at the same fractions of a run
    of ``epochs`` (10/120, 40/120, 70/120): ``train.schedule`` for it. The
    milestones count from the end of the warmup (``training/schedules.py``), so
    at 120 epochs they are (30, 60): the recipe's epochs 40 and 70."""
    warmup = max(1, round(epochs * BOT_WARMUP / BOT_EPOCHS))
    first = max(1, round(epochs * BOT_MILESTONES[0] / BOT_EPOCHS) - warmup)
    second = max(first + 1, round(epochs * BOT_MILESTONES[1] / BOT_EPOCHS) - warmup)
    return dict(name="multistep", milestones=(first, second), gamma=0.1, warmup_epochs=warmup, warmup_factor=0.01)


def apply_bot(config: ml_collections.ConfigDict, *, batch_size: int = 64, epochs: int | None = None,
              lr: float | None = None) -> None:
    """The ReID bag of tricks (Luo et al., "Bag of Tricks and A Strong Baseline for
    Deep Person Re-identification", CVPRW 2019; reid-strong-baseline's
    ``softmax_triplet.yml``, fast-reid's ``Base-bagtricks.yml``): P x K = 16 x 4
    identity sampling (``batch_size`` / 4 identities), CE with label smoothing 0.1
    + batch-hard triplet (margin 0.3) on the feature before a BNNeck, bias-free
    classifier, last stride 1, random erasing, Adam with 10 warmup epochs and
    x0.1 at 40 and 70 of 120, no frozen stages; test on the L2-normalised post-BN
    feature. StRA keeps L_d (its weight unchanged) and its 512-d head (BNNeck on
    its embedding BatchNorm); ``:baseline`` becomes reid-strong-baseline's own
    network (ResNet-50, 2048-d GAP feature -> BNNeck). ``epochs`` / ``lr`` None:
    keep the config's (the synthetic configs keep their own length and lr and
    place the recipe's warmup and milestones at the same fractions)."""
    t = config.train
    if epochs is not None:
        t.epochs = epochs
    if lr is not None:
        t.lr = lr
    t.update(batch_size=batch_size, frozen_epochs=0, weight_decay=5e-4)
    t.optimizer = ml_collections.ConfigDict(dict(name="adam", b1=0.9, b2=0.999))
    t.schedule = ml_collections.ConfigDict(bot_schedule(t.epochs))
    t.losses.ce.label_smoothing = 0.1
    t.losses.triplet = ml_collections.ConfigDict(dict(weight=1.0, margin=0.3))
    config.input.sampler = "pk"
    config.input.sampler_options = ml_collections.ConfigDict(dict(num_instances=4))
    config.input.augment.update(flip=True, pad=10, erase_prob=0.5)
    # pooling: "avg" as the recipe; the key is here so that --config.model.kwargs.pooling=gem switches it
    kwargs = dict(config.model.kwargs, last_stride=1, bnneck=True, pooling="avg")
    if config.model.name == "resnet50":  # reid-strong-baseline's network: the GAP feature is the embedding
        kwargs["embedding_dim"] = None
    config.model.kwargs = kwargs
    config.evals.reid.update(normalize=True, metric="euclidean")


def apply_center(config: ml_collections.ConfigDict) -> None:
    """reid-strong-baseline's center loss (``softmax_triplet_with_center.yml``):
    weight 0.0005 on the same feature as the triplet (``:bot,center``; alone, on
    the embedding of the plain recipe). Its centers are parameters
    of the model trained by the run's optimiser (reid-strong-baseline gives them
    their own SGD at lr 0.5: docs/differences.md)."""
    config.train.losses.center = ml_collections.ConfigDict(dict(weight=0.0005))


def is_mobile(config: ml_collections.ConfigDict) -> bool:
    return config.model.name.startswith(("mobilenetv2", "stra_mobilenetv2"))


def frozen_groups(model_name: str, last_stage_open: bool) -> tuple[str, ...]:
    """The pretrained groups the ReID recipes freeze first: all (paper) or all but
    the last stage (the authors' scripts)."""
    if model_name.startswith(("mobilenetv2", "stra_mobilenetv2")):
        return tuple(g for g in MOBILE_GROUPS if not (last_stage_open and g in MOBILE_LAST_STAGE))
    return ("stem", "layer1", "layer2", "layer3") + (() if last_stage_open else ("layer4",))


def apply_network(config: ml_collections.ConfigDict, variant: str) -> None:
    """A Table 2 network with StRA's ReID head; MobileNetV2's frozen groups are
    its own (the same depth of the network as the ResNet groups)."""
    config.model.name = NETWORKS[variant]
    config.model.kwargs = dict(last_stride=1, embedding_dim=512)
    last_stage_open = "layer4" not in config.train.frozen_groups  # the :authors recipe
    config.train.frozen_groups = frozen_groups(config.model.name, last_stage_open)


def narrow(config: ml_collections.ConfigDict, resnet: dict, mobile: dict) -> None:
    """Shrink the network for small runs: ResNet-trunk options or MobileNetV2's."""
    config.model.kwargs = dict(config.model.kwargs, **(mobile if is_mobile(config) else resnet))


def reid_config(dataset: str, root: str, arg: str | None = None,
                known: tuple[str, ...] = REID_VARIANTS + ABLATIONS + tuple(NETWORKS)) -> ml_collections.ConfigDict:
    variants = parse_variants(arg, known)
    config = ml_collections.ConfigDict()
    config.task = "reid"  # stra_jax.tasks: data, loss and evaluators
    config.seed = 0
    # "" (random), a PyTorch state_dict (.pth/.pt/.bin/.safetensors, e.g. torchvision ImageNet ResNet-50),
    # a model dir or a training workdir (model_best/, else model_last/) of this or another architecture
    # of the family: tensors with the same name and shape load, the rest (StRA, head) stay at init.
    config.init_from = ""
    # skip_corrupt: drop (and count) unreadable images instead of stopping before training.
    # source: "folder" reads root (the extracted layout); "tfds" reads the TFDS build of the
    # dataset in data_dir ('' = ~/tensorflow_datasets, or WORKDIR/data/tfds for the synthetic
    # set, which is built there automatically; gs:// works): python -m stra_jax.tools.build_tfds.
    config.dataset = ml_collections.ConfigDict(dict(name=dataset, root=root, skip_corrupt=False,
                                                    source="folder", data_dir=""))
    config.model = ml_collections.ConfigDict(dict(name="stra_resnet50", kwargs=dict()))
    config.input = ml_collections.ConfigDict(dict(
        image_size=(256, 128),
        augment=dict(flip=True, pad=10, erase_prob=0.5, erase_area=(0.02, 0.4), erase_aspect=(0.3, 3.3),
                     erase_tries=10),
        sampler="random",         # stra_jax.data.samplers: how each global batch is drawn
        sampler_options=dict()))
    config.train = reid_train_config()
    config.evals = ml_collections.ConfigDict({"reid": reid_eval_config()})
    if "authors" in variants:
        apply_authors_recipe(config)
    for name in sorted(variants & set(ABLATIONS)):
        apply_ablation(config, name)
    if {"authors", "bot"} <= variants:
        raise ValueError("config variants authors and bot are two recipes: pick one")
    networks = sorted(variants & set(NETWORKS))
    if len(networks) > 1 or (networks and variants & set(ABLATIONS)):
        raise ValueError(f"config variants {sorted(variants)}: pick one network ({sorted(NETWORKS)}) or the "
                         "StRA-ResNet-50 ablations, not several")
    for name in networks:
        apply_network(config, name)
    if "smoke" in variants:
        # a non-local block needs a residual block after it in its stage (res4 = layer3)
        blocks = (1, 1, 2, 2) if config.model.name == "nonlocal_resnet50" else (1, 1, 1, 2)
        narrow(config, resnet=dict(width=8, stage_sizes=blocks),
               mobile=dict(width_mult=0.25, stage_blocks=(1, 1, 1, 1, 1, 1, 1)))
        config.input.image_size = (64, 32)
        config.evals.reid.update(image_size=(64, 32), batch_size=16)
        config.train.update(epochs=2, batch_size=8, frozen_epochs=1, log_every=2, eval_every_epochs=1)
    if "bot" in variants:
        apply_bot(config, **(dict(batch_size=8) if "smoke" in variants else dict(epochs=120, lr=3.5e-4)))
    if "center" in variants:
        apply_center(config)
    return config
