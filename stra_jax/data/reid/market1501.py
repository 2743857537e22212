"""Market-1501 and DukeMTMC-reID from their extracted folders.

    ROOT/bounding_box_train/0002_c1s1_000451_03.jpg
    ROOT/query/...
    ROOT/bounding_box_test/...     (pid 0000 distractors, pid -1 junk)

ROOT may also be the parent of the usual extracted folder
(``Market-1501-v15.09.15`` / ``DukeMTMC-reID``). Market-1501 sizes: train
12,936 images / 751 ids, query 3,368 / 750, gallery 15,913 with distractors.
"""
from __future__ import annotations

from pathlib import Path

from stra_jax.data.reid.common import (REID_READERS, ReIDDataset, build_dataset, dataset_path, parse_market_folder,
                                      require_dir)

_SUBFOLDERS = ("bounding_box_train", "query", "bounding_box_test")
_LAYOUT = "ROOT/{bounding_box_train,query,bounding_box_test}/PPPP_cCsS_FFFFFF_BB.jpg"


def _resolve(root: Path, extracted_name: str) -> Path:
    nested = root / extracted_name
    return nested if nested.is_dir() and not (root / "query").is_dir() else root


def _read_market_layout(name: str, root: str | Path, extracted_name: str, num_cameras: int) -> ReIDDataset:
    base = _resolve(dataset_path(root), extracted_name)
    train, query, gallery = (
        parse_market_folder(require_dir(base / sub, _LAYOUT), num_cameras, name) for sub in _SUBFOLDERS)
    return build_dataset(name, base, train, query, gallery)


@REID_READERS.register("market1501")
def read_market1501(root: str | Path) -> ReIDDataset:
    """Market-1501 (6 cameras)."""
    return _read_market_layout("market1501", root, "Market-1501-v15.09.15", num_cameras=6)


@REID_READERS.register("dukemtmcreid")
def read_dukemtmc(root: str | Path) -> ReIDDataset:
    """DukeMTMC-reID (same layout, 8 cameras)."""
    return _read_market_layout("dukemtmcreid", root, "DukeMTMC-reID", num_cameras=8)


# Generated into ``root`` first by ``prepare_dataset("synthetic", ...)``.
@REID_READERS.register("synthetic")
def read_synthetic(root: str | Path) -> ReIDDataset:
    """The generated set of ``stra_jax.data.reid.synthetic`` (Market-1501 layout, up to 9 cameras)."""
    return _read_market_layout("synthetic", root, "synthetic", num_cameras=9)
