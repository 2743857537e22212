"""Image helpers every tf.data pipeline shares (ReID, classification): decoding,
ImageNet normalisation, encoded bytes from files or memory, and batches whose
decode errors name the file.

Pixels are float32 RGB in [0, 1] after decoding; the model input is
``(rgb - IMAGENET_MEAN) / IMAGENET_STD`` (NHWC), the normalisation of
torchvision's ImageNet models.
"""
from __future__ import annotations

from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from stra_jax.data.image_check import first_bad_image
from stra_jax.data.iterate import numpy_iterator

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "decode_image", "decode_raw", "encoded_images", "load_image",
           "normalize", "epoch_slices", "numpy_batches", "sliced_examples"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)



def numpy_batches(ds: tf.data.Dataset, paths: Sequence[str], images: Mapping[str, bytes] | None = None,
                  ) -> Iterator[dict[str, np.ndarray]]:
    """``ds.as_numpy_iterator()``, except that a decode error (a file that broke
    after the up-front check, or was never checked) raises ``ValueError`` naming
    the file among ``paths`` (the files ``ds`` reads; their bytes in ``images``
    for the TFDS source) instead of TensorFlow's ``Input is empty.``."""
    def explain(err: tf.errors.OpError) -> str:
        culprit = first_bad_image(paths, images)
        message = err.message.strip().splitlines()[0] if err.message else type(err).__name__
        if culprit is None:
            return f"input pipeline failed ({message}); no unreadable file among its {len(paths)} images"
        return f"{culprit[0]}: corrupt or unreadable image ({culprit[1]}; TensorFlow: {message})"

    return numpy_iterator(ds, (tf.errors.OpError,), explain)


def decode_raw(encoded: tf.Tensor) -> tf.Tensor:
    """Encoded JPEG/PNG/BMP -> (h, w, 3) float32 in [0, 1] at the file's own size."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return tf.image.convert_image_dtype(image, tf.float32)


def decode_image(encoded: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """Encoded JPEG/PNG/BMP -> (H, W, 3) float32 in [0, 1], resized bilinearly to ``image_size``."""
    return tf.image.resize(decode_raw(encoded), image_size, method="bilinear")


def load_image(path: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """File (local or any ``tf.io.gfile`` path, e.g. ``gs://``) -> (H, W, 3) float32 in [0, 1]."""
    return decode_image(tf.io.read_file(path), image_size)


def encoded_images(paths: np.ndarray, extras: tuple[np.ndarray, ...],
                   images: Mapping[str, bytes] | None = None) -> tf.data.Dataset:
    """Elements ``(encoded image, *extras[i])`` for the i-th path, in order: the
    file read by tf.data's parallel map, or, with ``images`` (TFDS source), the
    bytes held in memory under that path, sliced from one string tensor of this
    call's images (an epoch's host slice: well under TensorFlow's 2 GB limit
    for ReID sets), so no Python runs per example."""
    if images is None:
        ds = tf.data.Dataset.from_tensor_slices((paths, *extras))
        return ds.map(lambda path, *rest: (tf.io.read_file(path), *rest),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return tf.data.Dataset.from_tensor_slices((held_bytes(paths, images), *extras))


def held_bytes(paths: Sequence[str], images: Mapping[str, bytes]) -> np.ndarray:
    """The bytes held in ``images`` under each of ``paths``, as an object array
    (n,); a path with none is an error naming it."""
    missing = [p for p in dict.fromkeys(paths) if p not in images]
    if missing:
        raise ValueError(f"{missing[0]}: no such image in the dataset's records "
                         f"({len(missing)} of {len(paths)} paths missing)")
    return np.array([images[p] for p in paths], dtype=object)


def epoch_slices(slice_of: Callable[[int], tuple[np.ndarray, np.ndarray]], epochs: int) -> tf.data.Dataset:
    """Elements ``(index, seed (2,))`` of ``slice_of(0)``, ..., ``slice_of(epochs - 1)``
    (arrays ``(n,)`` and ``(n, 2)``, ``samplers.host_run_slices``), in order,
    each slice computed when the pipeline reaches it.

    Through ``tf.numpy_function``, not ``Dataset.from_generator``: TensorFlow's
    generator dataset sets glibc's ``M_TRIM_THRESHOLD`` for the whole process
    (it logs "Memory patch applied"), which turns off malloc's adaptive mmap
    threshold, so that every large buffer XLA:CPU allocates is mapped and
    unmapped again: the jitted train step of the ReID demo ran 20-25% slower
    in the same process (``benchmarks/loop_overhead.py``)."""
    def slice_tensors(k: tf.Tensor) -> tf.data.Dataset:
        index, seed = tf.numpy_function(lambda kk: tuple(np.asarray(a, np.int64) for a in slice_of(int(kk))),
                                        [k], (tf.int64, tf.int64), stateful=False)
        return tf.data.Dataset.from_tensor_slices((tf.ensure_shape(index, (None,)),
                                                   tf.ensure_shape(seed, (None, 2))))

    return tf.data.Dataset.range(epochs).flat_map(slice_tensors)


def sliced_examples(paths: Sequence[str], extras: tuple[np.ndarray, ...],
                    slice_of: Callable[[int], tuple[np.ndarray, np.ndarray]], epochs: int,
                    images: Mapping[str, bytes] | None = None) -> tf.data.Dataset:
    """Elements ``(encoded image, *(extra[i] for extra in extras), seed)`` for
    each (index i, seed) of :func:`epoch_slices`, in order.

    One pipeline for a whole run: the per-example functions are traced once,
    where a pipeline per epoch traced them every epoch (about 0.2 s of CPU per
    epoch, more than the images of a 7-step epoch cost to decode and augment;
    ``benchmarks/loop_overhead.py``). The image bytes are the file ``paths[i]``
    (read by tf.data's parallel map) or, with ``images`` (TFDS source), the
    bytes held under that path."""
    columns = tuple(tf.constant(extra) for extra in extras)
    if images is None:
        path_table = tf.constant(np.asarray(paths, dtype=object).astype(str))
        encoded = lambda index: tf.io.read_file(tf.gather(path_table, index))  # noqa: E731
    else:
        byte_table = tf.constant(held_bytes(paths, images))
        encoded = lambda index: tf.gather(byte_table, index)  # noqa: E731
    return epoch_slices(slice_of, epochs).map(
        lambda index, seed: (encoded(index), *(tf.gather(c, index) for c in columns), seed),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def normalize(image: tf.Tensor) -> tf.Tensor:
    return (image - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
