"""Datasets, samplers and the tf.data input pipelines (ReID under ``reid/``, face under ``face/``)."""
from __future__ import annotations


def hide_gpus_from_tf() -> None:
    """Keep TensorFlow (the input pipelines, TFDS) off the GPUs that JAX owns;
    otherwise TF reserves GPU memory on GPU hosts. Called where a pipeline or a
    TFDS source is built, not on import; calling it again does nothing. If TF
    already initialised its GPUs (something ran a TF op first) they cannot be
    hidden any more: a warning says so instead of failing the run."""
    import warnings

    import tensorflow as tf

    try:
        tf.config.set_visible_devices([], "GPU")  # a no-op once set
    except RuntimeError as err:  # TF's runtime already started with its GPUs visible
        warnings.warn(f"TensorFlow already uses the GPUs, which JAX needs too ({err}); call "
                      "stra_jax.data.hide_gpus_from_tf() before anything runs a TensorFlow op",
                      RuntimeWarning, stacklevel=2)
