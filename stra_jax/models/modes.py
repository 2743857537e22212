"""The mode masks and gates of a network's StRA blocks (paper Sec. 6, Fig. 4).

Every :class:`~stra_jax.layers.ModeAttention` sows, when the ``intermediates``
collection is mutable, its spatial mode masks M^g (``mode_masks``), the gates r
of its first pass (``mode_gates``) and, with mode interaction, those of the
second pass (``mode_gates_interaction``), each (B, H, W, G) NHWC. This module
finds those blocks in a model and reads them out for a batch of images::

    from stra_jax.models import load_model
    from stra_jax.models.modes import extract_modes, stra_blocks

    model, variables = load_model("runs/synthetic/model_best")
    stra_blocks(model, variables)          # ["layer4_0/stra/mode", ..., "layer4_2/stra/mode"]
    maps = extract_modes(model, variables, images)   # images: (N, H, W, 3) normalised
    maps.masks.shape                       # (N, h, w, G), each mode sums to 1 over the h*w positions

Images are what the model's evaluation takes (normalised NHWC float32); the
preprocessing lives with the data pipelines (``stra_jax.tools.visualize_modes``).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stra_jax.models.io import init_image_shape

__all__ = ["ModeMaps", "extract_modes", "resolve_block", "stra_blocks"]

MASKS, GATES, GATES_INTERACTION = "mode_masks", "mode_gates", "mode_gates_interaction"


@dataclasses.dataclass(frozen=True)
class ModeMaps:
    """The mode attention of one StRA block on N images (NumPy, float32).

    masks: (N, h, w, G) spatial mode masks M^g, each summing to 1 over positions.
    gates: (N, h, w, G) node-to-mode gates r of the first pass (Eq. 5), in [0, 1].
    gates_interaction: (N, h, w, G) gates of the mode-interaction pass (Eq. 6),
        or None when the block has no interaction.
    block: the block's module path, e.g. ``"layer4_2/stra/mode"``.
    """

    masks: np.ndarray
    gates: np.ndarray
    gates_interaction: np.ndarray | None
    block: str

    @property
    def heads(self) -> int:
        """G, the number of modes."""
        return int(self.masks.shape[-1])

    def diversity(self) -> np.ndarray:
        """(N,) L_d = G - sum_i max_g M^g_i per image (as the block sows it)."""
        n = self.masks.shape[0]
        return self.heads - self.masks.reshape(n, -1, self.heads).max(-1).sum(-1)


def _blocks_in(tree: Any, prefix: tuple[str, ...] = ()) -> list[str]:
    """Paths of the dicts that hold a ``mode_masks`` sow, in the dict's (insertion) order."""
    found = []
    for key, value in tree.items():
        if key == MASKS:
            found.append("/".join(prefix))
        elif hasattr(value, "items"):
            found.extend(_blocks_in(value, prefix + (str(key),)))
    return found


def _node(tree: Any, path: str) -> Any:
    for key in path.split("/"):
        tree = tree[key]
    return tree


def stra_blocks(model: Any, variables: dict[str, Any]) -> list[str]:
    """Module paths of the model's mode attentions (StRA blocks with mode attention), in
    the order the network runs them; ``[]`` for a network without any.

    Traced once on a small image (``init_image_shape``), nothing is compiled or run.
    A StRA block built with ``mode_attention=False`` has no masks and is not listed.
    """
    order: list[str] = []

    def trace(v, x):
        _, state = model.apply(v, x, train=False, mutable=["intermediates"])
        # Read the paths while tracing: Flax fills the collection in call order, and
        # jax would sort the dict keys on the way out ("features_10" < "features_9").
        order.extend(_blocks_in(state.get("intermediates", {})))
        return 0

    dummy = jax.ShapeDtypeStruct(init_image_shape(model), jnp.float32)
    jax.eval_shape(trace, _model_variables(variables), dummy)
    return order


def _model_variables(variables: dict[str, Any]) -> dict[str, Any]:
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def resolve_block(blocks: Sequence[str], block: str | None) -> str:
    """The full path of ``block`` among ``blocks`` (from :func:`stra_blocks`): ``None``
    is the last; a block may be named by its full path or by a unique leading part
    of it (``"layer4_1"``). Raises ``ValueError`` listing the known blocks."""
    if not blocks:
        raise ValueError("no StRA blocks with mode attention: no mode masks to extract")
    if block is None:
        return blocks[-1]
    name = block.strip("/")
    if name in blocks:
        return name
    matches = [b for b in blocks if b.startswith(name + "/")]
    if len(matches) == 1:
        return matches[0]
    raise ValueError(f"block {block!r}: " + ("names several StRA blocks" if matches else "no such StRA block")
                     + f"; known blocks: {list(blocks)}")


def extract_modes(model: Any, variables: dict[str, Any], images: np.ndarray | jax.Array,
                  block: str | None = None, *, batch_size: int = 16) -> ModeMaps:
    """Masks and gates of one StRA block on ``images`` (N, H, W, 3) normalised float32.

    ``block``: a path from :func:`stra_blocks` (or a unique leading part of one, e.g.
    ``"layer4_1"``); default the network's last StRA block. The model runs in
    evaluation mode (``train=False``, running BatchNorm statistics), jitted, in
    batches of ``batch_size`` (the last one padded). Raises ``ValueError`` for a
    network without StRA blocks or an unknown block (listing the known ones).
    """
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise ValueError(f"images: expected (N, H, W, 3) with N >= 1, got shape {images.shape}")
    resolved: list[str] = []

    @jax.jit
    def forward(v, x):
        _, state = model.apply(v, x, train=False, mutable=["intermediates"])
        inter = state.get("intermediates", {})
        # Resolved while tracing (one trace, in call order; see stra_blocks).
        blocks = _blocks_in(inter)
        if not blocks:
            raise ValueError(f"{type(model).__name__} model has no StRA blocks with mode attention: "
                             "no mode masks to extract")
        resolved[:] = [resolve_block(blocks, block)]
        node = _node(inter, resolved[0])
        # A sow keeps a tuple of the values of every call; each block is called once.
        return {k: node[k][-1].astype(jnp.float32) for k in (MASKS, GATES, GATES_INTERACTION) if k in node}

    v = _model_variables(variables)
    n = images.shape[0]
    size = min(batch_size, n)
    chunks = []
    for start in range(0, n, size):
        batch = images[start:start + size]
        pad = size - batch.shape[0]
        if pad:
            batch = np.concatenate([batch, np.repeat(batch[:1], pad, axis=0)])
        chunks.append({k: np.asarray(a)[:size - pad] for k, a in forward(v, batch).items()})
    out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    return ModeMaps(masks=out[MASKS], gates=out[GATES], gates_interaction=out.get(GATES_INTERACTION),
                    block=resolved[0])
