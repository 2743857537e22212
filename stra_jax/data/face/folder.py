"""A face training set as a folder with one sub-folder per identity.

    ROOT/<identity>/<image>.jpg|.png ...

Identities are sorted by folder name and labelled 0..N-1; images sorted by
name within each. An empty identity folder or a stray file at the top level
is named.
"""
from __future__ import annotations

import os
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def read_face_folder(root: str | os.PathLike) -> tuple[list[tuple[str, int]], list[str]]:
    """``([(image path, label)], identity names)`` of ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected ROOT/<identity>/<image>.jpg)")
    stray = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if stray:
        raise ValueError(f"{root}: image {stray[0]!r} directly in the root; expected one sub-folder per identity")
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not names:
        raise ValueError(f"{root}: no identity sub-folders (expected ROOT/<identity>/<image>.jpg)")
    items = []
    for label, name in enumerate(names):
        images = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise ValueError(f"{root / name}: identity folder without images ({', '.join(IMAGE_SUFFIXES)})")
        items += [(str(p), label) for p in images]
    return items, names
