"""Model names -> constructors: ``register_model`` and ``create_model``.

A *family* is a constructor (usually a Linen module class) that follows the
model contract of :mod:`stra_jax.models`; a registered *name* is a family plus
the defaults that define one architecture. Overrides are checked against the
family's own options, so a typo fails naming the option and listing the valid
ones::

    register_model("my_net", MyNet, depth=18)          # from your own code
    model = create_model("my_net", num_classes=10)

Freezable groups come from the family (a ``FREEZABLE`` class attribute and a
``frozen_param_mask(params, groups)`` method); see :func:`frozen_param_mask`.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from stra_jax.models.face_resnet import FaceResNet
from stra_jax.models.mobilenetv2 import MobileNetV2
from stra_jax.models.nonlocal_resnet import NonLocalResNet
from stra_jax.models.resnet import ResNet
from stra_jax.models.sasa_resnet import SASAResNet
from stra_jax.models.se_resnet import SEResNet

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One registered name: the family's constructor and its defaults."""

    name: str
    constructor: Callable[..., Any]
    defaults: Mapping[str, Any]

    @property
    def options(self) -> list[str]:
        """Keyword options of the family's constructor."""
        return family_options(self.constructor)


_MODELS: dict[str, ModelEntry] = {}


def family_options(constructor: Callable[..., Any]) -> list[str]:
    """The keyword options a constructor accepts: a Linen module's fields
    (less ``parent``/``name``) or a function's parameters."""
    if dataclasses.is_dataclass(constructor):
        return sorted(f.name for f in dataclasses.fields(constructor) if f.init and f.name not in ("parent", "name"))
    params = inspect.signature(constructor).parameters.values()
    return sorted(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def register_model(name: str, constructor: Callable[..., Any], *, overwrite: bool = False,
                   **defaults: Any) -> None:
    """Register ``name`` as ``constructor(**defaults)``; ``create_model(name, **kw)``
    then builds ``constructor(**{**defaults, **kw})``.

    Defaults must be options of the constructor; JSON-friendly values only
    (strings for dtypes, lists/tuples for sequences), since they are written to
    ``model.json`` and checkpoint metadata. Re-registering a name fails unless
    ``overwrite=True``.
    """
    if name in _MODELS and not overwrite:
        raise ValueError(f"model {name!r} is already registered (pass overwrite=True to replace it)")
    entry = ModelEntry(name, constructor, dict(defaults))
    _check_options(entry, defaults)
    _MODELS[name] = entry


def list_models() -> list[str]:
    return sorted(_MODELS)


def get_entry(name: str) -> ModelEntry:
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}: known models are {', '.join(list_models())}")
    return _MODELS[name]


def _check_options(entry: ModelEntry, overrides: Mapping[str, Any]) -> None:
    options = entry.options
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        family = getattr(entry.constructor, "__name__", str(entry.constructor))
        raise ValueError(f"{entry.name}: unknown option(s) {unknown} for the {family} family; "
                         f"valid options: {options}")


def model_kwargs(name: str, **overrides: Any) -> dict[str, Any]:
    """The full, JSON-friendly keyword set that :func:`create_model` would use."""
    entry = get_entry(name)
    _check_options(entry, overrides)
    kwargs = {**entry.defaults, **overrides}
    if "dtype" in kwargs or "dtype" in entry.options:
        dtype = kwargs.get("dtype", "float32")
        if not isinstance(dtype, str):
            dtype = jnp.dtype(dtype).name
        if dtype not in DTYPES:
            raise ValueError(f"{name}: dtype={dtype!r}: expected one of {sorted(DTYPES)}")
        kwargs["dtype"] = dtype
    # JSON has no tuples: normalise sequences so saved and fresh kwargs compare equal.
    return {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in kwargs.items()}


def create_model(name: str, **overrides: Any) -> Any:
    """Build a registered model; keyword arguments override its defaults.

    ``name``: one of :func:`list_models`. Options of the ResNet family:
    ``num_classes``, ``last_stride``, ``stra_stages``, ``heads``,
    ``kernel_size``, ``gate``, ``mode_attention``, ``mode_interaction``,
    ``embedding_dim`` (``None`` for the paper's 2048-d GAP feature), ``head``
    ("reid" | "face"), ``classifier`` ("linear" | "margin"), ``dtype``
    ("bfloat16" computes in bf16 with float32 parameters), ``width`` /
    ``stage_sizes`` (narrow test networks), and the computation-only
    ``attention_implementation`` / ``attention_grouped_conv`` ("auto" picks per
    backend; see ``LocalAttention``). The face family (``resnet50_face``,
    ``stra_resnet50_face``: :class:`FaceResNet`, 112x112 inputs) has
    ``stem_stride`` and ``input_size`` instead of ``last_stride`` and ``head``.
    The Table 2 networks have the ResNet trunk's and head's options plus their
    own: ``se_reduction`` (``se_resnet50``), ``nonlocal_blocks`` /
    ``nonlocal_reduction`` (``nonlocal_resnet50``), ``sasa_stages`` / ``heads``
    / ``kernel_size`` (``sasa_resnet50``); MobileNetV2 has ``width_mult``,
    ``stage_blocks``, ``last_stride``, StRA's options with ``stra_stages`` (rows
    0..6) and the ReID head's. An option the family does not have fails with
    the family's options.
    """
    kwargs = model_kwargs(name, **overrides)
    if "dtype" in kwargs:
        kwargs["dtype"] = DTYPES[kwargs["dtype"]]
    return get_entry(name).constructor(**kwargs)


