"""The ResNet family's PyTorch names: torchvision's ResNet-50 and the authors' StRA-ResNet-50.

torchvision: ``conv1``, ``bn1``, ``layer4.0.conv2``, ``layer4.0.downsample.0/1``,
``fc``. The authors' StRA (``stru_resnet50``): ``layer4.0.conv2.mask_conv.0``,
``...conv2.moe.gap_weight.*``, head ``global_avg_pool.1/2`` and ``classifier``.
The other attention networks on this trunk:

* Non-local (``nonlocal3_0`` ...): fast-reid's names ``NL_3.0.{g,theta,phi}``,
  ``NL_3.0.W.0`` (conv) and ``NL_3.0.W.1`` (BN). fast-reid's block divides the
  affinities by N (the "dot product" form) where ours is Wang et al.'s embedded
  Gaussian (softmax): its tensors load, its function differs.
* SASA (``layer4_0/sasa``): the common PyTorch layout of stand-alone
  self-attention, ``conv2.{query_conv,key_conv,value_conv}.weight`` (1x1,
  no bias) and ``conv2.rel_h`` (C/2, 1, 1, K, 1) / ``conv2.rel_w`` (C/2, 1, 1, 1, K).
"""
from __future__ import annotations

import re

import numpy as np

from stra_jax.convert.layouts import LEAF_NAMES, Layout, default_to_flax, register_layout
from stra_jax.models.resnet import ResNetBase

# Flax module names (paper terms) -> the authors' PyTorch child names.
_STRA_NAMES = {
    "local/logit_conv1": "mask_conv.0", "local/logit_bn1": "mask_conv.1",
    "local/logit_conv2": "mask_conv.3", "local/logit_bn2": "mask_conv.4",
    "local/value_conv": "value_conv",
    "mode/mask_conv1": "moe.gap_weight.0", "mode/mask_bn1": "moe.gap_weight.1",
    "mode/mask_conv2": "moe.gap_weight.3", "mode/mask_bn2": "moe.gap_weight.4",
    "mode/gate_bn1": "moe.bn", "mode/gate_bn2": "moe.bn2",
}
_NONLOCAL_NAMES = {"theta": "theta", "phi": "phi", "g": "g", "out_conv": "W.0", "out_bn": "W.1"}
_SASA_NAMES = {"query": "query_conv", "key": "key_conv", "value": "value_conv"}
_SASA_LEAVES = {"rel_rows": "rel_h", "rel_cols": "rel_w"}


def torch_name(flax_path: tuple[str, ...], classifier_name: str = "classifier") -> str:
    """The PyTorch state_dict key of one Flax variable, e.g.
    ``('layer4_0', 'stra', 'mode', 'gate_bn1', 'scale')`` -> ``layer4.0.conv2.moe.bn.weight``."""
    *modules, leaf = flax_path
    parts: list[str] = []
    i = 0
    while i < len(modules):
        name = modules[i]
        block = re.fullmatch(r"layer(\d)_(\d+)", name)
        nonlocal_block = re.fullmatch(r"nonlocal(\d)_(\d+)", name)
        if block:
            parts += [f"layer{block.group(1)}", block.group(2)]
        elif nonlocal_block:
            parts += [f"NL_{nonlocal_block.group(1)}", nonlocal_block.group(2)]
            if i + 1 < len(modules):
                parts.append(_NONLOCAL_NAMES[modules[i + 1]])
                i += 1
        elif name == "stra":
            sub = "/".join(modules[i + 1:i + 3])
            parts += ["conv2", _STRA_NAMES[sub]]
            i += 2
        elif name == "sasa":
            parts.append("conv2")
            if leaf in _SASA_LEAVES:
                return ".".join(parts + [_SASA_LEAVES[leaf]])
            parts.append(_SASA_NAMES[modules[i + 1]])
            i += 1
        elif name == "downsample_conv":
            parts += ["downsample", "0"]
        elif name == "downsample_bn":
            parts += ["downsample", "1"]
        elif name == "embed_conv":
            parts += ["global_avg_pool", "1"]
        elif name == "embed_bn":
            parts += ["global_avg_pool", "2"]
        elif name == "classifier":
            parts.append(classifier_name)
        else:
            parts.append(name)
        i += 1
    return ".".join(parts + [LEAF_NAMES[leaf]])


def to_flax(name: str, leaf: str, array: np.ndarray, flax_shape: tuple) -> np.ndarray:
    """SASA's relative embeddings (C/2, 1, 1, K, 1) or (C/2, 1, 1, 1, K) -> (K, C/2); the rest as usual."""
    if leaf in _SASA_LEAVES and array.ndim == 5:
        return array.reshape(array.shape[0], -1).T
    return default_to_flax(leaf, array, flax_shape)


LAYOUT = Layout("torchvision ResNet / the authors' StRA-ResNet", torch_name, imagenet_classifier="fc",
                to_flax=to_flax)
register_layout(ResNetBase, LAYOUT)
