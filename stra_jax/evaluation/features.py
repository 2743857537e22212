"""Feature extraction: a jitted forward pass with the batch sharded over the mesh,
and the flip (mirror image) forward pass every evaluator shares."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from stra_jax.sharding import batch_sharding, check_batch_divisible, make_mesh, replicated


def forward_with_flip(model: Any, variables: dict[str, Any], images: jax.Array, *, output: str = "embedding",
                      flip: bool = False) -> tuple[jax.Array, jax.Array | None]:
    """``(out (N, D), out of the mirror images (N, D) or None)``: model output
    ``output`` of ``images`` (N, H, W, 3) NHWC and, with ``flip``, of the same
    images mirrored left-right (W reversed). Traced inside the caller's jit;
    how the two are fused (mean, sum, concat) is the evaluator's choice."""
    out = model.apply(variables, images, train=False)[output]
    mirrored = model.apply(variables, images[:, :, ::-1], train=False)[output] if flip else None
    return out, mirrored


def extract_features(
    model: Any,
    variables: dict[str, Any],
    paths: Sequence[str],
    *,
    batch_size: int = 128,
    image_size: tuple[int, int] = (256, 128),
    flip: bool = False,
    output: str = "embedding",
    mesh: jax.sharding.Mesh | None = None,
    images: Mapping[str, bytes] | None = None,
    pipeline: Callable[..., Any] | None = None,
) -> np.ndarray:
    """(N, D) float32 features of the images at ``paths``, in order, on every host.

    ``flip=True`` averages the features of each image and its mirror image.
    ``output`` picks the model output ("embedding" or "features").
    ``images``: the encoded images by path when they are not files (TFDS source).
    ``batch_size`` (global) must divide evenly over the mesh's devices. With
    several processes each one decodes only its slice of every batch.
    ``pipeline(paths, batch_size=, image_size=, images=) -> tf.data.Dataset`` of
    ``{"images"}`` batches: the task's evaluation preprocessing (default: ReID's
    ``eval_dataset``, a plain resize).
    """
    from stra_jax.data.images import numpy_batches  # TensorFlow: only when extracting

    if pipeline is None:
        from stra_jax.data.reid.pipeline import eval_dataset as pipeline

    mesh = make_mesh(jax.local_devices()) if mesh is None else mesh
    check_batch_divisible(batch_size, mesh)
    in_sharding = batch_sharding(mesh)
    variables = jax.device_put({"params": variables["params"], "batch_stats": variables["batch_stats"]},
                               replicated(mesh))
    hosts = len({d.process_index for d in mesh.devices.flat})
    host = jax.process_index() if hosts > 1 else 0
    local = batch_size // hosts

    @jax.jit
    def forward(v, images):
        feats, mirrored = forward_with_flip(model, v, images, output=output, flip=flip)
        return feats if mirrored is None else (feats + mirrored) / 2

    # Host p reads rows p*local .. (p+1)*local of each padded global batch.
    padded = -(-len(paths) // batch_size) * batch_size
    order = np.arange(padded).reshape(-1, hosts, local)[:, host].ravel()
    mine = [paths[min(i, len(paths) - 1)] for i in order]
    chunks = []
    batches = pipeline(mine, batch_size=local, image_size=image_size, images=images)
    for batch in numpy_batches(batches, mine, images):
        images = jax.make_array_from_process_local_data(in_sharding, batch["images"])
        feats = forward(variables, images)
        chunks.append(np.asarray(multihost_utils.process_allgather(feats, tiled=True)) if hosts > 1
                      else np.asarray(feats))
    return np.concatenate(chunks, axis=0)[: len(paths)].astype(np.float32)
