"""Your own ReID data: a folder per identity, or a CSV of (path, pid, camid, split).

Folder layout (``config.dataset.name = "folder"``)::

    ROOT/train/<identity>/*.jpg
    ROOT/query/<identity>/*.jpg
    ROOT/gallery/<identity>/*.jpg

An identity folder's name is the identity (query and gallery folders of the same
name are the same person; train identities are relabelled 0..N-1). The camera
comes from the file name with ``camera_pattern`` (a regular expression whose
first group is the camera number; default Market's ``_c(\\d+)``, as in
``0001_c3s1_000151_01.jpg``). With ``camera_pattern=""`` there is no camera:
every query image is taken as seen by another camera than every gallery image,
so no gallery image is excluded as same-camera.

CSV (``config.dataset.name = "csv"``): ``ROOT/<csv_file>`` (default
``dataset.csv``) with a header naming at least ``path,pid,camid,split``;
``path`` relative to ROOT (or absolute), ``pid`` and ``camid`` integers, ``split``
one of train/query/gallery. Both readers give the evaluation of the standard
benchmarks (same-pid-same-camera gallery images excluded, mAP/CMC/mINP).
"""
from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

from stra_jax.data.reid.common import (IMAGE_SUFFIXES, REID_READERS, ReIDDataset, Record, build_dataset, dataset_path,
                                      image_files)
from stra_jax.utils import is_remote

SPLITS = ("train", "query", "gallery")
CSV_COLUMNS = ("path", "pid", "camid", "split")
_FOLDER_LAYOUT = "ROOT/{train,query,gallery}/<identity>/<images>"


def _camera(path: Path, pattern: re.Pattern | None, split: str) -> int:
    if pattern is None:  # no cameras: queries and gallery count as different views
        return 0 if split != "gallery" else 1
    match = pattern.search(path.name)
    if not match or not match.groups():
        raise ValueError(f"{path}: camera_pattern '{pattern.pattern}' finds no camera number in the file name "
                         "(set config.dataset.options.camera_pattern, or '' for data without cameras)")
    return int(match.group(1))


@REID_READERS.register("folder")  # your own data: a folder per identity
def read_identity_folders(root: str | Path, camera_pattern: str = r"_c(\d+)") -> ReIDDataset:
    """``ROOT/{train,query,gallery}/<identity>/`` -> a dataset; identities by folder name."""
    root = dataset_path(root)
    pattern = re.compile(camera_pattern) if camera_pattern else None
    found: dict[str, list[tuple[str, Path]]] = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: missing; expected the layout {_FOLDER_LAYOUT}")
        found[split] = []
        for identity in sorted(p for p in folder.iterdir() if p.is_dir()):
            images = image_files(identity)
            if not images:
                raise ValueError(f"{identity}: identity folder without images ({', '.join(IMAGE_SUFFIXES)})")
            found[split] += [(identity.name, p) for p in images]
        stray = [p.name for p in image_files(folder)]
        if stray:
            raise ValueError(f"{folder}: images outside identity folders ({stray[:3]}); expected {_FOLDER_LAYOUT}")
    # One integer per identity name, shared by query and gallery.
    names = sorted({name for split in SPLITS for name, _ in found[split]})
    pid = {name: i for i, name in enumerate(names)}
    splits = {split: [Record(str(p), pid[name], _camera(p, pattern, split)) for name, p in found[split]]
              for split in SPLITS}
    return build_dataset("folder", root, splits["train"], splits["query"], splits["gallery"], camera_base=0)


def _integer(value: str, column: str, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {column} {value!r} is not an integer") from None


@REID_READERS.register("csv")  # your own data: path, pid, camid, split
def read_csv_dataset(root: str | Path, csv_file: str = "dataset.csv") -> ReIDDataset:
    """``ROOT/<csv_file>`` rows (path, pid, camid, split) -> a dataset."""
    root = dataset_path(root)
    table = root / csv_file
    if not table.is_file():
        raise FileNotFoundError(f"{table}: not found; expected a CSV with the columns {','.join(CSV_COLUMNS)}")
    splits: dict[str, list[Record]] = {s: [] for s in SPLITS}
    # Whole file, newlines untranslated (what csv wants; epath's open takes no newline=).
    with io.StringIO(table.read_bytes().decode("utf-8-sig"), newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{table}: missing column(s) {missing}; the header has {reader.fieldnames}, "
                             f"expected {','.join(CSV_COLUMNS)}")
        for row_number, row in enumerate(reader, start=2):  # line 1 is the header
            where = f"{table}, row {row_number}"
            split = (row["split"] or "").strip()
            if split not in SPLITS:
                raise ValueError(f"{where}: split {split!r}; expected one of {SPLITS}")
            text = (row["path"] or "").strip()
            path = dataset_path(text) if is_remote(text) or os.path.isabs(text) else root / text
            if not path.is_file():
                raise FileNotFoundError(f"{where}: image {path} not found")
            pid = _integer(row["pid"], "pid", where)
            if pid < 0:
                raise ValueError(f"{where}: pid {pid} is negative; expected an identity number >= 0")
            splits[split].append(Record(str(path), pid, _integer(row["camid"], "camid", where)))
    return build_dataset("csv", root, splits["train"], splits["query"], splits["gallery"], camera_base=0)
