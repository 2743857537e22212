"""Feature extraction: a jitted forward pass with the batch sharded over the mesh."""
from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np

from stra_jax.data.pipeline import eval_dataset
from stra_jax.training.mesh import batch_sharding, check_batch_divisible, make_mesh, replicated


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
) -> np.ndarray:
    """(N, D) float32 features of the images at ``paths``, in order.

    ``flip=True`` averages the features of each image and its mirror image.
    ``output`` picks the model output ("embedding" or "features").
    ``batch_size`` must divide evenly over the mesh's devices.
    """
    mesh = make_mesh(jax.local_devices()) if mesh is None else mesh
    check_batch_divisible(batch_size, mesh)
    in_sharding = batch_sharding(mesh)
    variables = jax.device_put({"params": variables["params"], "batch_stats": variables["batch_stats"]},
                               replicated(mesh))

    @jax.jit
    def forward(v, images):
        feats = model.apply(v, images, train=False)[output]
        if flip:
            feats = (feats + model.apply(v, images[:, :, ::-1], train=False)[output]) / 2
        return feats

    chunks = []
    for batch in eval_dataset(paths, batch_size=batch_size, image_size=image_size).as_numpy_iterator():
        images = jax.device_put(batch["images"], in_sharding)
        feats = np.asarray(forward(variables, images))
        chunks.append(feats[batch["valid"]])
    return np.concatenate(chunks, axis=0).astype(np.float32)
