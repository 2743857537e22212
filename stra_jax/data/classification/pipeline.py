"""tf.data pipelines of the classification task: the standard ImageNet input
pipeline (flax examples/imagenet, big_vision, torchvision's reference recipe).

Training: decode -> random-resized ("Inception") crop of 8%-100% of the image's
area with aspect ratio 3/4-4/3 (relative to the output's own aspect, so a
portrait 2:1 output gets portrait crops), resized bilinearly to H x W ->
random horizontal flip -> ImageNet mean/std normalisation. ``crop="resize"``
resizes the whole image instead (no crop).

Evaluation: resize, keeping the aspect ratio, until the image covers
``(H, W) / crop_fraction`` (ImageNet's 256 -> 224 is ``crop_fraction=0.875``),
then the central H x W crop -> normalisation.

Determinism, resume and hosts as for ReID (``data/reid/pipeline.py``): the
sampler fixes each global batch, every random op is stateless with a seed of
(seed, epoch, position), and host p decodes only its contiguous slice.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from stra_jax.data import hide_gpus_from_tf
from stra_jax.data.classification.dataset import Example
from stra_jax.data.images import decode_raw, encoded_images, normalize, sliced_examples
from stra_jax.data.samplers import Sampler, host_run_slices, sampler_for

CROPS = ("inception", "resize")


@dataclasses.dataclass(frozen=True)
class ClassAugment:
    """Training augmentation of the classification task (``config.input.augment``)."""

    crop: str = "inception"
    area: tuple[float, float] = (0.08, 1.0)        # fraction of the image's area
    aspect: tuple[float, float] = (3 / 4, 4 / 3)   # crop aspect / output aspect
    flip: bool = True

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ValueError(f"config.input.augment.crop={self.crop!r}: expected one of {CROPS}")
        for key in ("area", "aspect"):
            if len(tuple(getattr(self, key))) != 2:
                raise ValueError(f"config.input.augment.{key}={tuple(getattr(self, key))}: expected (min, max)")
        lo, hi = self.area
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"config.input.augment.area={tuple(self.area)}: expected 0 < min <= max <= 1")
        if not 0 < self.aspect[0] <= self.aspect[1]:
            raise ValueError(f"config.input.augment.aspect={tuple(self.aspect)}: expected 0 < min <= max")


def inception_crop(image: tf.Tensor, seed: tf.Tensor, image_size: tuple[int, int],
                   area: tuple[float, float] = (0.08, 1.0),
                   aspect: tuple[float, float] = (3 / 4, 4 / 3)) -> tf.Tensor:
    """(h, w, 3) -> (H, W, 3): a random box of ``area`` of the image and aspect
    ratio ``aspect`` x W/H (width / height), resized bilinearly (Szegedy et al.
    2015; ten tries, then the whole image, as flax's and big_vision's crops)."""
    height, width = image_size
    ratio = width / height
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.zeros([1, 0, 4], tf.float32), seed=seed, min_object_covered=0.0,
        aspect_ratio_range=(aspect[0] * ratio, aspect[1] * ratio), area_range=area, max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    crop = tf.slice(image, begin, size)
    return tf.image.resize(crop, image_size, method="bilinear")


def resize_center_crop(image: tf.Tensor, image_size: tuple[int, int], crop_fraction: float = 0.875) -> tf.Tensor:
    """(h, w, 3) -> (H, W, 3): resized (aspect kept, bilinear) to cover ``(H, W) /
    crop_fraction``, then the central H x W."""
    height, width = image_size
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.maximum(height / (crop_fraction * shape[0]), width / (crop_fraction * shape[1]))
    new = tf.cast(tf.math.round(shape * scale), tf.int32)
    new = tf.maximum(new, tf.constant([height, width]))  # rounding must not leave the crop short
    image = tf.image.resize(image, new, method="bilinear")
    top, left = (new[0] - height) // 2, (new[1] - width) // 2
    return tf.slice(image, tf.stack([top, left, 0]), [height, width, 3])


def augment(image: tf.Tensor, seed: tf.Tensor, image_size: tuple[int, int], cfg: ClassAugment) -> tf.Tensor:
    """Decoded (h, w, 3) in [0, 1] -> augmented, normalised (H, W, 3)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    if cfg.crop == "inception":
        image = inception_crop(image, seeds[0], image_size, tuple(cfg.area), tuple(cfg.aspect))
    else:
        image = tf.image.resize(image, image_size, method="bilinear")
    if cfg.flip:
        image = tf.image.stateless_random_flip_left_right(image, seeds[1])
    return normalize(image)


def train_dataset(examples: Sequence[Example], *, global_batch: int, image_size: tuple[int, int], seed: int = 0,
                  epoch: int = 0, start_step: int = 0, epochs: int = 1, augmentation: ClassAugment = ClassAugment(),
                  process_index: int = 0, process_count: int = 1, images: Mapping[str, bytes] | None = None,
                  sampler: Sampler | None = None) -> tf.data.Dataset:
    """This host's batches of ``epochs`` epochs from ``epoch``, from ``start_step``
    of the first: {"images": (b, H, W, 3) float32, "labels": (b,) int32}, b =
    global_batch / process_count; one pipeline (``data.images.sliced_examples``)."""
    hide_gpus_from_tf()
    sampler = sampler_for(sampler, len(examples))
    paths = [e.path for e in examples]
    labels = np.array([e.label for e in examples], dtype=np.int32)

    slice_of = host_run_slices(sampler, global_batch, seed, epoch, start_step, epochs, process_index,
                               process_count)

    def load(encoded, label, example_seed):
        return {"images": augment(decode_raw(encoded), example_seed, image_size, augmentation), "labels": label}

    ds = sliced_examples(paths, (labels,), slice_of, epochs, images)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(global_batch // process_count, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(paths: Sequence[str], *, batch_size: int, image_size: tuple[int, int],
                 crop_fraction: float = 0.875, images: Mapping[str, bytes] | None = None) -> tf.data.Dataset:
    """Evaluation batches in order: {"images": (batch, H, W, 3), "valid": (batch,) bool};
    the last batch is padded (valid False) so one compiled forward serves all."""
    hide_gpus_from_tf()
    if not paths:
        raise ValueError("eval_dataset: no images")
    padded = math.ceil(len(paths) / batch_size) * batch_size
    all_paths = [str(p) for p in paths] + [str(paths[0])] * (padded - len(paths))
    valid = np.arange(padded) < len(paths)

    def load(encoded, ok):
        return {"images": normalize(resize_center_crop(decode_raw(encoded), image_size, crop_fraction)), "valid": ok}

    ds = encoded_images(np.array(all_paths), (valid,), images)
    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(batch_size).prefetch(
        tf.data.AUTOTUNE)
