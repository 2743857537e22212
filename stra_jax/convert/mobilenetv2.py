"""torchvision's MobileNetV2 names (``torchvision.models.mobilenet_v2``).

``features_0`` / the last conv (``features_18`` by default) are
``Conv2dNormActivation``: ``features.0.0`` (conv), ``features.0.1`` (BN). An
inverted-residual block ``features.i`` is one ``conv`` Sequential whose
numbering depends on the expansion: with t = 1 (torchvision's ``features.1``)
``conv.0.0`` / ``conv.0.1`` are the depthwise conv / BN, ``conv.1`` the
projection conv and ``conv.2`` its BN; with t != 1 ``conv.0.*`` is the 1x1
expansion, ``conv.1.*`` the depthwise, ``conv.2`` / ``conv.3`` the projection.
The ImageNet classifier is ``classifier.1`` (after the Dropout). A ReID
checkpoint's head uses the ResNet family's names (``global_avg_pool.1/2``,
``classifier``).

StRA replaces the depthwise conv, so its modules are named inside the
depthwise slot with the authors' StRA names (``convert/resnet.py``), e.g.
``features.14.conv.1.0.mask_conv.0.weight``: importing torchvision's weights
with ``strict=False`` lists them as missing (kept at initialisation) and the
depthwise weights ``features.14.conv.1.0.weight`` as unused.

Limitation: the layout sees only a variable's path, so it takes the t = 1
blocks to be ``features.1`` alone, as in torchvision; a network with
``stage_blocks[0] > 1`` fails a strict import on names instead of loading.
"""
from __future__ import annotations

import re

from stra_jax.convert.layouts import LEAF_NAMES, Layout, register_layout
from stra_jax.convert.resnet import _STRA_NAMES
from stra_jax.models.mobilenetv2 import MobileNetV2

_T1_BLOCKS = {"features_1"}  # torchvision's expand-ratio-1 block(s)
_CONV_BN = {"conv": "0", "bn": "1"}  # Conv2dNormActivation children
_BLOCK = {"expand_conv": "conv.0.0", "expand_bn": "conv.0.1", "dw_conv": "conv.1.0", "dw_bn": "conv.1.1",
          "stra": "conv.1.0", "project_conv": "conv.2", "project_bn": "conv.3"}
_BLOCK_T1 = {"dw_conv": "conv.0.0", "dw_bn": "conv.0.1", "stra": "conv.0.0", "project_conv": "conv.1",
             "project_bn": "conv.2"}
_HEAD = {"embed_conv": "global_avg_pool.1", "embed_bn": "global_avg_pool.2"}


def torch_name(flax_path: tuple[str, ...], classifier_name: str = "classifier") -> str:
    """The PyTorch state_dict key of one Flax variable, e.g.
    ``('features_0', 'bn', 'mean')`` -> ``features.0.1.running_mean``,
    ``('features_3', 'dw_conv', 'kernel')`` -> ``features.3.conv.1.0.weight``,
    ``('features_15', 'stra', 'mode', 'gate_bn1', 'var')`` -> ``features.15.conv.1.0.moe.bn.running_var``,
    ``('classifier', 'kernel')`` -> ``{classifier_name}.weight``."""
    *modules, leaf = flax_path
    top = modules[0]
    if top in _HEAD:
        parts = [_HEAD[top]]
    elif top == "classifier":
        parts = [classifier_name]
    else:
        match = re.fullmatch(r"features_(\d+)", top)
        if match is None or len(modules) < 2:
            raise ValueError(f"{'/'.join(flax_path)}: not a MobileNetV2 variable")
        parts = [f"features.{match.group(1)}"]
        child = modules[1]
        if child in _CONV_BN:
            parts.append(_CONV_BN[child])
        else:
            parts.append((_BLOCK_T1 if top in _T1_BLOCKS else _BLOCK)[child])
            if child == "stra":
                parts.append(_STRA_NAMES["/".join(modules[2:4])])
    return ".".join(parts + [LEAF_NAMES[leaf]])


register_layout(MobileNetV2, Layout("torchvision MobileNetV2", torch_name, imagenet_classifier="classifier.1"))
