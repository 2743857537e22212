"""Feature extraction: a jitted forward pass with the batch sharded over the mesh
(:func:`forward_batches`, over any host batches; :func:`extract_features`, over
image files), and the flip (mirror image) forward pass every evaluator shares."""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Mapping, Sequence

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


def mesh_processes(mesh: jax.sharding.Mesh) -> tuple[int, int]:
    """``(this process's index, the number of processes)`` among the mesh's
    devices: (0, 1) for a mesh of local devices."""
    hosts = len({d.process_index for d in mesh.devices.flat})
    return (jax.process_index() if hosts > 1 else 0), hosts


def gather_host_rows(local: np.ndarray, mesh: jax.sharding.Mesh) -> np.ndarray:
    """Host arrays ``(steps, b, ...)`` (b rows of each of ``steps`` batches) ->
    ``(steps * P * b, ...)`` on every host, in the row order of
    :func:`forward_batches`' output (batch by batch, host by host): e.g. the
    labels that go with the features."""
    _, hosts = mesh_processes(mesh)
    if hosts == 1:
        return local.reshape(-1, *local.shape[2:])
    every = np.asarray(multihost_utils.process_allgather(local, tiled=False))  # (P, steps, b, ...)
    return np.swapaxes(every, 0, 1).reshape(-1, *local.shape[2:])


@functools.partial(jax.jit, static_argnums=0, static_argnames=("output", "flip"))
def jitted_forward(model: Any, variables: dict[str, Any], images: jax.Array, *, output: str = "embedding",
                   flip: bool = False) -> tuple[jax.Array, jax.Array]:
    """The jitted evaluation forward pass: ``(output of images, output of their
    mirror images)`` (B, D) each; without ``flip`` the second is the first.

    Jitted once at module level with the model static (Linen modules compare by
    their fields), so all evaluations of a run, and the query and gallery (or
    every pair set's) passes, share one compilation instead of compiling per
    call.
    """
    out, mirrored = forward_with_flip(model, variables, images, output=output, flip=flip)
    return out, out if mirrored is None else mirrored


def forward_batches(model: Any, variables: dict[str, Any], batches: Iterable[Mapping[str, np.ndarray]], *,
                    output: str = "embedding", flip: bool = False, mesh: jax.sharding.Mesh | None = None,
                    batch_size: int) -> np.ndarray:
    """(N, D) float32 model output ``output`` of every row of the global batches,
    on every host: the sharded, jitted evaluation forward pass.

    ``batches`` yields this host's part of each global batch of ``batch_size``
    rows: ``{"images": (batch_size / P, H, W, 3)}`` NumPy (NHWC, model input),
    host p holding rows p*b .. (p+1)*b of each (P processes in ``mesh``;
    ``mesh=None``: this process's devices). Every host must yield the same
    number of batches. N = batches * batch_size, padding rows included: the
    caller drops them. ``flip=True`` averages each image's output with its
    mirror image's. ``batch_size`` must divide evenly over the mesh's devices.
    """
    mesh = make_mesh(jax.local_devices()) if mesh is None else mesh
    check_batch_divisible(batch_size, mesh)
    in_sharding = batch_sharding(mesh)
    variables = jax.device_put({"params": variables["params"], "batch_stats": variables["batch_stats"]},
                               replicated(mesh))
    _, hosts = mesh_processes(mesh)
    local = batch_size // hosts

    chunks = []
    for batch in batches:
        images = np.asarray(batch["images"])
        if images.shape[0] != local:
            raise ValueError(f"forward_batches: a host batch of {images.shape[0]} images; expected "
                             f"batch_size={batch_size} / {hosts} processes = {local}")
        out, mirrored = jitted_forward(model, variables, jax.make_array_from_process_local_data(in_sharding, images),
                                       output=output, flip=flip)
        feats = (out + mirrored) / 2 if flip else out
        chunks.append(np.asarray(multihost_utils.process_allgather(feats, tiled=True)) if hosts > 1
                      else np.asarray(feats))
    if not chunks:
        raise ValueError("forward_batches: no batches")
    return np.concatenate(chunks, axis=0).astype(np.float32)


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
    ``eval_dataset``, a plain resize). The forward pass is :func:`forward_batches`.
    """
    from stra_jax.data.images import numpy_batches  # TensorFlow: only when extracting

    if pipeline is None:
        from stra_jax.data.reid.pipeline import eval_dataset as pipeline

    mesh = make_mesh(jax.local_devices()) if mesh is None else mesh
    check_batch_divisible(batch_size, mesh)
    host, hosts = mesh_processes(mesh)
    local = batch_size // hosts
    # Host p reads rows p*local .. (p+1)*local of each padded global batch.
    padded = -(-len(paths) // batch_size) * batch_size
    order = np.arange(padded).reshape(-1, hosts, local)[:, host].ravel()
    mine = [paths[min(i, len(paths) - 1)] for i in order]
    batches = pipeline(mine, batch_size=local, image_size=image_size, images=images)
    feats = forward_batches(model, variables, numpy_batches(batches, mine, images), output=output, flip=flip,
                            mesh=mesh, batch_size=batch_size)
    return feats[: len(paths)]
