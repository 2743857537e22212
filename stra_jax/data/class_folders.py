"""A folder with one sub-folder per class (torchvision's ``ImageFolder`` layout),
read by the face training set (one folder per identity) and the classification
task (one folder per class)::

    ROOT/<class>/<image>.jpg|.jpeg|.png|.bmp ...

Classes are sorted by folder name and labelled 0..N-1 (so the label of a class
is the same in every split that lists the same folders); images are sorted by
name within each. An empty class folder or an image directly in the root is
named; files that are not images are counted, not read.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def read_class_folders(root: str | os.PathLike, *, kind: str = "class",
                       classes: Sequence[str] | None = None) -> tuple[list[tuple[str, int]], list[str], list[str]]:
    """``([(image path, label)], class names, the files skipped as not images)`` of ``root``.

    ``kind`` names a class in messages ("identity" for faces). ``classes``: the
    class names of another split (e.g. the training split) to label this one
    with; a folder not among them is an error naming it."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected ROOT/<{kind}>/<image>.jpg)")
    stray = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if stray:
        raise ValueError(f"{root}: image {stray[0]!r} directly in the root; expected one sub-folder per {kind}")
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not names:
        raise ValueError(f"{root}: no {kind} sub-folders (expected ROOT/<{kind}>/<image>.jpg)")
    labels = {name: i for i, name in enumerate(names if classes is None else classes)}
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise ValueError(f"{root / unknown[0]}: {kind} {unknown[0]!r} is not among the {len(labels)} {kind} "
                         f"folders of the training split ({len(unknown)} such folder(s))")
    items: list[tuple[str, int]] = []
    skipped: list[str] = []
    for name in names:
        files = sorted(p for p in (root / name).iterdir() if p.is_file())
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        skipped += [str(p) for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if not images:
            raise ValueError(f"{root / name}: {kind} folder without images ({', '.join(IMAGE_SUFFIXES)})")
        items += [(str(p), labels[name]) for p in images]
    return items, list(names if classes is None else classes), skipped
