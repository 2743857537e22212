"""Feature extraction: a jitted forward pass with the batch sharded over the mesh."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import jax
import numpy as np
from jax.experimental import multihost_utils

from stra_jax.data.pipeline import eval_dataset, numpy_batches
from stra_jax.sharding import batch_sharding, check_batch_divisible, make_mesh, replicated


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
) -> np.ndarray:
    """(N, D) float32 features of the images at ``paths``, in order, on every host.

    ``flip=True`` averages the features of each image and its mirror image.
    ``output`` picks the model output ("embedding" or "features").
    ``images``: the encoded images by path when they are not files (TFDS source).
    ``batch_size`` (global) must divide evenly over the mesh's devices. With
    several processes each one decodes only its slice of every batch.
    """
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
        feats = model.apply(v, images, train=False)[output]
        if flip:
            feats = (feats + model.apply(v, images[:, :, ::-1], train=False)[output]) / 2
        return feats

    # Host p reads rows p*local .. (p+1)*local of each padded global batch.
    padded = -(-len(paths) // batch_size) * batch_size
    order = np.arange(padded).reshape(-1, hosts, local)[:, host].ravel()
    mine = [paths[min(i, len(paths) - 1)] for i in order]
    chunks = []
    batches = eval_dataset(mine, batch_size=local, image_size=image_size, images=images)
    for batch in numpy_batches(batches, mine, images):
        images = jax.make_array_from_process_local_data(in_sharding, batch["images"])
        feats = forward(variables, images)
        chunks.append(np.asarray(multihost_utils.process_allgather(feats, tiled=True)) if hosts > 1
                      else np.asarray(feats))
    return np.concatenate(chunks, axis=0)[: len(paths)].astype(np.float32)
