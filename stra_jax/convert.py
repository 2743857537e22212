"""PyTorch state_dict -> Flax variables for ResNet-50 and StRA-ResNet-50.

All knowledge of the PyTorch layouts lives here: the authors' names
(``layer4.0.conv2.mask_conv.0.weight``, ``...conv2.moe.gap_weight.*``,
``global_avg_pool.1/2``, ``classifier``) and torchvision's (``fc``, 3x3
``conv2``), OIHW -> HWIO kernels, (out, in) -> (in, out) Linear weights and
BatchNorm ``weight/bias/running_mean/running_var`` -> ``scale/bias/mean/var``.

    model, variables = from_torch_state_dict(state_dict, arch="stra_resnet50", num_classes=751)

CLI (writes a model checkpoint that training and evaluation load)::

    python -m stra_jax.convert SRC.pth OUT_DIR --arch stra_resnet50 --num-classes 751
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from stra_jax.models import ResNet, abstract_variables, create_model, init_variables

log = logging.getLogger(__name__)

# Flax module names (paper terms) -> the authors' PyTorch child names.
_STRA_NAMES = {
    "local/logit_conv1": "mask_conv.0", "local/logit_bn1": "mask_conv.1",
    "local/logit_conv2": "mask_conv.3", "local/logit_bn2": "mask_conv.4",
    "local/value_conv": "value_conv",
    "mode/mask_conv1": "moe.gap_weight.0", "mode/mask_bn1": "moe.gap_weight.1",
    "mode/mask_conv2": "moe.gap_weight.3", "mode/mask_bn2": "moe.gap_weight.4",
    "mode/gate_bn1": "moe.bn", "mode/gate_bn2": "moe.bn2",
}
_LEAF_NAMES = {"kernel": "weight", "bias": "bias", "scale": "weight", "mean": "running_mean",
               "var": "running_var"}
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


def torch_name(flax_path: tuple[str, ...], classifier_name: str = "classifier") -> str:
    """The PyTorch state_dict key of one Flax variable, e.g.
    ``('layer4_0', 'stra', 'mode', 'gate_bn1', 'scale')`` -> ``layer4.0.conv2.moe.bn.weight``."""
    *modules, leaf = flax_path
    parts: list[str] = []
    i = 0
    while i < len(modules):
        name = modules[i]
        block = re.fullmatch(r"layer(\d)_(\d+)", name)
        if block:
            parts += [f"layer{block.group(1)}", block.group(2)]
        elif name == "stra":
            sub = "/".join(modules[i + 1:i + 3])
            parts += ["conv2", _STRA_NAMES[sub]]
            i += 2
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
    return ".".join(parts + [_LEAF_NAMES[leaf]])


def _to_flax(leaf: str, array: np.ndarray, flax_shape: tuple) -> np.ndarray:
    """Transpose one PyTorch tensor into the Flax layout of ``flax_shape``."""
    if leaf == "kernel":
        if array.ndim == 4:  # conv OIHW -> HWIO
            array = array.transpose(2, 3, 1, 0)
            if len(flax_shape) == 2:  # 1x1 conv stored as Dense (the embedding conv)
                array = array.reshape(array.shape[2], array.shape[3]) if array.shape[:2] == (1, 1) else array
        elif array.ndim == 2:  # Linear (out, in) -> (in, out)
            array = array.T
    return array


def _flax_to_torch_shape(leaf: str, flax_shape: tuple) -> tuple:
    if leaf == "kernel" and len(flax_shape) == 4:
        kh, kw, cin, cout = flax_shape
        return (cout, cin, kh, kw)
    if leaf == "kernel" and len(flax_shape) == 2:
        return (flax_shape[1], flax_shape[0])
    return tuple(flax_shape)


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
    template: Mapping[str, Any], state_dict: Mapping[str, Any], *, strict: bool = True
) -> tuple[dict[str, Any], LoadReport]:
    """Fill a Flax ``{"params", "batch_stats"}`` template from a PyTorch state_dict.

    Matching is by name and shape. ``strict=True`` raises ``ValueError`` listing
    every missing, wrongly shaped and unused tensor; ``strict=False`` keeps the
    template's values where nothing matches and says so in the report.
    """
    sd = normalise_state_dict(state_dict)
    # torchvision calls the classifier ``fc``; it is the classifier only of a model
    # with torchvision's head (no embedding layer), as in the authors' loader.
    torchvision_head = "embed_conv" not in template.get("params", {})
    classifier_name = "fc" if torchvision_head and "classifier.weight" not in sd else "classifier"
    loaded, missing, mismatched, used = [], [], [], set()

    def fill(path, leaf_value):
        keys = tuple(str(getattr(p, "key", p)) for p in path)
        name = torch_name(keys[1:], classifier_name)  # keys[0] is the collection
        leaf = keys[-1]
        flax_shape = tuple(leaf_value.shape)
        if name not in sd:
            missing.append(name)
            return leaf_value
        used.add(name)
        array = _to_flax(leaf, sd[name], flax_shape)
        if tuple(array.shape) != flax_shape:
            mismatched.append((name, _flax_to_torch_shape(leaf, flax_shape), tuple(sd[name].shape)))
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

    ``state_dict`` maps PyTorch names to numpy arrays or torch tensors, in the
    authors' or torchvision's layout (a torchreid checkpoint dict with a
    ``state_dict`` key and ``module.`` prefixes works too). Returns
    ``(model, variables)``, plus the :class:`LoadReport` with ``return_report``.
    With ``strict=False`` the parameters that stayed at their initialisation are
    logged (torchvision ImageNet weights into ``stra_resnet50``: the last stage's
    attention and the head).
    """
    model = create_model(arch, num_classes=num_classes, **model_kwargs)
    if not isinstance(model, ResNet):
        raise ValueError(f"arch={arch!r} is a {type(model).__name__}; this importer maps PyTorch names of the "
                         "ResNet family only (resnet50, stra_resnet50). Another family needs its own name "
                         "mapping (see CONTRIBUTING.md)")
    # strict: every leaf is replaced or the load fails, so shapes suffice (no compile).
    template = abstract_variables(model) if strict else init_variables(model, jax.random.key(0))
    variables, report = load_state_dict(template, state_dict, strict=strict)
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
    if path.name.endswith((".pth", ".pth.tar", ".pt", ".tar")):
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


def main(argv: list[str] | None = None) -> int:
    from stra_jax.models.io import save_model

    parser = argparse.ArgumentParser(description="Convert a PyTorch ResNet/StRA-ResNet checkpoint to orbax.")
    parser.add_argument("src", help=".pth, .pth.tar or .safetensors")
    parser.add_argument("out_dir", help="directory to create (must not exist unless --overwrite)")
    parser.add_argument("--arch", default="stra_resnet50")
    parser.add_argument("--num-classes", type=int, default=0)
    parser.add_argument("--no-strict", action="store_true", help="load what matches; report the rest")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        state_dict = read_state_dict(args.src)
        model, variables, report = from_torch_state_dict(
            state_dict, arch=args.arch, num_classes=args.num_classes, strict=not args.no_strict,
            return_report=True)
        save_model(args.out_dir, args.arch, dict(num_classes=args.num_classes), variables,
                   overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out_dir}: {args.arch}, {len(report.loaded)} tensors loaded"
          + (f", {len(report.initialised)} left at initialisation" if report.initialised else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
