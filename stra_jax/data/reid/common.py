"""Records and splits shared by the ReID dataset readers.

A reader turns a dataset's standard extracted layout into three lists of
:class:`Record` (path, pid, camid): ``train`` with pids relabelled 0..N-1,
``query`` and ``gallery`` with the original pids (0 = distractor, kept in the
gallery). Camera ids are 0-based, as torchreid stores them.
"""
from __future__ import annotations

import dataclasses
import io
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from etils import epath

from stra_jax.registry import Registry
from stra_jax.utils import as_path, is_remote

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
MARKET_NAME = re.compile(r"([-\d]+)_c(\d+)")  # PPPP_cCsS_FFFFFF_BB.jpg

#: ``config.dataset.name`` -> reader ``reader(root, **options) -> ReIDDataset``; the
#: keyword options after ``root`` are its ``config.dataset.options``. Register a reader
#: beside it: ``@REID_READERS.register("my_set")``.
REID_READERS: Registry[Callable[..., ReIDDataset]] = Registry("dataset")


@dataclasses.dataclass(frozen=True)
class Record:
    path: str
    pid: int
    camid: int  # 0-based


@dataclasses.dataclass(frozen=True)
class ReIDDataset:
    """One ReID benchmark split: train (relabelled), query and gallery.

    ``images``: the encoded images by record path when they are held in memory
    (the TFDS source, ``stra_jax.data.tfds``); None when the paths are files.
    ``camera_base``: what to add to a record's 0-based ``camid`` to show the
    camera as the files name it (1 for the benchmarks' ``cN`` names; 0 for the
    custom readers, whose ``camid`` is the number as written).
    """

    name: str
    root: str
    train: tuple[Record, ...]
    query: tuple[Record, ...]
    gallery: tuple[Record, ...]
    images: Mapping[str, bytes] | None = dataclasses.field(default=None, repr=False, compare=False)
    camera_base: int = 1

    def camera_name(self, record: Record) -> int:
        """The camera number of ``record`` as its file name writes it."""
        return record.camid + self.camera_base

    def open_image(self, path: str) -> str | io.BytesIO:
        """What ``PIL.Image.open`` takes for a record's image: its file, or its bytes."""
        return path if self.images is None else io.BytesIO(self.images[path])

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({r.camid for r in self.train})

    def summary(self) -> str:
        rows = [("train", self.train), ("query", self.query), ("gallery", self.gallery)]
        lines = [f"{self.name} at {self.root}", f"  {'subset':<8}{'ids':>7}{'images':>9}{'cameras':>9}"]
        for label, recs in rows:
            lines.append(f"  {label:<8}{len({r.pid for r in recs}):>7}{len(recs):>9}"
                         f"{len({r.camid for r in recs}):>9}")
        unmatched = unmatched_queries(self.query, self.gallery)
        if unmatched:
            lines.append(f"warning: {unmatched} of {len(self.query)} query images have no gallery image of their "
                         "identity from another camera; the evaluation leaves them out (as the benchmarks' "
                         "protocol does), so mAP and CMC are over the other queries only")
        return "\n".join(lines)


def unmatched_queries(query: Sequence[Record], gallery: Sequence[Record]) -> int:
    """How many queries have no valid gallery match: no gallery image of the same
    identity from another camera (the protocol's rule for what counts)."""
    cameras: dict[int, set[int]] = {}
    for r in gallery:
        cameras.setdefault(r.pid, set()).add(r.camid)
    return sum(not (cameras.get(q.pid, set()) - {q.camid}) for q in query)


def dataset_path(root: str | os.PathLike) -> Path | epath.Path:
    """A dataset root for the readers: a local path as ``pathlib.Path`` (as given);
    an ``epath.Path`` stays one, and ``gs://...`` becomes one (``tf.io.gfile``). The
    readers use only what both offer (``/``, ``iterdir``, ``is_dir``, ``open``, ...)."""
    if isinstance(root, epath.Path) or is_remote(root):
        return as_path(root)
    return Path(root)


def _listing_only(folder: Path | epath.Path) -> bool:
    """Folders whose files are found by listing alone (epath: a bucket, where a
    per-file ``is_file`` is one request each)."""
    return isinstance(folder, epath.Path)


def image_files(folder: Path | epath.Path) -> list[Path]:
    """Image files of a folder, sorted by name; other files (Thumbs.db, .txt) are ignored."""
    listed = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(listed if _listing_only(folder) else [p for p in listed if p.is_file()])


def missing_files(paths: Sequence[str], folder: Path | epath.Path) -> list[str]:
    """The ``paths`` (files under ``folder``) that do not exist: one check per file
    locally, one recursive listing of ``folder`` for an epath (bucket) folder."""
    if not _listing_only(folder):
        return [p for p in paths if not Path(p).is_file()]
    present = {os.fspath(d / name) for d, _, names in folder.walk() for name in names}
    return [p for p in paths if p not in present]


def images_under(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (recursively, sorted) for the tools that take
    a folder of images; fails naming the folder when it is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of images")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{folder}: no images with suffix {IMAGE_SUFFIXES}")
    return paths


def require_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: folder not found; expected the layout {layout}")
    return path


def parse_market_folder(folder: Path, num_cameras: int, dataset: str) -> list[Record]:
    """Records of a Market-1501-style folder; junk (pid -1) dropped, pid 0 kept."""
    records = []
    for path in image_files(folder):
        match = MARKET_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path}: file name does not follow {dataset}'s PPPP_cC... convention "
                             f"(pattern {MARKET_NAME.pattern!r})")
        try:
            pid, cam = int(match.group(1)), int(match.group(2))
        except ValueError:  # e.g. "00-1_c1...": the pattern allows '-' anywhere in the id
            raise ValueError(f"{path}: file name does not follow {dataset}'s PPPP_cC... convention "
                             f"(person id {match.group(1)!r} is not an integer)") from None
        if pid == -1:
            continue  # junk images: ignored by the protocol
        if pid < 0 or not 1 <= cam <= num_cameras:
            raise ValueError(f"{path}: pid {pid} / camera {cam} out of range "
                             f"(expected pid >= 0 and camera 1..{num_cameras})")
        records.append(Record(str(path), pid, cam - 1))
    return records


def relabel(records: Iterable[Record]) -> tuple[Record, ...]:
    """Map train pids to 0..N-1 in sorted pid order."""
    records = list(records)
    label = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return tuple(dataclasses.replace(r, pid=label[r.pid]) for r in records)


def build_dataset(name: str, root: Path, train: Sequence[Record], query: Sequence[Record],
                  gallery: Sequence[Record], *, relabel_train: bool = True, camera_base: int = 1) -> ReIDDataset:
    """Check the splits and assemble a dataset; an empty split or a query set
    whose identities are all absent from the gallery is an error."""
    for label, recs in (("train", train), ("query", query), ("gallery", gallery)):
        if not recs:
            raise ValueError(f"{name} at {root}: the {label} split is empty")
    if not {r.pid for r in query} & {r.pid for r in gallery}:
        raise ValueError(f"{name} at {root}: no query identity appears in the gallery; "
                         "retrieval cannot be evaluated")
    return ReIDDataset(name, str(root), relabel(train) if relabel_train else tuple(train),
                       tuple(query), tuple(gallery), camera_base=camera_base)
