"""CUHK03 under the new (767/700) protocol, detected or labeled boxes.

    ROOT/cuhk03_new_protocol_config_detected.mat   (and ..._labeled.mat)
    ROOT/images_detected/1_001_1_01.png            (and images_labeled/)

The config files (Zhong et al., CVPR 2017) hold ``filelist`` (image names),
``labels`` (pids), ``camId`` (1/2) and 1-based ``train_idx`` / ``query_idx`` /
``gallery_idx``. The image folders are the ones torchreid extracts from
``cuhk-03.mat``, named ``{campair}_{pid:03d}_{cam}_{img:02d}.png``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from stra_jax.data.reid.common import (REID_READERS, ReIDDataset, Record, build_dataset, dataset_path, missing_files,
                                      require_dir)

SUBSETS = ("detected", "labeled")
_KEYS = ("filelist", "labels", "camId", "train_idx", "query_idx", "gallery_idx")
_LAYOUT = "ROOT/cuhk03_new_protocol_config_{detected,labeled}.mat + ROOT/images_{detected,labeled}/"


def _strings(cell: np.ndarray) -> list[str]:
    """MATLAB cell array of strings -> list of str (loadmat nests each in an array)."""
    out = []
    for item in np.asarray(cell, dtype=object).ravel():
        while isinstance(item, np.ndarray):
            item = item.ravel()[0] if item.size else ""
        out.append(str(item))
    return out


def read_cuhk03(root: str | Path, subset: str = "detected") -> ReIDDataset:
    if subset not in SUBSETS:
        raise ValueError(f"subset={subset!r}: expected one of {SUBSETS}")
    root = dataset_path(root)
    if (root / "cuhk03").is_dir() and not (root / f"images_{subset}").is_dir():
        root = root / "cuhk03"  # torchreid's dataset_dir
    config_path = root / f"cuhk03_new_protocol_config_{subset}.mat"
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: not found; expected the layout {_LAYOUT}")
    image_dir = require_dir(root / f"images_{subset}", _LAYOUT)
    try:
        with config_path.open("rb") as f:  # a local file or a bucket object
            config = scipy.io.loadmat(f)
    except Exception as err:  # scipy raises several types for corrupt files
        raise ValueError(f"{config_path}: cannot be read as a MATLAB file: {err}") from err
    missing = [k for k in _KEYS if k not in config]
    if missing:
        raise ValueError(f"{config_path}: missing keys {missing}; expected {list(_KEYS)}")
    names = _strings(config["filelist"])
    pids = np.asarray(config["labels"]).ravel().astype(int)
    cams = np.asarray(config["camId"]).ravel().astype(int) - 1
    if not len(names) == len(pids) == len(cams):
        raise ValueError(f"{config_path}: filelist/labels/camId lengths differ "
                         f"({len(names)}, {len(pids)}, {len(cams)})")

    def split(key: str) -> list[Record]:
        idx = np.asarray(config[key]).ravel().astype(int) - 1  # MATLAB indices are 1-based
        if idx.size and (idx.min() < 0 or idx.max() >= len(names)):
            raise ValueError(f"{config_path}: {key} has indices outside 1..{len(names)}")
        return [Record(str(image_dir / names[i]), int(pids[i]), int(cams[i])) for i in idx]

    train, query, gallery = split("train_idx"), split("query_idx"), split("gallery_idx")
    absent = missing_files([r.path for r in train + query + gallery], image_dir)
    if absent:
        raise FileNotFoundError(f"{image_dir}: {len(absent)} images named in {config_path.name} are "
                                f"missing, e.g. {absent[:3]}")
    return build_dataset(f"cuhk03_{subset}", root, train, query, gallery)


# The new protocol's two box sets, each a dataset name (no options: the subset is the name).
@REID_READERS.register("cuhk03_detected")
def read_cuhk03_detected(root: str | Path) -> ReIDDataset:
    """CUHK03-NP, detected (DPM) boxes."""
    return read_cuhk03(root, "detected")


@REID_READERS.register("cuhk03_labeled")
def read_cuhk03_labeled(root: str | Path) -> ReIDDataset:
    """CUHK03-NP, hand-labeled boxes."""
    return read_cuhk03(root, "labeled")
