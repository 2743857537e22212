"""The core shared by the built-in generated data sets (``data/reid/synthetic.py``,
``data/face/synthetic.py``): the spec, its random streams, palettes, JPEG
encoding and the atomic, idempotent write of a set into a folder.

A generator describes everything that determines its files in a frozen
dataclass spec deriving from :class:`GeneratedSpec` (stored as ``spec.json``),
draws every random quantity from ``spec.rng(stream, *keys)`` keyed by what it
describes (so the bytes of an image do not depend on the order of generation),
and writes its files with :func:`generate_atomically`: into a temporary sibling
folder renamed into place at the end, ``spec.json`` last, so that the output
folder is either complete or absent, and an existing folder is reused when it
holds the same spec and refused (naming the differing fields) when it does not.
"""
from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, ClassVar, Collection, Sequence

import numpy as np

from stra_jax.utils import write_json_atomic

SPEC_FILE = "spec.json"


def palette(rgb: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """(N, 3) float32 RGB, read-only (constants, not module state)."""
    a = np.array(rgb, np.float32)
    a.flags.writeable = False
    return a


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes with fixed settings (4:2:0, no
    optimisation, no metadata or timestamps): the same pixels give the same bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, format="JPEG", quality=quality, subsampling="4:2:0", optimize=False)
    return buf.getvalue()


class GeneratedSpec:
    """Base of a generator's frozen dataclass spec (fields ``seed`` and
    ``jpeg_quality`` at least). ``FORMAT`` names the generator's version; bump
    it when drawing or planning changes, so that an old folder is refused.

    Subclasses extend :meth:`problems` with their own checks; construction
    raises one ValueError listing every problem.
    """

    FORMAT: ClassVar[str] = ""
    seed: int
    jpeg_quality: int

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """What is wrong with the spec (empty: valid)."""
        problems = []
        if self.seed < 0:
            problems.append(f"seed={self.seed} must be >= 0")
        if not 1 <= self.jpeg_quality <= 95:
            problems.append(f"jpeg_quality={self.jpeg_quality} must be in 1..95")
        return problems

    def rng(self, stream: int, *keys: int) -> np.random.Generator:
        """The random stream ``stream`` (an independent quantity: identities,
        images, ...) for ``keys`` (what it describes: an id, an image index)."""
        return np.random.default_rng([self.seed, stream, *keys])

    def to_json(self) -> dict[str, Any]:
        """What ``spec.json`` holds: the format and every field."""
        return {"format": self.FORMAT, **dataclasses.asdict(self)}  # type: ignore[call-overload]


def spec_differences(stored: dict[str, Any], wanted: dict[str, Any]) -> str:
    """``"field: stored on disk vs wanted requested, ..."`` for the fields where
    two ``spec.json`` contents differ ("" when they agree)."""
    diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
    return ", ".join(f"{k}: {stored.get(k)!r} on disk vs {wanted.get(k)!r} requested" for k in diff)


def check_existing(root: Path, spec: GeneratedSpec, what: str, files: Collection[str] | None = None) -> None:
    """Raise ValueError unless ``root`` holds the set generated from ``spec``
    (``what``: the set's kind for messages; ``files``: the exact file names
    the folder must hold, if known)."""
    path = root / SPEC_FILE
    if not root.is_dir() or not path.is_file():
        found = sorted(p.name for p in root.iterdir())[:8] if root.is_dir() else "a file"
        raise ValueError(f"{root}: exists but is not a {what} (no {SPEC_FILE}; found {found}); "
                         "choose another directory or remove it")
    details = spec_differences(json.loads(path.read_text()), spec.to_json())
    if details:
        raise ValueError(f"{root}: holds a {what} with a different spec (differing fields: {details}); "
                         "choose another directory or remove it")
    if files is not None:
        names = {p.name for p in root.iterdir()}
        missing, extra = sorted(set(files) - names), sorted(names - set(files))
        if missing or extra:
            raise ValueError(f"{root}: {what} with unexpected contents (missing {missing}, unrelated {extra}); "
                             "choose another directory or remove it")


def generate_atomically(out_dir: str | os.PathLike, spec: GeneratedSpec, write: Callable[[Path], None], *,
                        what: str, files: Collection[str] | None = None, fill_empty: bool = False) -> Path:
    """Write the set of ``spec`` to ``out_dir`` with ``write(folder)``, or reuse it.

    Returns the absolute root. An existing ``out_dir`` is checked with
    :func:`check_existing` and reused (``fill_empty``: an empty one is filled
    instead). ``write`` fills a temporary sibling folder; ``spec.json`` is
    written last (it marks a complete set) and the folder is renamed into
    place, so ``out_dir`` is either complete or untouched. When another process
    finished first, its set is checked and kept.
    """
    root = Path(out_dir).absolute()
    if fill_empty and root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    if root.exists():
        check_existing(root, spec, what, files)
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        write(staging)
        write_json_atomic(staging / SPEC_FILE, spec.to_json())  # last: marks a complete set
        try:
            os.rename(staging, root)
        except OSError:
            if not root.exists():
                raise
            check_existing(root, spec, what, files)  # another process finished first
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
