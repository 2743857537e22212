"""MSMT17 from its list files.

    ROOT/MSMT17_V1/train/0000/0000_000_01_0303morning_0015_0.jpg
    ROOT/MSMT17_V1/test/...
    ROOT/MSMT17_V1/list_{train,val,query,gallery}.txt     lines: "relative/path.jpg pid"

(``MSMT17_V2`` with ``mask_train_v2`` / ``mask_test_v2`` folders works too.) The
camera is the third ``_`` field of the file name (1..15). As in torchreid, the
validation list is not added to training unless ``use_val=True``.
"""
from __future__ import annotations

from pathlib import Path

from stra_jax.data.reid.common import (REID_READERS, ReIDDataset, Record, build_dataset, dataset_path, missing_files,
                                      require_dir)

_VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
_LAYOUT = "ROOT/MSMT17_V1/{train,test}/ + ROOT/MSMT17_V1/list_{train,val,query,gallery}.txt"


def _read_list(list_path: Path, image_dir: Path) -> list[Record]:
    if not list_path.is_file():
        raise FileNotFoundError(f"{list_path}: list file not found; expected the layout {_LAYOUT}")
    records = []
    for lineno, line in enumerate(list_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            rel, pid = parts[0], int(parts[1])
            camid = int(Path(rel).name.split("_")[2]) - 1
        except (IndexError, ValueError) as err:
            raise ValueError(f"{list_path}:{lineno}: {line!r}: expected 'PID/PID_IDX_CC_....jpg PID'") from err
        if not 0 <= camid < 15:
            raise ValueError(f"{list_path}:{lineno}: camera {camid + 1} out of range 1..15")
        records.append(Record(str(image_dir / rel), pid, camid))
    missing = missing_files([r.path for r in records], image_dir)
    if missing:
        raise FileNotFoundError(f"{list_path}: {len(missing)} listed images are missing, e.g. {missing[:3]}")
    return records


@REID_READERS.register("msmt17")
def read_msmt17(root: str | Path, use_val: bool = False) -> ReIDDataset:
    root = dataset_path(root)
    for version, (train_dir, test_dir) in _VERSIONS.items():
        base = root / version
        if base.is_dir():
            break
    else:
        base, (train_dir, test_dir) = root, _VERSIONS["MSMT17_V1"]  # ROOT is the extracted folder
    train_images = require_dir(base / train_dir, _LAYOUT)
    test_images = require_dir(base / test_dir, _LAYOUT)
    train = _read_list(base / "list_train.txt", train_images)
    if use_val:
        train += _read_list(base / "list_val.txt", train_images)
    query = _read_list(base / "list_query.txt", test_images)
    gallery = _read_list(base / "list_gallery.txt", test_images)
    return build_dataset("msmt17", base, train, query, gallery)
