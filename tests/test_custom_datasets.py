"""Custom ReID data (stra_jax.data.reid.custom): a folder per identity and a CSV,
built here from the generated synthetic set (Market layout), must give the
Market reader's records and the same retrieval metrics; bad rows are named."""
from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from stra_jax.data.reid import read_dataset
from stra_jax.data.reid.synthetic import SyntheticSpec, generate_market_layout
from stra_jax.evaluation.reid import evaluate

SPLITS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "market"
    generate_market_layout(root, SyntheticSpec(seed=0, num_ids=8, num_cameras=3, images_per_id=4, height=32,
                                               width=16))
    return root


def _pid_cam(name: str) -> tuple[int, int]:
    pid, cam = re.match(r"(-?\d+)_c(\d+)", name).groups()
    return int(pid), int(cam)


def _as_folders(market: Path, out: Path) -> Path:
    for split, folder in SPLITS.items():
        for image in sorted((market / folder).glob("*.jpg")):
            pid, _ = _pid_cam(image.name)
            if pid < 0:
                continue  # junk
            target = out / split / f"person_{pid:04d}"
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(image, target / image.name)
    return out


def _as_csv(market: Path, out: Path, rows_extra: list[dict] | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "dataset.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "pid", "camid", "split", "note"])
        writer.writeheader()
        for split, folder in SPLITS.items():
            for image in sorted((market / folder).glob("*.jpg")):
                pid, cam = _pid_cam(image.name)
                if pid >= 0:
                    writer.writerow(dict(path=str(image), pid=pid, camid=cam - 1, split=split, note=""))
        for row in rows_extra or []:
            writer.writerow(row)
    return out


def _signature(dataset):
    """Per split: (file name, camera) and the identity partition, independent of pid numbering."""
    out = {}
    for split in ("train", "query", "gallery"):
        recs = sorted(getattr(dataset, split), key=lambda r: Path(r.path).name)
        groups = {}
        for r in recs:
            groups.setdefault(r.pid, []).append(Path(r.path).name)
        out[split] = ([Path(r.path).name for r in recs], sorted(map(tuple, groups.values())))
    return out


def _metrics(dataset, seed=0):
    """Retrieval metrics with fixed random features per file name."""
    names = sorted({Path(r.path).name for r in dataset.query + dataset.gallery})
    feats = dict(zip(names, np.random.default_rng(seed).normal(size=(len(names), 8))))
    q, g = dataset.query, dataset.gallery
    # Query and gallery identities must match across the two splits: map pids to names.
    return evaluate(np.stack([feats[Path(r.path).name] for r in q]), np.stack([feats[Path(r.path).name] for r in g]),
                    [r.pid for r in q], [r.pid for r in g], [r.camid for r in q], [r.camid for r in g])


def test_folder_and_csv_match_the_market_reader(market, tmp_path):
    reference = read_dataset("synthetic", market)
    folders = read_dataset("folder", _as_folders(market, tmp_path / "folders"))
    table = read_dataset("csv", _as_csv(market, tmp_path / "csv"))
    for dataset in (folders, table):
        assert _signature(dataset) == _signature(reference)
        ref_cams = {Path(r.path).name: r.camid for r in reference.query + reference.gallery}
        cams = {Path(r.path).name: r.camid for r in dataset.query + dataset.gallery}
        # folder cameras are the file's number (1-based), the CSV's are as written (0-based): same partition
        offset = 1 if dataset is folders else 0
        assert cams == {k: v + offset for k, v in ref_cams.items()}
        ref, got = _metrics(reference), _metrics(dataset)
        assert (got.mAP, got.mINP, got.num_valid_queries) == pytest.approx((ref.mAP, ref.mINP, ref.num_valid_queries))
        np.testing.assert_allclose(got.cmc, ref.cmc)


def test_folder_without_cameras_and_options(market, tmp_path):
    root = _as_folders(market, tmp_path / "folders")
    dataset = read_dataset("folder", root, camera_pattern="")
    assert {r.camid for r in dataset.query} == {0} and {r.camid for r in dataset.gallery} == {1}
    with pytest.raises(ValueError, match=r"options \['csv_file'\]: not options of the 'folder' reader; "
                                         r"its options: \['camera_pattern'\]"):
        read_dataset("folder", root, csv_file="x.csv")
    with pytest.raises(ValueError, match=r"camera_pattern '_cam\(\\d\+\)' finds no camera number"):
        read_dataset("folder", root, camera_pattern=r"_cam(\d+)")
    shutil.rmtree(root / "query")
    with pytest.raises(FileNotFoundError, match=r"query: missing; expected the layout ROOT/\{train,query,gallery\}"):
        read_dataset("folder", root)


@pytest.mark.parametrize("row, message", [
    (dict(path="missing.jpg", pid=1, camid=0, split="query"), r"row (\d+): image .*missing.jpg not found"),
    (dict(path="IMG", pid="seven", camid=0, split="query"), r"row (\d+): pid 'seven' is not an integer"),
    (dict(path="IMG", pid=1, camid="c1", split="gallery"), r"row (\d+): camid 'c1' is not an integer"),
    (dict(path="IMG", pid=1, camid=0, split="test"), r"row (\d+): split 'test'; expected one of"),
])
def test_csv_bad_rows_name_the_row_and_value(market, tmp_path, row, message):
    image = next((market / "query").glob("*.jpg"))
    row = dict(row, path=str(image) if row["path"] == "IMG" else row["path"], note="")
    root = _as_csv(market, tmp_path / "csv", [row])
    rows = len((root / "dataset.csv").read_text().splitlines())
    with pytest.raises((ValueError, FileNotFoundError), match=message) as err:
        read_dataset("csv", root)
    assert f"row {rows}" in str(err.value) and "dataset.csv" in str(err.value)


def test_csv_missing_column(tmp_path):
    (tmp_path / "dataset.csv").write_text("path,pid,split\na.jpg,1,train\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['camid'\]; the header has \['path', 'pid', 'split'\]"):
        read_dataset("csv", tmp_path)


def test_custom_config_variants():
    from configs.reid_custom import get_config

    assert get_config().dataset.name == "folder" and get_config().dataset.options.camera_pattern == r"_c(\d+)"
    config = get_config("csv,smoke")
    assert config.dataset.name == "csv" and config.dataset.options.csv_file == "dataset.csv"
    assert config.input.image_size == (64, 32)
    with pytest.raises(ValueError, match="unknown config variant"):
        get_config("parquet")


def test_queries_without_a_gallery_match_are_counted_in_a_warning(market, tmp_path):
    """A query identity whose gallery images are gone: the dataset's summary (printed
    when a run or eval.py loads it) warns with the count the evaluation leaves out."""
    root = _as_folders(market, tmp_path / "folders")
    assert "warning" not in read_dataset("folder", root).summary()
    gone = next(g for g in sorted((root / "gallery").iterdir()) if (root / "query" / g.name).is_dir())
    queries = len(list((root / "query" / gone.name).iterdir()))
    shutil.rmtree(gone)
    dataset = read_dataset("folder", root)
    assert f"warning: {queries} of {len(dataset.query)} query images have no gallery image of their identity" \
        in dataset.summary()
    assert _metrics(dataset).num_valid_queries == len(dataset.query) - queries
