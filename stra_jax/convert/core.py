"""Loading a PyTorch state_dict into Flax variables, whatever the family.

The family-specific names live in the layout files (``convert/resnet.py``,
``convert/se_resnet.py``, ``convert/mobilenetv2.py``); this file matches names
and shapes, reports what stayed at initialisation, and reads ``.pth`` /
``.safetensors`` files. BatchNorm ``weight/bias/running_mean/running_var``
-> ``scale/bias/mean/var`` and ``num_batches_tracked`` is ignored.

    model, variables = from_torch_state_dict(state_dict, arch="stra_resnet50", num_classes=751)
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from stra_jax.convert.layouts import flax_to_torch_shape, layout_for
from stra_jax.convert.resnet import LAYOUT as RESNET_LAYOUT
from stra_jax.models import abstract_variables, create_model, init_variables

log = logging.getLogger(__name__)

_IGNORED_SUFFIXES = ("num_batches_tracked",)


@dataclasses.dataclass
class LoadReport:
    """What a load did. Names are PyTorch names; shapes are PyTorch shapes."""

    loaded: list[str]
    missing: list[str]  # expected by the model, absent from the state_dict: kept at init
    mismatched: list[tuple[str, tuple, tuple]]  # (name, expected shape, got shape): kept at init
    unexpected: list[str]  # in the state_dict, not used by the model

    @property
    def initialised(self) -> list[str]:
        """Every parameter that stayed at its initialisation."""
        return self.missing + [name for name, _, _ in self.mismatched]

    def describe(self, limit: int = 50) -> str:
        lines = [f"loaded {len(self.loaded)} tensors"]
        if self.missing:
            lines.append(f"missing from the state_dict ({len(self.missing)}):")
            lines += [f"  {name}" for name in self.missing[:limit]]
        if self.mismatched:
            lines.append(f"wrong shape ({len(self.mismatched)}): name, expected, got")
            lines += [f"  {n}: expected {e}, got {g}" for n, e, g in self.mismatched[:limit]]
        if self.unexpected:
            lines.append(f"not used by the model ({len(self.unexpected)}):")
            lines += [f"  {name}" for name in self.unexpected[:limit]]
        return "\n".join(lines)


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor, without importing torch
        value = value.detach().cpu().float().numpy() if value.is_floating_point() else value.cpu().numpy()
    return np.asarray(value)


def normalise_state_dict(state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Unwrap torchreid-style ``{"state_dict": ...}`` and strip ``module.`` prefixes."""
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    out = {}
    for key, value in state_dict.items():
        if key.endswith(_IGNORED_SUFFIXES):
            continue
        while key.startswith("module."):
            key = key[len("module."):]
        out[key] = _as_numpy(value)
    return out


def load_state_dict(
    template: Mapping[str, Any], state_dict: Mapping[str, Any], *, strict: bool = True, model: Any = None
) -> tuple[dict[str, Any], LoadReport]:
    """Fill a Flax ``{"params", "batch_stats"}`` template from a PyTorch state_dict.

    ``model``: the module the template belongs to; its family picks the PyTorch
    layout (``convert/layouts.py``); ``None`` means the ResNet family's.
    Matching is by name and shape. ``strict=True`` raises ``ValueError`` listing
    every missing, wrongly shaped and unused tensor; ``strict=False`` keeps the
    template's values where nothing matches and says so in the report.
    """
    layout = RESNET_LAYOUT if model is None else layout_for(model)
    sd = normalise_state_dict(state_dict)
    # The ImageNet classifier (torchvision's ``fc``) is the classifier only of a
    # model with an ImageNet-style head (no embedding layer), as in the authors' loader.
    imagenet_head = "embed_conv" not in template.get("params", {})
    classifier_name = (layout.imagenet_classifier if imagenet_head and "classifier.weight" not in sd
                       else "classifier")
    loaded, missing, mismatched, used = [], [], [], set()

    def fill(path, leaf_value):
        keys = tuple(str(getattr(p, "key", p)) for p in path)
        name = layout.torch_name(keys[1:], classifier_name)  # keys[0] is the collection
        leaf = keys[-1]
        flax_shape = tuple(leaf_value.shape)
        if name not in sd:
            missing.append(name)
            return leaf_value
        used.add(name)
        array = layout.convert(name, leaf, sd[name], flax_shape)
        if tuple(array.shape) != flax_shape:
            mismatched.append((name, flax_to_torch_shape(leaf, flax_shape), tuple(sd[name].shape)))
            return leaf_value
        loaded.append(name)
        return jnp.asarray(array, dtype=leaf_value.dtype)

    variables = jax.tree_util.tree_map_with_path(fill, dict(template))
    report = LoadReport(loaded, missing, mismatched, sorted(set(sd) - used))
    if strict and (missing or mismatched or report.unexpected):
        raise ValueError("state_dict does not match the model (strict=True):\n" + report.describe())
    return variables, report


def from_torch_state_dict(
    state_dict: Mapping[str, Any],
    arch: str = "stra_resnet50",
    num_classes: int = 0,
    strict: bool = True,
    return_report: bool = False,
    **model_kwargs: Any,
):
    """Build ``arch`` and load a PyTorch state_dict into it.

    ``state_dict`` maps PyTorch names to numpy arrays or torch tensors in the
    layout of the model's family: torchvision's / the authors' ResNets (and
    the Non-local and SASA networks on that trunk), Cadene's SE-ResNet,
    torchvision's MobileNetV2. A torchreid checkpoint dict with a
    ``state_dict`` key and ``module.`` prefixes works too. Returns ``(model,
    variables)``, plus the :class:`LoadReport` with ``return_report``. With
    ``strict=False`` the parameters that stayed at their initialisation are
    logged (ImageNet weights into an attention network: the new attention
    modules and the head).
    """
    model = create_model(arch, num_classes=num_classes, **model_kwargs)
    layout_for(model)  # a family without a PyTorch layout fails here, naming the known ones
    # strict: every leaf is replaced or the load fails, so shapes suffice (no compile).
    template = abstract_variables(model) if strict else init_variables(model, jax.random.key(0))
    variables, report = load_state_dict(template, state_dict, strict=strict, model=model)
    if not strict:
        log.warning("partial load into %s:\n%s", arch, report.describe())
    return (model, variables, report) if return_report else (model, variables)


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """Read ``.pth`` / ``.pth.tar`` (needs torch) or ``.safetensors`` (does not)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a .pth, .pth.tar or .safetensors state_dict)")
    if path.name.endswith(".safetensors"):
        from safetensors.numpy import load_file

        try:
            return normalise_state_dict(load_file(str(path)))
        except Exception as err:  # safetensors raises its own error types for a damaged header
            raise ValueError(f"{path}: not a readable .safetensors file ({type(err).__name__}: {err})") from None
    if path.name.endswith((".pth", ".pth.tar", ".pt", ".tar", ".bin")):  # .bin: torch.save too (Hugging Face)
        try:
            import torch
        except ImportError as err:
            raise ImportError(
                f"{path}: reading a PyTorch checkpoint needs torch (pip install torch); "
                "or convert it to .safetensors, which needs no torch"
            ) from err
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:  # pickle, zip and unicode errors for a file that is not a torch checkpoint
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {reason[:200]})") from None
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path}: expected a state_dict (a mapping of names to tensors), got {type(obj).__name__}")
        return normalise_state_dict(obj)
    raise ValueError(f"{path}: unknown extension; expected .pth, .pth.tar or .safetensors")


