"""tf.data input pipelines for face recognition (the paper's face recipe).

Training: encoded image -> decode -> resize to ``image_size`` when it differs
(insightface's sets are already 112x112 aligned crops) -> random horizontal
flip (the only augmentation) -> ``(x - 127.5) / 128``.

Determinism, resume and hosts as for ReID (``stra_jax.data.reid.pipeline``): the
epoch's order comes from the sampler (``stra_jax.data.samplers``; by default a
permutation of (seed, epoch)); the flip is stateless with a
per-example seed from (seed, epoch, position); ``start_step`` skips to a batch;
each global batch is split into ``process_count`` contiguous host slices and a
host reads only its records. Records are read by one Python thread (RecordIO
reads are a seek and a read), ``READ_CHUNK`` at a time, and decoded by
tf.data's parallel map.

Evaluation: ``verification_batches`` streams the decoded, normalised images of a
``.bin`` set in order, padded to whole batches.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from stra_jax.data import hide_gpus_from_tf
from stra_jax.data.face.dataset import FaceTrainSet
from stra_jax.data.image_check import decode_error
from stra_jax.data.images import epoch_slices
from stra_jax.data.iterate import numpy_iterator
from stra_jax.data.samplers import Sampler, host_run_slices, sampler_for


FACE_MEAN, FACE_STD = 127.5, 128.0  # insightface's (x - 127.5) / 128, as the paper
READ_CHUNK = 256  # training records read per Python call (tf.numpy_function) that feeds tf.data


def normalize_face(image: tf.Tensor) -> tf.Tensor:
    """uint8-range (H, W, 3) -> ``(x - FACE_MEAN) / FACE_STD`` float32 (insightface, the paper)."""
    return (tf.cast(image, tf.float32) - FACE_MEAN) / FACE_STD


def decode_face(encoded: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """Encoded JPEG/PNG -> (H, W, 3) float32 in [0, 255] at ``image_size``."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.cast(image, tf.float32)
    shape = tf.shape(image)
    resized = tf.cond(tf.reduce_all(shape[:2] == tf.constant(image_size)),
                      lambda: image, lambda: tf.image.resize(image, image_size, method="bilinear"))
    return tf.ensure_shape(resized, (*image_size, 3))


def train_dataset(train: FaceTrainSet, *, global_batch: int, image_size: tuple[int, int] = (112, 112),
                  seed: int = 0, epoch: int = 0, start_step: int = 0, epochs: int = 1, flip: bool = True,
                  process_index: int = 0, process_count: int = 1, sampler: Sampler | None = None,
                  ) -> tuple[tf.data.Dataset, Callable[[], Iterator[np.ndarray]]]:
    """This host's batches of ``epochs`` epochs from ``epoch`` on, from
    ``start_step`` of the first: ``{"images": (b, H, W, 3) float32, "labels":
    (b,) int32}``, b = global_batch / process_count, from one pipeline (the
    decode map traced once); also returns a function that yields the indices
    (into ``train``) it reads, epoch by epoch, to name a bad one.
    ``sampler``: draws each epoch's global batches (default: the ``"random"``
    permutation of ``train``)."""
    hide_gpus_from_tf()
    sampler = sampler_for(sampler, len(train))
    local = global_batch // process_count

    slice_of = host_run_slices(sampler, global_batch, seed, epoch, start_step, epochs, process_index,
                               process_count)

    def read_chunk(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        items = [train.read(int(index)) for index in indices]
        return (np.array([image for image, _ in items], dtype=object),
                np.array([label for _, label in items], dtype=np.int32))

    def read(index: tf.Tensor, example_seed: tf.Tensor):  # READ_CHUNK records per Python call
        image, label = tf.numpy_function(read_chunk, [index], (tf.string, tf.int32), stateful=False)
        return tf.ensure_shape(image, (None,)), tf.ensure_shape(label, (None,)), example_seed

    # A Python call per record cost 0.3 ms of CPU per image (and held the GIL); epoch_slices says why
    # this is not a Dataset.from_generator.
    ds = epoch_slices(slice_of, epochs).batch(READ_CHUNK).map(read).unbatch()

    def load(encoded, label, example_seed):
        image = decode_face(encoded, image_size)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, example_seed)
        return {"images": normalize_face(image), "labels": label}

    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return (ds.batch(local, drop_remainder=True).prefetch(tf.data.AUTOTUNE),
            lambda: (slice_of(k)[0] for k in range(epochs)))


def numpy_train_batches(train: FaceTrainSet, **kwargs) -> Iterator[dict[str, np.ndarray]]:
    """:func:`train_dataset` as NumPy batches; a record that breaks the pipeline
    (undecodable image, bad label, truncated file) is named with its file and
    byte offset instead of TensorFlow's message."""
    ds, orders = train_dataset(train, **kwargs)
    yield from numpy_iterator(ds, (tf.errors.OpError, ValueError), lambda err: _culprit(train, orders(), err))


def _culprit(train: FaceTrainSet, orders: Iterator[np.ndarray], err: Exception) -> str:
    message = (getattr(err, "message", None) or str(err)).strip().splitlines()[0]
    seen: set[int] = set()
    for order in orders:
        for index in map(int, order):
            if index in seen:
                continue
            seen.add(index)
            try:
                image, _ = train.read(index)
            except (ValueError, KeyError, OSError) as read_error:
                return str(read_error)
            reason = decode_error(image)
            if reason is not None:
                return f"{train.describe(index)}: undecodable image ({reason})"
    return f"face input pipeline failed ({message}); every record it reads decodes"


def decode_verification_images(path: str, images: Sequence[bytes]) -> None:
    """Raise naming ``path`` and the index of the first undecodable image."""
    bad = _first_undecodable(images)
    if bad is not None:
        raise ValueError(f"{path}: image {bad[0]} (pair {bad[0] // 2}) is undecodable ({bad[1]})")


def _first_undecodable(images: Sequence[bytes]) -> tuple[int, str] | None:
    """``(index, reason)`` of the first image that does not decode, or None."""
    for i, image in enumerate(images):
        reason = decode_error(image)
        if reason is not None:
            return i, reason
    return None


def verification_batches(images: Sequence[bytes], *, batch_size: int, image_size: tuple[int, int] = (112, 112),
                         names: Sequence[str] | None = None) -> Iterator[np.ndarray]:
    """(batch_size, H, W, 3) float32 normalised batches of ``images`` in order; the
    last one padded with copies of the first image (drop rows >= len(images)).
    An undecodable image stops it with a ``ValueError`` naming it (``names[i]``,
    or its index)."""
    hide_gpus_from_tf()
    n = len(images)
    if n == 0:
        raise ValueError("verification_batches: no images")
    padded = list(images) + [images[0]] * (math.ceil(n / batch_size) * batch_size - n)
    ds = tf.data.Dataset.from_tensor_slices(np.array(padded, dtype=object))
    ds = ds.map(lambda e: normalize_face(decode_face(e, image_size)), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)

    def explain(err: tf.errors.OpError) -> str:
        bad = _first_undecodable(images)
        if bad is not None:
            return f"{names[bad[0]] if names else f'image {bad[0]}'}: undecodable image ({bad[1]})"
        return f"face input pipeline failed ({err.message.strip().splitlines()[0] if err.message else err})"

    return numpy_iterator(ds.batch(batch_size).prefetch(tf.data.AUTOTUNE), (tf.errors.OpError,), explain)
