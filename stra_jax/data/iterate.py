"""NumPy batches of a tf.data pipeline, with a failure named by its input."""
from __future__ import annotations

from typing import Any, Callable, Iterator


def numpy_iterator(ds: Any, errors: tuple[type[BaseException], ...],
                   explain: Callable[[BaseException], str]) -> Iterator[Any]:
    """``ds.as_numpy_iterator()``, except that an error of a type in ``errors``
    raised while producing a batch becomes ``ValueError(explain(err))`` (chained
    to it): TensorFlow's messages (``Input is empty.``) do not say which file or
    record broke the pipeline, ``explain`` finds and names it."""
    iterator = ds.as_numpy_iterator()
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except errors as err:
            raise ValueError(explain(err)) from err
        yield batch
