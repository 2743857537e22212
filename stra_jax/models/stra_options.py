"""StRA's model options, declared and checked once for every family that takes StRA.

:class:`StRAOptions` is a Linen mixin: a module class with only the option
fields and their checks. A family takes StRA by adding it *after* its trunk
among its bases (so the trunk's and the family's own ``__post_init__`` checks
run first, then StRA's, then Linen's), and asks it which blocks get StRA::

    class MyNet(nn.Module):                    # a trunk, or the family itself
        ...
    class StRAMyNet(MyNet, StRAOptions):
        STRA_UNITS = ("stage", 4)              # what stra_stages indexes, how many
        def spatial_channels(self, stage):     # optional: check channels at construction
            return [(f"stage{stage}", self.width * 2**stage)]   # (block, channels) pairs
        ...                                    # in __call__:
        attention = self.block_attention(stage)   # StRAttention kwargs, or None

The ResNet trunks do the last step already (``models/resnet.py``:
``class ResNet(ResNetBase, StRAOptions)``; ``FaceResNet`` likewise).

The constructor keywords are the same in every family (``stra_stages``,
``heads``, ``kernel_size``, ``reduction``, ``gate``, ``mode_attention``,
``mode_interaction``, ``attention_implementation``, ``attention_grouped_conv``),
so ``create_model("stra_resnet50", heads=4)`` and the ``model.json`` of earlier
runs keep working. Every check runs in ``__post_init__``, i.e. in
``create_model``, not at the first trace; the messages are those of
:mod:`stra_jax.layers.checks` (and of ``StRAttention``, which checks again when
it is built).
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import flax.linen as nn

from stra_jax.layers import checks


class StRAOptions(nn.Module):
    """StRA's fields and checks (a mixin; see the module docstring).

    ``stra_stages``: indices of the family's units (``STRA_UNITS``: ResNet
    stages 0..3, MobileNetV2 rows 0..6) whose blocks replace their spatial op by
    :class:`~stra_jax.layers.StRAttention`. ``heads`` .. ``mode_interaction``
    define the attention (G, K, r, gate, paper Table 3's ablations);
    ``attention_implementation`` / ``attention_grouped_conv`` change only how it
    computes (see ``LocalAttention`` and ``conv1x1``), not parameters or outputs.
    """

    # Keyword-only: a family's own fields keep their positions (num_classes first).
    _: dataclasses.KW_ONLY
    stra_stages: Sequence[int] = ()
    heads: int = 8
    kernel_size: int = 3
    reduction: int = 4
    gate: str = "sigmoid"
    mode_attention: bool = True
    mode_interaction: bool = True
    attention_implementation: str = "auto"  # computation only: see LocalAttention
    attention_grouped_conv: str = "auto"    # computation only: see conv1x1

    # (what ``stra_stages`` indexes, how many there are), for the range check and its message.
    STRA_UNITS: ClassVar[tuple[str, int]] = ("stage", 4)
    # The family option that changes channel counts, named when heads cannot split them.
    STRA_WIDTH_OPTION: ClassVar[str] = "width"

    def __post_init__(self) -> None:
        self.check_stra_options()
        super().__post_init__()

    def check_stra_options(self) -> None:
        """Raise ``ValueError`` naming the option for any bad StRA option: stage
        indices, then (only if some stage has StRA) the attention's
        hyper-parameters and every StRA block's channels
        (:meth:`spatial_channels`)."""
        unit, count = self.STRA_UNITS
        if any(isinstance(s, bool) or s not in range(count) for s in self.stra_stages):
            raise ValueError(f"stra_stages={tuple(self.stra_stages)}: expected {unit} indices in 0..{count - 1}")
        if not self.stra_stages:
            return  # the options are unused: a plain network accepts any
        # Stride 1 and dilation 1 are valid for every block; StRAttention checks its own stride.
        checks.check_local_attention(self.heads, self.kernel_size, self.reduction, 1, 1,
                                     self.attention_implementation)
        checks.check_gate(self.gate)
        checks.check_grouped_conv(self.attention_grouped_conv)
        for unit in sorted(set(self.stra_stages)):
            for where, channels in self.spatial_channels(unit):
                self._check_channels(where, channels)

    def spatial_channels(self, unit: int) -> list[tuple[str, int]]:
        """Hook: ``(block, channels)`` of the input of the spatial op of each
        block of stage / row ``unit``, so that heads / reduction that cannot
        split them fail at construction. Default: none listed (``StRAttention``
        checks them at the first trace); a trunk or family overrides it."""
        return []

    def _check_channels(self, where: str, channels: int) -> None:
        """StRA on ``channels``: heads must split them, and LocalAttention's logit
        branch (channels // reduction) must split into heads too."""
        heads, reduction = self.heads, self.reduction
        if channels % heads:
            raise ValueError(f"stra_stages: block {where} has {channels} hidden channels, not divisible by "
                             f"heads={heads}; choose heads dividing {channels} or another {self.STRA_WIDTH_OPTION}")
        logits = channels // reduction
        if logits < 1 or logits % heads:
            raise ValueError(f"stra_stages: block {where} has {channels} hidden channels; reduction={reduction} "
                             f"gives {logits} logit channels, not a positive multiple of heads={heads}; choose "
                             f"reduction and heads so that ({channels} // reduction) % heads == 0")

    def stra_attention_kwargs(self) -> dict[str, Any]:
        """:class:`~stra_jax.layers.StRAttention` keyword arguments from these
        options (the block adds ``stride``, ``name`` and the dtypes)."""
        return dict(heads=self.heads, kernel_size=self.kernel_size, reduction=self.reduction, gate=self.gate,
                    mode_attention=self.mode_attention, mode_interaction=self.mode_interaction,
                    implementation=self.attention_implementation, grouped_conv=self.attention_grouped_conv)

    def block_attention(self, unit: int) -> dict[str, Any] | None:
        """The trunks' hook: StRAttention kwargs for the blocks of stage / row
        ``unit``, or None where they keep their convolution."""
        return self.stra_attention_kwargs() if unit in self.stra_stages else None
