"""PyTorch layouts by model family: how each Flax variable is named in a
PyTorch state_dict and how its tensor is laid out there.

A family's layout file (``convert/resnet.py``, ``convert/se_resnet.py``,
``convert/mobilenetv2.py``) ends with one :func:`register_layout` line; the
importer finds a model's layout by walking its class's MRO, so a subclass that
adds no PyTorch names inherits its parent's layout.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from stra_jax.registry import Registry

LEAF_NAMES = {"kernel": "weight", "bias": "bias", "scale": "weight", "mean": "running_mean", "var": "running_var"}


@dataclasses.dataclass(frozen=True)
class Layout:
    """One PyTorch naming scheme.

    ``torch_name(flax_path, classifier_name)``: the state_dict key of one Flax
    variable, ``flax_path`` being the module path plus the leaf name (without
    the collection), e.g. ``('layer4_0', 'conv2', 'kernel')``.
    ``imagenet_classifier``: the key prefix of the ImageNet classifier
    (torchvision's ``fc``), used for the model's ``classifier`` when the model
    has no embedding layer (ImageNet-style head) and the state_dict no
    ``classifier.weight``. ``to_flax(name, leaf, array, flax_shape)``: the
    tensor in Flax layout (default: :func:`default_to_flax`).
    """

    description: str
    torch_name: Callable[[tuple[str, ...], str], str]
    imagenet_classifier: str = "fc"
    to_flax: Callable[[str, str, np.ndarray, tuple], np.ndarray] | None = None

    def convert(self, name: str, leaf: str, array: np.ndarray, flax_shape: tuple) -> np.ndarray:
        if self.to_flax is not None:
            return self.to_flax(name, leaf, array, flax_shape)
        return default_to_flax(leaf, array, flax_shape)


def default_to_flax(leaf: str, array: np.ndarray, flax_shape: tuple) -> np.ndarray:
    """Conv OIHW -> HWIO (a 1x1 conv stored as a Flax Dense -> (in, out));
    Linear (out, in) -> (in, out); everything else as is."""
    if leaf == "kernel":
        if array.ndim == 4:
            array = array.transpose(2, 3, 1, 0)
            if len(flax_shape) == 2 and array.shape[:2] == (1, 1):
                array = array.reshape(array.shape[2], array.shape[3])
        elif array.ndim == 2:
            array = array.T
    return array


def flax_to_torch_shape(leaf: str, flax_shape: tuple) -> tuple:
    """The PyTorch shape a Flax leaf shape corresponds to (for messages)."""
    if leaf == "kernel" and len(flax_shape) == 4:
        kh, kw, cin, cout = flax_shape
        return (cout, cin, kh, kw)
    if leaf == "kernel" and len(flax_shape) == 2:
        return (flax_shape[1], flax_shape[0])
    return tuple(flax_shape)


#: family -> its layout, keyed by the family class's ``module.QualName`` (a class
#: is not a name; :func:`layout_for` walks a model's MRO through these keys).
LAYOUTS: Registry[Layout] = Registry("PyTorch layout")


def family_key(family: type) -> str:
    """The ``LAYOUTS`` key of a family class: ``stra_jax.models.resnet.ResNetBase``."""
    return f"{family.__module__}.{family.__qualname__}"


def register_layout(family: type, layout: Layout) -> None:
    """Use ``layout`` for ``family`` and its subclasses (unless they register their
    own); registering a family again replaces its layout."""
    LAYOUTS.register(family_key(family), layout, overwrite=True)


def layout_for(model: Any) -> Layout:
    """The layout of ``model``'s family; fails naming the family and the supported ones."""
    for cls in type(model).__mro__:
        if family_key(cls) in LAYOUTS:
            return LAYOUTS.get(family_key(cls))
    known = ", ".join(sorted(f"{key.rpartition('.')[2]} ({LAYOUTS.get(key).description})" for key in LAYOUTS))
    raise ValueError(f"the {type(model).__name__} family has no PyTorch layout in stra_jax.convert; "
                     f"known: {known}. Add one with register_layout (see CONTRIBUTING.md)")
