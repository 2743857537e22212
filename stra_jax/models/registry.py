"""Model names -> constructors: ``register_model`` and ``create_model``.

A *family* is a constructor (usually a Linen module class) that follows the
model contract of :mod:`stra_jax.models`; a registered *name* is a family plus
the defaults that define one architecture. Overrides are checked against the
family's own options, so a typo fails naming the option and listing the valid
ones::

    register_model("my_net", MyNet, depth=18)          # at the end of MyNet's module
    model = create_model("my_net", num_classes=10)

Every name lives in ``MODELS`` (a :class:`~stra_jax.registry.Registry`); the
built-in families register theirs at the end of their own modules, which
:mod:`stra_jax.models` imports (so importing this module fills it: Python
imports the package first).

Freezable groups come from the family (a ``FREEZABLE`` class attribute and a
``frozen_param_mask(params, groups)`` method); see :func:`frozen_param_mask`.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from stra_jax.registry import Registry

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


#: name -> :class:`ModelEntry`. Each family's module registers its architectures
#: at its end; importing :mod:`stra_jax.models` (which any import of this module
#: does first) imports every built-in family.
MODELS: Registry[ModelEntry] = Registry("model")


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
    entry = ModelEntry(name, constructor, dict(defaults))
    _check_options(entry, defaults)
    MODELS.register(name, entry, overwrite=overwrite)


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return MODELS.names()


def get_entry(name: str) -> ModelEntry:
    """The entry of ``name``; an unknown name fails listing the known ones."""
    return MODELS.get(name)


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
    ``embedding_dim`` (``None`` for the paper's 2048-d GAP feature),
    ``classifier`` ("linear" | "margin"), ``dtype``
    ("bfloat16" computes in bf16 with float32 parameters), ``width`` /
    ``stage_sizes`` (narrow test networks), and the computation-only
    ``attention_implementation`` / ``attention_grouped_conv`` ("auto" picks per
    backend; see ``LocalAttention``). The face family (``resnet50_face``,
    ``stra_resnet50_face``: :class:`FaceResNet`, 112x112 inputs) has
    ``stem_stride``, ``input_size`` and ``head_dropout`` instead of ``last_stride``.
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
