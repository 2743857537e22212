"""ImageNet pretraining (any registered backbone), the standard recipe of flax
examples/imagenet and big_vision: SGD Nesterov 0.9, lr 0.1 x batch / 256,
5 warmup epochs, cosine decay, label smoothing 0.1, weight decay 1e-4, 100
epochs, 224x224 Inception crop + flip, test on the central 224 crop of 256.

On a TPU VM (v3-8 or larger) with the TFDS build of ``imagenet2012`` in a bucket::

    python train.py --config configs/imagenet.py:stra_resnet50,bf16 \\
        --config.dataset.data_dir=gs://BUCKET/tensorflow_datasets --workdir gs://BUCKET/runs/stra_r50_i1k

(``tfds build imagenet2012 --manual_dir ...`` makes the build; any TFDS
builder with ``image`` and ``label`` features works the same way through
``--config.dataset.name``). An extracted copy in ``ROOT/train/<wnid>/*.JPEG``,
``ROOT/val/<wnid>/*.JPEG`` works with ``:folder`` and ``--config.dataset.root=ROOT``.

Variants: the network (``resnet50`` (default), ``stra_resnet50``, ``mnetv2``,
``stra_mnetv2``: MobileNetV2 x1.0 with its weight decay 4e-5), ``bf16``
(compute in bfloat16, float32 parameters), ``imagenette`` (TFDS ``imagenette``,
10 classes, a quick check), ``folder`` (the extracted copy), ``smoke`` (a tiny
run on a tiny synthetic set, for tests). Expected: ResNet-50 with this recipe reaches about 76-77% top-1
(flax examples/imagenet report 76.1% at 90 epochs with a batch of 1024 on
8 GPUs / TPU v3-8); no StRA ImageNet number has been published.

The resulting run initialises the ReID networks (``init_from`` = this workdir):
the ResNet trunk transplanted into StRA-ResNet-50 as the paper does, or the
StRA network itself.
"""
from __future__ import annotations

import ml_collections

from configs.classification_common import NETWORKS, classification_config, shrink_for_smoke
from configs.common import parse_variants

VARIANTS = tuple(NETWORKS) + ("bf16", "imagenette", "folder", "smoke")


def get_config(arg: str | None = None):
    variants = parse_variants(arg, VARIANTS)
    networks = sorted(variants & set(NETWORKS))
    if len(networks) > 1:
        raise ValueError(f"config variants {networks}: pick one network of {sorted(NETWORKS)}")
    config = classification_config("imagenet2012", "", networks[0] if networks else "resnet50", source="tfds")
    if "imagenette" in variants:
        config.dataset.name = "imagenette"
    if "folder" in variants:
        config.dataset.update(name="folder", source="folder")
    if "bf16" in variants:
        config.model.kwargs = dict(config.model.kwargs, dtype="bfloat16")
    if "smoke" in variants:  # the built-in synthetic set: runs anywhere, no download
        shrink_for_smoke(config)
        config.dataset.update(name="synthetic", source="folder")
        config.dataset.synthetic = ml_collections.ConfigDict(dict(num_classes=6, train_per_class=3, val_per_class=2,
                                                                  height=32, width=32))
    return config
