"""Argument checks shared by the attention modules.

Every check raises ``ValueError`` naming the parameter, the value it got and
what is allowed; nothing is silently reshaped or rounded.
"""
from __future__ import annotations

from typing import Any, Mapping

import jax

GATES = ("sigmoid", "softmax")
STRIDES = (1, 2)
IMPLEMENTATIONS = ("auto", "fused", "shift", "patches")
GROUPED_CONVS = ("auto", "split", "einsum", "conv")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_int(name: str, value: Any) -> None:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a positive integer")


def check_kernel_size(kernel_size: Any) -> None:
    if not _is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size={kernel_size!r}: expected a positive odd integer (1, 3, 5, 7, ...) "
            "so that the window has a centre node"
        )


def check_stride(stride: Any) -> None:
    if not _is_int(stride) or stride not in STRIDES:
        raise ValueError(f"stride={stride!r}: expected one of {STRIDES}")


def check_gate(gate: Any) -> None:
    if gate not in GATES:
        raise ValueError(f"gate={gate!r}: expected one of {GATES}")


def check_implementation(implementation: Any) -> None:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation={implementation!r}: expected one of {IMPLEMENTATIONS}")


def check_grouped_conv(grouped_conv: Any) -> None:
    if grouped_conv not in GROUPED_CONVS:
        raise ValueError(f"grouped_conv={grouped_conv!r}: expected one of {GROUPED_CONVS}")


def check_local_attention(heads: Any, kernel_size: Any, reduction: Any, stride: Any, dilation: Any,
                          implementation: Any) -> None:
    """All hyper-parameters of local attention at once."""
    check_positive_int("heads", heads)
    check_kernel_size(kernel_size)
    check_positive_int("reduction", reduction)
    check_stride(stride)
    check_positive_int("dilation", dilation)
    check_implementation(implementation)


def check_feature_map(x: Any, heads: int, module: str) -> None:
    """x must be (B, H, W, C) with H, W >= 1 and C divisible by ``heads``."""
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(
            f"{module}: input shape {shape}: expected a rank-4 NHWC array (batch, height, width, channels)"
        )
    _, height, width, channels = shape
    if height < 1 or width < 1:
        raise ValueError(f"{module}: input spatial size {height}x{width}: expected height and width >= 1")
    if channels % heads != 0:
        raise ValueError(
            f"{module}: channels={channels} is not divisible by heads={heads}: "
            "expected channels to be a multiple of heads"
        )


def for_backend(value: str, table: Mapping[str, str]) -> str:
    """``"auto"`` -> ``table``'s entry for the default backend (the CPU one for an
    unlisted backend); any other (already checked) value unchanged."""
    if value != "auto":
        return value
    return table.get(jax.default_backend(), table["cpu"])
