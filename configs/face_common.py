"""Shared pieces of the face configs (big_vision style ``get_config(arg)``).

The paper's face recipe (supplement): from scratch, 112x112, (x - 127.5) / 128,
random flip only; SGD momentum 0.9, lr 0.1 x0.1 at epochs 8 and 12, 20 epochs,
batch 512, weight decay 5e-4; BN-Dropout-FC-BN head to 512-d; softmax,
CosFace (m 0.2, s 20) or ArcFace (m 0.15, s 20); + 0.1 x L_d; test: the
embeddings of the image and its flip concatenated, 10-fold verification.
"""
from __future__ import annotations

import ml_collections

from configs.common import parse_variants

FACE_VARIANTS = ("arcface", "cosface", "softmax", "baseline", "smoke")
# The paper's margin loss terms (stra_jax.losses.LOSSES) and their options; the variant picks one.
# straight_through=True: insightface's margin gradient (the margin as a constant).
MARGIN_TERMS = {"softmax": {}, "cosface": dict(margin=0.2, scale=20.0, straight_through=False),
                "arcface": dict(margin=0.15, scale=20.0, straight_through=False)}


def face_eval_config() -> ml_collections.ConfigDict:
    """One ``config.evals`` entry: every ``.bin`` set of the dataset folder, flip
    concatenated (the paper), insightface's 10-fold protocol."""
    from stra_jax.evaluation.face_verification import DEFAULTS

    return ml_collections.ConfigDict(dict(type="face_verification", **DEFAULTS))


def face_train_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        epochs=20,
        batch_size=512,           # global, over all devices and hosts (paper: 8 GPUs x 64)
        accum_steps=1,
        optimizer=dict(name="sgd", momentum=0.9, nesterov=False),
        lr=0.1,
        lr_reference_batch=0,     # > 0: the run uses lr x batch_size / lr_reference_batch (linear scaling)
        schedule=dict(name="multistep", milestones=(8, 12), gamma=0.1),  # MultiStepLR, epochs
        weight_decay=5e-4,
        # ArcFace (or a variant's softmax | cosface) + 0.1 x L_d: weighted terms of stra_jax.losses.LOSSES
        losses=dict(arcface=dict(weight=1.0, **MARGIN_TERMS["arcface"]), diversity=dict(weight=0.1)),
        frozen_epochs=0,          # trained from scratch: nothing to freeze
        frozen_groups=(),
        log_every=100,
        eval_every_epochs=2,
        checkpoint_every_epochs=1,
        checkpoint_every_steps=0,
        keep_checkpoints=3,
        prefetch=2,
        best_metric="face/mean_accuracy",  # mean verification accuracy over the .bin sets
    ))


def face_config(dataset: str, root: str, arg: str | None = None,
                known: tuple[str, ...] = FACE_VARIANTS) -> ml_collections.ConfigDict:
    """The paper's face recipe on ``dataset`` (a name of ``stra_jax.data.face.dataset.FACE_READERS``)."""
    variants = parse_variants(arg, known)
    losses = variants & set(MARGIN_TERMS)
    if len(losses) > 1:
        raise ValueError(f"config variants {sorted(losses)}: choose one loss")
    config = ml_collections.ConfigDict()
    config.task = "face"
    config.seed = 0
    config.init_from = ""
    # source: "folder" reads root (insightface's folder); "tfds" reads the TFDS builds face_recordio/<set>
    # and face_verification/<set> (stra_jax.data.tfds.face) in data_dir ('' = ~/tensorflow_datasets, or
    # WORKDIR/data/tfds for the synthetic set, generated and built on first use; gs:// works), <set> =
    # tfds_config ('' = from root's insightface folder name: faces_webface_112x112 -> casia_webface,
    # faces_emore -> ms1m; synthetic_faces for synthetic_faces).
    config.dataset = ml_collections.ConfigDict(dict(name=dataset, root=root, verification=(), check_images=True,
                                                    source="folder", data_dir="", tfds_config=""))
    config.model = ml_collections.ConfigDict(dict(name="stra_resnet50_face", kwargs=dict(), shard_classifier=False))
    config.input = ml_collections.ConfigDict(dict(image_size=(112, 112), flip=True, sampler="random",
                                                  sampler_options=dict()))
    config.train = face_train_config()
    config.evals = ml_collections.ConfigDict({"face": face_eval_config()})
    if losses:
        loss = losses.pop()
        # Another margin term in place of ArcFace; L_d stays.
        config.train.losses = {loss: dict(weight=1.0, **MARGIN_TERMS[loss]),
                               "diversity": config.train.losses.diversity.to_dict()}
    if "baseline" in variants:
        config.model.name = "resnet50_face"
    if "smoke" in variants:
        config.model.kwargs = dict(width=8, stage_sizes=(1, 1, 1, 1), embedding_dim=32)
        config.input.image_size = (32, 32)
        config.evals.face.update(image_size=(32, 32), batch_size=16, nrof_folds=2)
        config.train.update(epochs=2, batch_size=16, log_every=2, eval_every_epochs=2, lr=0.05)
        config.train.schedule.milestones = (1,)
    return config
