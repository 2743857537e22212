"""Small helpers shared by every layer of the package: atomic writes and tree comparison.

Imports nothing else of stra_jax, so anything may import it.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import jax


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _default_mode(path: str | os.PathLike, directory: bool = False) -> None:
    """mkstemp/mkdtemp create owner-only (0600/0700) entries; give the result the
    permissions a plain ``open``/``mkdir`` would (0666/0777 minus the umask)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it is
    renamed to ``path`` (a reader never sees a half-written file), on failure
    removed (``path`` is untouched)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        _default_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_figure(fig: Any, path: str | os.PathLike, **savefig_kwargs: Any) -> Path:
    """Write a matplotlib figure to ``path`` as PNG atomically, then close it."""
    import matplotlib.pyplot as plt  # only for callers that draw

    path = Path(path)
    try:
        with atomic_file(path, "wb") as f:
            fig.savefig(f, format="png", **savefig_kwargs)
    finally:
        plt.close(fig)
    return path


def write_json_atomic(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` as indented JSON to ``path`` atomically. Tuples and
    other sequences are written as lists."""
    with atomic_file(path) as f:
        json.dump(payload, f, indent=2, sort_keys=True, default=list)
        f.write("\n")
    return Path(path)


def as_json(payload: Any) -> Any:
    """``payload`` as it reads back from JSON (tuples -> lists), for comparisons."""
    return json.loads(json.dumps(payload, default=list))


@contextlib.contextmanager
def atomic_directory(out: str | os.PathLike, *, overwrite: bool) -> Iterator[Path]:
    """Yield an empty staging directory beside ``out``; on success it replaces
    ``out`` with one rename, on failure it is removed and ``out`` is untouched.

    ``overwrite=False`` refuses an existing ``out`` before anything is written.
    """
    out = Path(out).absolute()
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists (pass overwrite=True / --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield staging
        _default_mode(staging, directory=True)
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, trash / "old")
            os.replace(staging, out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
