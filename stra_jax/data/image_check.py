"""Decode every image once before training: a bad file is named up front, not by
a TensorFlow ``jpeg::Uncompress failed`` after an epoch of training.

Decoding runs on a thread pool (Pillow releases the GIL while decoding); files
already found good are remembered in a cache file by (size, mtime), so a rerun
on the same data does not pay again.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping, Sequence, TypeVar

from stra_jax.utils import as_path, is_remote, write_json_atomic

R = TypeVar("R")  # a record with a ``path`` attribute
_CACHE_VERSION = 1


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
        workers = workers or min(32, 4 * (os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for path, error in zip(todo, pool.map(decode_error, todo)):
                if error is not None:
                    errors[path] = error
    if cache is not None and todo:
        good = {p: st for p, st in zip(paths, stats) if st is not None and p not in errors}
        write_json_atomic(cache, {"version": _CACHE_VERSION, "good": {**known, **good}})
    bad = [p for p in paths if p in errors]
    if bad and not skip_corrupt:
        more = f" (and {len(set(bad)) - 1} more corrupt files)" if len(set(bad)) > 1 else ""
        raise ValueError(f"{bad[0]}: corrupt or unreadable image ({errors[bad[0]]}){more}; fix or remove it, "
                         "or set skip_corrupt (config.dataset.skip_corrupt=True, --skip-corrupt) to skip such files")
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
