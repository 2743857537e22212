"""NumPy batches of a tf.data pipeline, with a failure named by its input, run
with as many threads as the host can spare beside the JAX computation."""
from __future__ import annotations

import os
from typing import Any, Callable, Iterator

INPUT_THREADS_ENV = "STRA_JAX_INPUT_THREADS"


def input_threads() -> int | None:
    """Threads for a tf.data pipeline's private pool: None (tf.data's own
    choice, one per core) when JAX computes on a GPU or TPU, whose host cores
    are otherwise idle; on a CPU-only backend, where the step already uses every
    core, a quarter of the cores (at least 1). A pipeline with a thread per core
    there oversubscribes the cores the step runs on: in the ReID demo on 2 cores
    the loop's step windows ran at 0.80 of the step alone with tf.data's default
    pool and 0.97 with one thread (``benchmarks/loop_overhead.py``), while the
    input needs about 0.2 of a core. ``STRA_JAX_INPUT_THREADS=N`` sets it (0:
    tf.data's own choice)."""
    given = os.environ.get(INPUT_THREADS_ENV, "").strip()
    if given:
        try:
            value = int(given)
        except ValueError:
            raise ValueError(f"{INPUT_THREADS_ENV}={given!r}: expected an integer >= 0") from None
        if value < 0:
            raise ValueError(f"{INPUT_THREADS_ENV}={given!r}: expected an integer >= 0")
        return value or None
    import jax

    if jax.default_backend() != "cpu":
        return None
    return max(1, (os.cpu_count() or 1) // 4)


def with_input_threads(ds: Any) -> Any:
    """``ds`` with its private thread pool sized by :func:`input_threads`."""
    threads = input_threads()
    if threads is None:
        return ds
    import tensorflow as tf

    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    return ds.with_options(options)


def numpy_iterator(ds: Any, errors: tuple[type[BaseException], ...],
                   explain: Callable[[BaseException], str]) -> Iterator[Any]:
    """``ds.as_numpy_iterator()`` (on :func:`with_input_threads`' pool), except
    that an error of a type in ``errors`` raised while producing a batch becomes
    ``ValueError(explain(err))`` (chained to it): TensorFlow's messages (``Input
    is empty.``) do not say which file or record broke the pipeline, ``explain``
    finds and names it."""
    iterator = with_input_threads(ds).as_numpy_iterator()
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except errors as err:
            raise ValueError(explain(err)) from err
        yield batch
