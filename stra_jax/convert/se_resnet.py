"""Cadene's SE-ResNet-50 names (``pretrainedmodels.senet``, as torchreid uses them).

Cadene: the stem is ``layer0`` (``layer0.conv1``, ``layer0.bn1``; its pool has
no parameters), each block's SE module is ``se_module`` with 1x1 convs
``fc1`` / ``fc2`` (weight (C/r, C, 1, 1) / (C, C/r, 1, 1), with bias), and the
ImageNet classifier is ``last_linear``. The rest is torchvision's ResNet
layout: ``layer3.2.conv2``, ``layer1.0.downsample.0`` (conv) / ``.1`` (BN).
A torchreid checkpoint names its classifier ``classifier`` and, with an
embedding layer, ``global_avg_pool.1/2`` as the ResNet family's
(``convert/resnet.py``, which this delegates to).
"""
from __future__ import annotations

from stra_jax.convert import resnet
from stra_jax.convert.layouts import Layout, register_layout
from stra_jax.models.se_resnet import SEResNet

_STEM = ("conv1", "bn1")  # Flax top-level stem modules -> Cadene's layer0.<name>


def torch_name(flax_path: tuple[str, ...], classifier_name: str = "classifier") -> str:
    """The PyTorch state_dict key of one Flax variable in Cadene's layout, e.g.
    ``('conv1', 'kernel')`` -> ``layer0.conv1.weight``,
    ``('layer1_0', 'se', 'fc1', 'kernel')`` -> ``layer1.0.se_module.fc1.weight``,
    ``('layer2_0', 'downsample_bn', 'mean')`` -> ``layer2.0.downsample.1.running_mean``."""
    if len(flax_path) == 2 and flax_path[0] in _STEM:
        return "layer0." + resnet.torch_name(flax_path, classifier_name)
    # "se" is the only name Cadene spells differently inside a block; the ResNet
    # layout passes names it does not know (se_module, fc1, fc2) through.
    renamed = tuple("se_module" if name == "se" else name for name in flax_path[:-1]) + flax_path[-1:]
    return resnet.torch_name(renamed, classifier_name)


register_layout(SEResNet, Layout("Cadene's SE-ResNet (pretrainedmodels, torchreid)", torch_name,
                                 imagenet_classifier="last_linear"))
