"""tf.data input pipelines for ReID: training batches and evaluation batches.

Training (torchreid's order of transforms): decode -> resize (bilinear) ->
random horizontal flip -> zero-pad and random crop back -> ImageNet
normalisation -> random erasing (p 0.5, area 0.02-0.4 of the image, aspect
0.3-3.3, filled with 0 = the mean colour after normalisation).

Determinism and resume: the epoch's order comes from the sampler
(``stra_jax.data.samplers``; by default a NumPy permutation of (seed, epoch)),
every random op is *stateless* with a per-example seed derived from (seed,
epoch, position), and the map keeps order. Batch b of epoch e is
therefore the same however many hosts, threads or restarts produced it;
``start_step`` skips straight to a batch for an exact resume.

Image bytes come from the files (read by tf.data's parallel map) or, for the
TFDS source (``stra_jax.data.tfds``), from ``images``: the encoded images held
in host memory, keyed by record path, sliced in the same order from one string
tensor. Both decode the same bytes, so both sources give identical batches.

Multi-host: each global batch is split into ``process_count`` equal, contiguous
host slices; host p loads only its slice (its files), so the global batch is
independent of the host count.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from stra_jax.data import hide_gpus_from_tf
from stra_jax.data.image_check import check_images
# The image helpers every pipeline shares live in data/images.py; re-exported here.
from stra_jax.data.images import (IMAGENET_MEAN, IMAGENET_STD, decode_image, encoded_images, load_image,
                                  normalize, numpy_batches, sliced_examples)
from stra_jax.data.reid.common import Record
from stra_jax.data.samplers import Sampler, host_run_slices, sampler_for

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Augment", "check_images", "decode_image", "encoded_images",
           "eval_dataset", "load_image", "normalize", "numpy_batches", "train_dataset"]


@dataclasses.dataclass(frozen=True)
class Augment:
    """Training augmentation; the defaults are the ReID recipe's."""

    flip: bool = True
    pad: int = 10
    erase_prob: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.4)
    erase_aspect: tuple[float, float] = (0.3, 3.3)
    erase_tries: int = 10


def random_erase(image: tf.Tensor, seed: tf.Tensor, cfg: Augment) -> tf.Tensor:
    """Random erasing (Zhong et al.): with probability p, one rectangle of random
    area and aspect is set to 0. Tries ``erase_tries`` candidate boxes at once
    and uses the first that fits, like the usual rejection loop."""
    height, width = image.shape[0], image.shape[1]
    seeds = tf.random.experimental.stateless_split(seed, 5)
    apply = tf.random.stateless_uniform([], seeds[0]) < cfg.erase_prob
    n = cfg.erase_tries
    area = tf.random.stateless_uniform([n], seeds[1], *cfg.erase_area) * float(height * width)
    aspect = tf.random.stateless_uniform([n], seeds[2], *cfg.erase_aspect)
    h = tf.cast(tf.round(tf.sqrt(area * aspect)), tf.int32)
    w = tf.cast(tf.round(tf.sqrt(area / aspect)), tf.int32)
    fits = (h < height) & (w < width) & (h > 0) & (w > 0)
    first = tf.argmax(tf.cast(fits, tf.int32))
    h, w = h[first], w[first]
    top = tf.cast(tf.random.stateless_uniform([], seeds[3]) * tf.cast(height - h + 1, tf.float32), tf.int32)
    left = tf.cast(tf.random.stateless_uniform([], seeds[4]) * tf.cast(width - w + 1, tf.float32), tf.int32)
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    box = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    erase = box & apply & tf.reduce_any(fits)
    return tf.where(erase[:, :, None], tf.zeros_like(image), image)


def augment(image: tf.Tensor, seed: tf.Tensor, cfg: Augment) -> tf.Tensor:
    """(H, W, 3) in [0, 1] -> augmented, normalised (H, W, 3)."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    height, width = image.shape[0], image.shape[1]
    if cfg.flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[0])
    if cfg.pad:
        image = tf.pad(image, [[cfg.pad, cfg.pad], [cfg.pad, cfg.pad], [0, 0]])
        image = tf.image.stateless_random_crop(image, [height, width, 3], seeds[1])
    image = normalize(image)
    if cfg.erase_prob > 0:
        image = random_erase(image, seeds[2], cfg)
    return image


def train_dataset(
    records: Sequence[Record],
    *,
    global_batch: int,
    image_size: tuple[int, int] = (256, 128),
    seed: int = 0,
    epoch: int = 0,
    start_step: int = 0,
    epochs: int = 1,
    augmentation: Augment = Augment(),
    process_index: int = 0,
    process_count: int = 1,
    images: Mapping[str, bytes] | None = None,
    sampler: Sampler | None = None,
) -> tf.data.Dataset:
    """This host's training batches of ``epochs`` epochs from ``epoch`` on:
    {"images": (b, H, W, 3) float32, "labels": (b,) int32} with b =
    global_batch / process_count, starting at ``start_step`` of the first.
    ``images``: encoded bytes by record path (TFDS source); None reads the
    files. ``sampler``: draws each epoch's global batches over ``records``
    (default: the ``"random"`` permutation). A run reads all its epochs from
    one pipeline (``data.images.sliced_examples``)."""
    hide_gpus_from_tf()
    sampler = sampler_for(sampler, len(records))
    paths = [r.path for r in records]
    labels = np.array([r.pid for r in records], dtype=np.int32)

    slice_of = host_run_slices(sampler, global_batch, seed, epoch, start_step, epochs, process_index,
                               process_count)

    def load(encoded, label, example_seed):
        image = augment(decode_image(encoded, image_size), example_seed, augmentation)
        return {"images": image, "labels": label}

    ds = sliced_examples(paths, (labels,), slice_of, epochs, images)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(global_batch // process_count, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(
    paths: Sequence[str | Path],
    *,
    batch_size: int,
    image_size: tuple[int, int] = (256, 128),
    images: Mapping[str, bytes] | None = None,
) -> tf.data.Dataset:
    """Test-time batches in file order: {"images": (batch, H, W, 3), "valid": (batch,) bool}.
    The last batch is padded (valid = False) so every batch has the same shape
    and one compiled forward pass serves them all. ``images``: as for
    :func:`train_dataset`."""
    hide_gpus_from_tf()
    n = len(paths)
    if n == 0:
        raise ValueError("eval_dataset: no images")
    padded = math.ceil(n / batch_size) * batch_size
    all_paths = [str(p) for p in paths] + [str(paths[0])] * (padded - n)
    valid = np.arange(padded) < n

    def load(encoded, ok):
        return {"images": normalize(decode_image(encoded, image_size)), "valid": ok}

    ds = encoded_images(np.array(all_paths), (valid,), images)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