def freezable_groups(model: Any) -> tuple[str, ...]:
    """The groups of pretrained layers ``model`` can freeze (empty if none)."""
    return tuple(getattr(model, "FREEZABLE", ()))


def frozen_param_mask(model: Any, params: Any, frozen: Sequence[str]) -> Any:
    """Pytree of bools like ``params``: True for the parameters that the family
    freezes in ``frozen`` groups (for the optimiser's freezing)."""
    frozen = tuple(frozen)
    groups = freezable_groups(model)
    unknown = sorted(set(frozen) - set(groups))
    if unknown:
        family = type(model).__name__
        raise ValueError(f"frozen groups {unknown}: the {family} family can freeze only {list(groups) or 'nothing'}")
    if not frozen:
        return jax.tree.map(lambda _: False, params)
    return model.frozen_param_mask(params, frozen)


# The built-in architectures.
# torchvision ResNet-50 (stride on the 3x3 conv), GAP feature as embedding.
register_model("resnet50", ResNet, stage_sizes=(3, 4, 6, 3), last_stride=2, stra_stages=(), embedding_dim=None)
# The authors' StRA-ResNet-50 (stru_resnet50): StRA in the last stage, last
# stride 1, G 8, K 3, r 4, 512-d BN embedding.
register_model("stra_resnet50", ResNet, stage_sizes=(3, 4, 6, 3), last_stride=1, stra_stages=(3,), heads=8,
               kernel_size=3, reduction=4, embedding_dim=512)
# Face networks (paper Section 5.2): ArcFace-style trunk with a 7x7 last stage at
# 112x112 and the BN-Dropout-FC-BN 512-d head, margin classifier; from scratch.
register_model("resnet50_face", FaceResNet, stage_sizes=(3, 4, 6, 3), stra_stages=(), input_size=(112, 112),
               embedding_dim=512, head_dropout=0.4, classifier="margin")
register_model("stra_resnet50_face", FaceResNet, stage_sizes=(3, 4, 6, 3), stra_stages=(3,), heads=8,
               kernel_size=3, reduction=4, input_size=(112, 112), embedding_dim=512, head_dropout=0.4,
               classifier="margin")

# The paper's comparison networks (Table 2, Fig. 3). Registered as their original
# papers define them (ImageNet-style head: last stride 2, GAP feature); the ReID
# configs (``:se``, ``:nonlocal``, ...) give every row StRA's head (last stride 1,
# 512-d BN embedding), so that Table 2's rows differ only in the attention.
register_model("se_resnet50", SEResNet, stage_sizes=(3, 4, 6, 3), se_reduction=16)
# Wang et al.'s image (COCO) configuration: one block before the last block of res4.
register_model("nonlocal_resnet50", NonLocalResNet, stage_sizes=(3, 4, 6, 3), nonlocal_blocks=(0, 0, 1, 0))
# SASA in the last stage "following the implementation in section 5.1": as StRA-ResNet-50.
register_model("sasa_resnet50", SASAResNet, stage_sizes=(3, 4, 6, 3), sasa_stages=(3,), heads=8, kernel_size=7,
               last_stride=1, embedding_dim=512)
register_model("mobilenetv2_x1_0", MobileNetV2, width_mult=1.0)
register_model("mobilenetv2_x1_4", MobileNetV2, width_mult=1.4)
# StRA in the last stage: every block at 1/32 (torchvision's rows 160 x3 and 320 x1),
# in place of the depthwise 3x3. r = 2, not ResNet's 4: x1.4's first 1/32 block
# has 816 hidden channels, and 816 / 4 = 204 logit channels do not split into 8
# modes; one r for both widths keeps x1.0 and x1.4 comparable.
register_model("stra_mobilenetv2_x1_0", MobileNetV2, width_mult=1.0, stra_stages=(5, 6), heads=8, kernel_size=3,
               reduction=2, last_stride=1, embedding_dim=512)
register_model("stra_mobilenetv2_x1_4", MobileNetV2, width_mult=1.4, stra_stages=(5, 6), heads=8, kernel_size=3,
               reduction=2, last_stride=1, embedding_dim=512)
