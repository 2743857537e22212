"""A face training set as a folder with one sub-folder per identity.

    ROOT/<identity>/<image>.jpg|.png ...

Identities are sorted by folder name and labelled 0..N-1; images sorted by
name within each. An empty identity folder or a stray file at the top level
is named (``stra_jax.data.class_folders``, shared with the classification task).
"""
from __future__ import annotations

import os

from stra_jax.data.class_folders import IMAGE_SUFFIXES, read_class_folders

__all__ = ["IMAGE_SUFFIXES", "read_face_folder"]


def read_face_folder(root: str | os.PathLike) -> tuple[list[tuple[str, int]], list[str]]:
    """``([(image path, label)], identity names)`` of ``root``."""
    items, names, _ = read_class_folders(root, kind="identity")
    return items, names
