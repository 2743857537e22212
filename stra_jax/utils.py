"""Small helpers shared by every layer of the package: atomic writes, tree
comparison and the parsing of an image size on the command line.

Imports nothing else of stra_jax, so anything may import it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import uuid
from typing import IO, Any, Iterator, Mapping, Union

import jax
from etils import epath


AnyPath = Union[str, os.PathLike, epath.Path]


def is_remote(path: AnyPath) -> bool:
    """True for a URL-like path (``gs://bucket/run``, ``s3://...``) that only
    ``tf.io.gfile``/etils epath can reach; False for a local path."""
    return "://" in os.fspath(path) if not isinstance(path, str) else "://" in path


def as_path(path: AnyPath) -> epath.Path:
    """``path`` as an etils ``epath.Path``: local paths (made absolute) use the OS,
    ``gs://`` and other URLs ``tf.io.gfile``, behind one API, so the workdir and
    model-directory code is the same for both (and is tested on local paths)."""
    text = path if isinstance(path, str) else os.fspath(path)
    return epath.Path(text if is_remote(text) else os.path.abspath(text))


class ConfigError(ValueError):
    """A config value that cannot work (a ``ValueError``): the command-line tools
    exit with status 2 for it, as for a bad flag; errors of the data or the
    files it names exit with 1."""


class SizeError(ValueError, argparse.ArgumentTypeError):
    """A bad image size on the command line: a ValueError for callers, and
    argparse prints its message when ``parse_size`` is an argument's ``type``."""


def parse_size(text: str, flag: str = "--image-size") -> tuple[int, int]:
    """``"H,W"`` or ``"HxW"`` -> (H, W), both positive; ``flag``: the option
    that gave ``text``, for the message."""
    try:
        height, width = (int(v) for v in text.lower().replace("x", ",").split(","))
        if height > 0 and width > 0:
            return height, width
    except ValueError:
        pass
    raise SizeError(f"{flag} {text}: expected H,W or HxW with positive integers, e.g. 256,128")


def _staging_name(path: epath.Path, kind: str) -> epath.Path:
    return path.parent / f".{path.name}.{kind}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def atomic_file(path: AnyPath, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it is
    renamed to ``path`` (a reader never sees a half-written file), on failure
    removed (``path`` is untouched). Works on ``gs://`` too (a bucket object
    appears only complete)."""
    path = as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _staging_name(path, "tmp")
    try:
        with tmp.open(mode) as f:
            yield f
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(Exception):
            tmp.unlink(missing_ok=True)
        raise


def save_figure(fig: Any, path: AnyPath, **savefig_kwargs: Any) -> epath.Path:
    """Write a matplotlib figure to ``path`` as PNG atomically, then close it."""
    import matplotlib.pyplot as plt  # only for callers that draw

    path = as_path(path)
    try:
        with atomic_file(path, "wb") as f:
            fig.savefig(f, format="png", **savefig_kwargs)
    finally:
        plt.close(fig)
    return path


def write_json_atomic(path: AnyPath, payload: Any) -> epath.Path:
    """Write ``payload`` as indented JSON to ``path`` atomically. Tuples and
    other sequences are written as lists."""
    with atomic_file(path) as f:
        f.write(json.dumps(payload, indent=2, sort_keys=True, default=list) + "\n")
    return as_path(path)


def read_json(path: Any, hint: str = "") -> Any:
    """The JSON in ``path`` (a pathlib or etils path, local or ``gs://``);
    ValueError naming the file, then ``hint`` (what to do), if it is not JSON."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})" + (f"; {hint}" if hint else "")) from None


def as_json(payload: Any) -> Any:
    """``payload`` as it reads back from JSON (tuples -> lists), for comparisons."""
    return json.loads(json.dumps(payload, default=list))


@contextlib.contextmanager
def atomic_directory(out: AnyPath, *, overwrite: bool) -> Iterator[epath.Path]:
    """Yield an empty staging directory beside ``out``; on success it replaces
    ``out`` with one rename, on failure it is removed and ``out`` is untouched.
    (On ``gs://`` a directory rename copies its objects: readers of ``out`` may
    see it appear file by file, never a half-written earlier version.)

    ``overwrite=False`` refuses an existing ``out`` before anything is written.
    """
    out = as_path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass overwrite=True / --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_name(out, "partial")
    staging.mkdir()
    try:
        yield staging
        if out.exists():
            trash = _staging_name(out, "old")
            out.rename(trash)
            staging.rename(out)
            with contextlib.suppress(Exception):
                trash.rmtree()
        else:
            staging.rename(out)
    finally:
        if staging.exists():
            with contextlib.suppress(Exception):
                staging.rmtree()


def copy_tree(src: AnyPath, dest: AnyPath) -> None:
    """Copy the files under ``src`` into ``dest`` (local or ``gs://``), creating folders."""
    src, dest = as_path(src), as_path(dest)
    for folder, _, files in src.walk():
        target = dest / os.path.relpath(os.fspath(folder), os.fspath(src)) if folder != src else dest
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            (folder / name).copy(target / name, overwrite=True)


def tree_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """``{"a/b/kernel": shape}`` for every leaf of a tree of arrays or shape structs.

    Keys read the same for a dataclass (``GetAttrKey.name``), a dict
    (``DictKey.key``) and a list (``SequenceKey.idx``), so a TrainState and the
    dict orbax reads back from its checkpoint name each leaf alike.
    """
    def name(k: Any) -> str:
        return str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))

    return {"/".join(name(k) for k in path): tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def shape_mismatches(expected: Any, saved: Any, limit: int = 50) -> list[str]:
    """Differences between two trees of arrays / shape structs: missing, extra and
    wrongly shaped leaves as readable lines (empty when they match)."""
    want, got = tree_shapes(expected), tree_shapes(saved)
    lines = [f"missing from the checkpoint: {k} {want[k]}" for k in sorted(set(want) - set(got))]
    lines += [f"not in the model: {k} {got[k]}" for k in sorted(set(got) - set(want))]
    lines += [f"{k}: model expects {want[k]}, checkpoint has {got[k]}"
              for k in sorted(set(want) & set(got)) if want[k] != got[k]]
    return lines[:limit] + ([f"... and {len(lines) - limit} more"] if len(lines) > limit else [])


def check_moved_keys(section: Mapping[str, Any], moved: Mapping[str, str], prefix: str = "train",
                     note: str = "") -> None:
    """Refuse a config key of an older layout, naming its new home (``moved``:
    old key -> where it lives now; ``note`` follows the message)."""
    for old, new in moved.items():
        if old in section:
            raise ConfigError(f"{prefix}.{old} has moved: write it as {new}" + (f"; {note}" if note else ""))
