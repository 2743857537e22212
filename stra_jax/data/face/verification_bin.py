"""insightface's ``.bin`` verification sets (LFW, CFP-FP, AgeDB-30, CALFW, CPLFW).

A pickle of ``(images, issame)``: a list of 2P encoded images (JPEG/PNG bytes)
and P booleans; images 2i and 2i+1 are pair i. Most published files were
written by Python 2, whose ``str`` payloads unpickle only with
``encoding="bytes"``; both kinds are read.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Sequence

import numpy as np

from stra_jax.utils import atomic_file


def read_verification_bin(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """``(encoded images, issame (P,) bool)``; a file that is not such a pickle,
    or whose counts disagree, is named with what was found."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .bin verification file")
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except Exception as err:  # pickle raises many types for a file that is not one
        raise ValueError(f"{path}: not a readable (images, issame) pickle ({type(err).__name__}: {err})") from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise ValueError(f"{path}: expected a pickled (images, issame) pair, got {type(obj).__name__}")
    images, issame = obj
    images = [bytes(im) if isinstance(im, (bytes, bytearray, memoryview, np.ndarray)) else im for im in images]
    for i, im in enumerate(images):
        if not isinstance(im, bytes):
            raise ValueError(f"{path}: image {i} is a {type(im).__name__}, expected encoded image bytes")
    issame = np.asarray(issame, bool).reshape(-1)
    if len(images) != 2 * issame.size:
        raise ValueError(f"{path}: {len(images)} images for {issame.size} pairs; expected 2 images per pair")
    return images, issame


def write_verification_bin(path: str | os.PathLike, images: Sequence[bytes], issame: Sequence[bool]) -> Path:
    """Write a ``.bin`` readable by insightface and :func:`read_verification_bin`,
    atomically (no half-written file on failure)."""
    images = [bytes(im) for im in images]
    issame = [bool(v) for v in issame]
    if len(images) != 2 * len(issame):
        raise ValueError(f"write_verification_bin: {len(images)} images for {len(issame)} pairs; expected 2 per pair")
    with atomic_file(path, "wb") as f:
        pickle.dump((images, issame), f, protocol=pickle.HIGHEST_PROTOCOL)
    return Path(path)
