"""PyTorch state_dict -> Flax variables (all PyTorch layout knowledge lives here).

``core.py`` matches names and shapes and reads files; one layout file per
family names its tensors: ``resnet.py`` (torchvision ResNet-50, the authors'
StRA-ResNet-50, Non-local and SASA on that trunk), ``se_resnet.py`` (Cadene's
SE-ResNet-50, as torchreid uses), ``mobilenetv2.py`` (torchvision).

    model, variables = from_torch_state_dict(state_dict, arch="stra_resnet50", num_classes=751)

CLI: ``python -m stra_jax.convert SRC.pth OUT_DIR --arch NAME`` (``__main__.py``).
"""
from stra_jax.convert import mobilenetv2, resnet, se_resnet  # noqa: F401  (register the layouts)
from stra_jax.convert.core import (LoadReport, from_torch_state_dict, load_state_dict, normalise_state_dict,
                                   read_state_dict)
from stra_jax.convert.layouts import LAYOUTS, Layout, layout_for, register_layout
from stra_jax.convert.resnet import torch_name

__all__ = ["LAYOUTS", "Layout", "LoadReport", "from_torch_state_dict", "layout_for", "load_state_dict", "normalise_state_dict",
           "read_state_dict", "register_layout", "torch_name"]
