"""Model names -> constructors. ``create_model("stra_resnet50", num_classes=751)``."""
from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp

from stra_jax.models.resnet import ResNet

# Each entry: the defaults that define the architecture; keyword arguments override.
_ARCHS: dict[str, dict[str, Any]] = {
    # torchvision ResNet-50 (stride on the 3x3 conv), GAP feature as embedding.
    "resnet50": dict(stage_sizes=(3, 4, 6, 3), last_stride=2, stra_stages=(), embedding_dim=None),
    # The authors' StRA-ResNet-50 (stru_resnet50): StRA in the last stage, last
    # stride 1, G 8, K 3, r 4, 512-d BN embedding.
    "stra_resnet50": dict(stage_sizes=(3, 4, 6, 3), last_stride=1, stra_stages=(3,), heads=8,
                          kernel_size=3, reduction=4, embedding_dim=512),
}
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
_FIELDS = {f.name for f in dataclasses.fields(ResNet)} - {"parent", "name"}


def list_models() -> list[str]:
    return sorted(_ARCHS)


def model_kwargs(name: str, **overrides: Any) -> dict[str, Any]:
    """The full, JSON-friendly keyword set that :func:`create_model` would use."""
    if name not in _ARCHS:
        raise ValueError(f"unknown model {name!r}: known models are {', '.join(list_models())}")
    unknown = sorted(set(overrides) - _FIELDS)
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; valid options: {sorted(_FIELDS)}")
    kwargs = {**_ARCHS[name], **overrides}
    dtype = kwargs.get("dtype", "float32")
    if not isinstance(dtype, str):
        dtype = jnp.dtype(dtype).name
    if dtype not in _DTYPES:
        raise ValueError(f"{name}: dtype={dtype!r}: expected one of {sorted(_DTYPES)}")
    kwargs["dtype"] = dtype
    for key in ("stage_sizes", "stra_stages"):
        if key in kwargs:
            kwargs[key] = tuple(int(v) for v in kwargs[key])
    return kwargs


def create_model(name: str, **overrides: Any) -> ResNet:
    """Build a registered model; keyword arguments override its defaults.

    ``name``: one of :func:`list_models`. Common overrides: ``num_classes``,
    ``last_stride``, ``stra_stages``, ``heads``, ``kernel_size``, ``gate``,
    ``mode_attention``, ``mode_interaction``, ``embedding_dim`` (``None`` for the
    paper's 2048-d GAP feature), ``dtype`` ("bfloat16" computes in bf16 with
    float32 parameters), ``width`` / ``stage_sizes`` (narrow test networks).
    """
    kwargs = model_kwargs(name, **overrides)
    kwargs["dtype"] = _DTYPES[kwargs["dtype"]]
    return ResNet(**kwargs)

