"""Decode every image once before training: a bad file is named up front, not by
a TensorFlow ``jpeg::Uncompress failed`` after an epoch of training.

Decoding runs on a thread pool (Pillow releases the GIL while decoding); what
was found good is remembered in a cache file, so a rerun on the same data does
not pay again: :func:`check_images` (image files, ReID) remembers each file by
(size, mtime), :func:`check_train_set` (a face training set: records of encoded
images) the whole set by its files' (size, mtime) or its build's stamp.
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Protocol, Sequence, TypeVar

from stra_jax.utils import as_path, is_remote, write_json_atomic

R = TypeVar("R")  # a record with a ``path`` attribute
_CACHE_VERSION = 1
_CHECK_CHUNK = 4096  # records of a training set read into memory at a time by check_train_set


class EncodedTrainSet(Protocol):
    """What :func:`check_train_set` reads (``stra_jax.data.face.dataset.FaceTrainSet``):
    ``len``, ``read(i) -> (encoded image, label)``, ``describe(i)`` and
    ``source``; optionally ``paths`` (its image files) or ``stamp()``."""

    source: str

    def __len__(self) -> int: ...

    def read(self, index: int) -> tuple[bytes, int]: ...

    def describe(self, index: int) -> str: ...


def _decoder_pool(workers: int | None = None) -> ThreadPoolExecutor:
    # Decoding is I/O and Pillow C code without the GIL: more threads than cores pay.
    return ThreadPoolExecutor(max_workers=workers or min(32, 4 * (os.cpu_count() or 1)))


def decode_error(path: str | bytes) -> str | None:
    """Why ``path`` (a file, or the encoded image itself as bytes) cannot be
    decoded as an RGB image, or None if it can."""
    import io

    from PIL import Image

    try:
        if isinstance(path, str) and is_remote(path):
            path = as_path(path).read_bytes()  # gs://: Pillow reads local files only
        with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as image:
            image.convert("RGB").load()
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, ...
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return None


def _stat(path: str) -> list[int] | None:
    if is_remote(path):  # a bucket object: size and whole-second mtime
        try:
            st = as_path(path).stat()
        except Exception:  # the filesystem's own not-found / permission errors
            return None
        return [int(st.length), int(st.mtime)]
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def _read_cache(cache: Path | None) -> dict[str, list[int]]:
    if cache is None or not cache.is_file():
        return {}
    try:
        payload = json.loads(cache.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # a damaged cache only costs a re-check
    return payload.get("good", {}) if payload.get("version") == _CACHE_VERSION else {}


NAMED_CORRUPT = 5  # corrupt files named in the message; all of them go to a listing beyond that


def corrupt_message(bad: Sequence[str], errors: Mapping[str, str]) -> str:
    """The error for corrupt images ``bad`` (distinct, in order; ``errors``: why,
    by path): the first ``NAMED_CORRUPT`` named with their reasons and, beyond
    that, the count and a file in the temporary folder listing every one."""
    def why(path: str) -> str:  # Pillow repeats the path in its message
        return errors[path].replace(f" '{path}'", "")

    message = f"{bad[0]}: corrupt or unreadable image ({why(bad[0])})"
    if len(bad) > 1:
        message += "; also " + ", ".join(f"{p} ({why(p)})" for p in bad[1:NAMED_CORRUPT])
    if len(bad) > NAMED_CORRUPT:
        listing = Path(tempfile.gettempdir()) / f"stra_jax_corrupt_images_{uuid.uuid4().hex[:8]}.txt"
        listing.write_text("".join(f"{p}\t{errors[p]}\n" for p in bad))
        message += f"; and {len(bad) - NAMED_CORRUPT} more: all {len(bad)} are listed in {listing}"
    return (message + f"; fix or remove {'them' if len(bad) > 1 else 'it'}, or set skip_corrupt "
            "(config.dataset.skip_corrupt=True, --skip-corrupt) to skip such files")


def check_images(records: Sequence[R], skip_corrupt: bool = False, *, cache: str | Path | None = None,
                 workers: int | None = None) -> tuple[list[R], list[str]]:
    """Decode every record's image once. Returns ``(kept, skipped paths)``.

    A corrupt file raises ``ValueError`` naming it and why (plus how many more
    are bad), or with ``skip_corrupt`` is dropped and counted. ``cache``: a JSON
    file remembering the good files by (size, mtime).
    """
    cache = as_path(cache) if cache is not None else None  # beside a local or gs:// workdir
    known = _read_cache(cache)
    paths = [str(r.path) for r in records]
    stats = [_stat(p) for p in paths]
    todo = sorted({p for p, st in zip(paths, stats) if st is None or known.get(p) != st})
    errors: dict[str, str] = {}
    if todo:
        with _decoder_pool(workers) as pool:
            for path, error in zip(todo, pool.map(decode_error, todo)):
                if error is not None:
                    errors[path] = error
    if cache is not None and todo:
        good = {p: st for p, st in zip(paths, stats) if st is not None and p not in errors}
        write_json_atomic(cache, {"version": _CACHE_VERSION, "good": {**known, **good}})
    bad = [p for p in paths if p in errors]
    if bad and not skip_corrupt:
        raise ValueError(corrupt_message(list(dict.fromkeys(bad)), errors))
    kept = [r for r, p in zip(records, paths) if p not in errors]
    return kept, bad


def first_bad_image(paths: Sequence[str], images: Mapping[str, bytes] | None = None
                    ) -> tuple[str, str] | None:
    """``(path, reason)`` of the first undecodable image in ``paths``, in order
    (read from ``images`` when given: encoded bytes by path)."""
    for path in paths:
        error = decode_error(path if images is None else images[path])
        if error is not None:
            return path, error
    return None


def train_set_stamp(train: EncodedTrainSet) -> dict[str, Any]:
    """What identifies a training set's contents for :func:`check_train_set`'s
    cache: its build's ``stamp()`` (the TFDS source), else the (size, mtime)
    of its image files, or of its ``.rec`` and ``.idx``."""
    if hasattr(train, "stamp"):
        return train.stamp()
    source = str(train.source)
    paths = getattr(train, "paths", None) or [source, str(os.path.splitext(source)[0] + ".idx")]
    stats = []
    for p in paths:
        st = os.stat(p)
        stats.append([p, st.st_size, st.st_mtime_ns])
    return {"version": 1, "files": stats}


def check_train_set(train: EncodedTrainSet, cache: str | Path | None = None) -> str:
    """Decode every image of ``train`` once (a thread pool); a bad one raises
    ValueError naming its record. ``cache``: a JSON file (local or ``gs://``)
    remembering a set found good by :func:`train_set_stamp`, so that an
    unchanged set is not decoded again. Returns a note for the log."""
    stamp = train_set_stamp(train)
    cache = as_path(cache) if cache is not None else None
    if cache is not None and cache.is_file():
        try:
            if json.loads(cache.read_text()) == stamp:
                return f"training images checked before ({len(train)}, cached)"
        except (OSError, ValueError):
            pass  # a damaged cache only costs a re-check
    with _decoder_pool() as pool:
        # Read in order, decode in parallel, a chunk at a time: pool.map takes its
        # whole input at once, and a whole face set does not fit in memory.
        for start in range(0, len(train), _CHECK_CHUNK):
            indices = range(start, min(start + _CHECK_CHUNK, len(train)))
            encoded = [train.read(i)[0] for i in indices]
            for index, error in zip(indices, pool.map(decode_error, encoded)):
                if error is not None:
                    raise ValueError(f"{train.describe(index)}: corrupt or undecodable image ({error}); fix "
                                     "the set, or set dataset.check_images=False to find it during training")
    if cache is not None:
        write_json_atomic(cache, stamp)
    return f"checked {len(train)} training images"
