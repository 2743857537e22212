"""A face recognition dataset: a training set of (encoded image, identity) and
the ``.bin`` verification sets found beside it.

insightface's folders (``faces_webface_112x112``, ``faces_emore``, ...) hold::

    ROOT/train.rec, ROOT/train.idx      the training images (MXNet RecordIO)
    ROOT/lfw.bin, ROOT/cfp_fp.bin, ...  verification pairs

``prepare_face_dataset("recordio", ROOT)`` reads that layout; ``"folder"`` reads
``ROOT/train/<identity>/<image>`` (or ROOT itself when it has no ``train``
sub-folder) and the ``.bin`` files of ROOT; ``"synthetic_faces"`` generates the
built-in synthetic set into ROOT first (``stra_jax.data.face.synthetic``).

The training set is read lazily: with insightface's identity header (record 0)
the image keys and the identity count come from that record alone, so
MS1M-size sets open in the time it takes to read their ``.idx``; each label is
read from its record's header when the record is loaded. Without the header,
one pass over the record headers finds the labels.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from stra_jax.data.face.folder import read_face_folder
from stra_jax.data.face.recordio import RecordIOReader
from stra_jax.registry import Registry

BIN_SUFFIX = ".bin"


class FaceTrainSet(Protocol):
    """Random access to a training set: ``len``, ``num_classes`` and
    ``read(i) -> (encoded image bytes, label)`` for i in ``range(len)``."""

    source: str
    num_classes: int

    def __len__(self) -> int: ...

    def read(self, index: int) -> tuple[bytes, int]: ...

    def describe(self, index: int) -> str: ...


class RecordIOTrainSet:
    """The image records of ``train.rec`` (+ ``.idx``). One open file per
    instance: the input pipeline reads from a single thread."""

    def __init__(self, rec: str | os.PathLike) -> None:
        self.source = str(rec)
        self.reader = RecordIOReader(rec)
        keys = self.reader.keys()
        if not keys:
            raise ValueError(f"{rec}: the .idx lists no records")
        header, _ = self.reader.read(keys[0])
        self._labels: np.ndarray | None = None
        if keys[0] == 0 and header.flag > 0 and isinstance(header.label, tuple) and len(header.label) >= 2:
            first_identity, end = int(header.label[0]), int(header.label[1])
            self.keys = np.asarray([k for k in keys if 1 <= k < first_identity], np.int64)
            self.num_classes = end - first_identity
        else:  # no identity header: every record is an image; labels from one pass
            self.keys = np.asarray(keys, np.int64)
            self._labels = np.asarray([self._label(int(k)) for k in self.keys], np.int64)
            self.num_classes = int(self._labels.max()) + 1
        if not len(self.keys):
            raise ValueError(f"{rec}: no image records (identity header: {header.label})")
        if self.num_classes < 1:
            raise ValueError(f"{rec}: identity header {header.label} declares no identities")

    def _label(self, key: int) -> int:
        header, _ = self.reader.read(key)
        label = header.label[0] if isinstance(header.label, tuple) else header.label
        return int(label)

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, index: int) -> tuple[bytes, int]:
        key = int(self.keys[index])
        header, image = self.reader.read(key)
        label = int(header.label[0] if isinstance(header.label, tuple) else header.label)
        if not 0 <= label < self.num_classes:
            raise ValueError(f"{self.describe(index)}: label {label} outside the {self.num_classes} identities "
                             "of the identity header")
        return image, label

    def describe(self, index: int) -> str:
        key = int(self.keys[index])
        return f"{self.source} record {key} (byte offset {self.reader.index[key]})"


class FolderTrainSet:
    """ROOT/<identity>/<image> files, identities sorted by name and labelled 0..N-1."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.source = str(root)
        items, self.identities = read_face_folder(root)
        self.paths = [p for p, _ in items]
        self.labels = np.asarray([label for _, label in items], np.int64)
        self.num_classes = len(self.identities)

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: int) -> tuple[bytes, int]:
        with open(self.paths[index], "rb") as f:
            return f.read(), int(self.labels[index])

    def describe(self, index: int) -> str:
        return self.paths[index]


@dataclasses.dataclass
class FaceDataset:
    """``train``: the training set; ``verification``: name -> ``.bin`` path;
    ``pairs``: name -> ``(encoded images, issame)`` already read (the TFDS
    source, whose ``verification`` values then only name the build's folder)."""

    name: str
    root: Path
    train: FaceTrainSet
    verification: dict[str, Path]
    pairs: dict[str, tuple[list[bytes], np.ndarray]] | None = None

    def summary(self) -> str:
        sets = ", ".join(self.verification) or "none"
        return (f"face dataset {self.name} ({self.root}): {len(self.train)} training images of "
                f"{self.train.num_classes} identities; verification sets: {sets}")


def find_verification_bins(root: Path, names: tuple[str, ...] = ()) -> dict[str, Path]:
    """``{stem: path}`` of the ``.bin`` files in ``root`` (sorted), or of the
    named ones (a missing one is named with what is there)."""
    found = {p.stem: p for p in sorted(root.glob(f"*{BIN_SUFFIX}"))}
    if not names:
        return found
    missing = [n for n in names if n not in found]
    if missing:
        raise FileNotFoundError(f"{root}: no verification set(s) {missing} (*.bin); found {sorted(found) or 'none'}")
    return {n: found[n] for n in names}


#: face ``config.dataset.name`` -> reader ``reader(root, verification) -> FaceDataset``,
#: registered beside each reader (``@FACE_READERS.register("name")``).
FACE_READERS: Registry[Callable[..., FaceDataset]] = Registry("face dataset")


# ``synthetic_faces`` is generated into ROOT first by prepare_face_dataset, then read as RecordIO.
@FACE_READERS.register("synthetic_faces")
@FACE_READERS.register("recordio")
def read_recordio_dataset(root: str | os.PathLike, verification: tuple[str, ...] = ()) -> FaceDataset:
    root = Path(root)
    rec = root / "train.rec"
    if not rec.is_file():
        raise FileNotFoundError(f"{rec}: no such file (expected insightface's layout: ROOT/train.rec, "
                                "ROOT/train.idx and ROOT/<set>.bin)")
    return FaceDataset("recordio", root, RecordIOTrainSet(rec), find_verification_bins(root, verification))


@FACE_READERS.register("folder")
def read_folder_dataset(root: str | os.PathLike, verification: tuple[str, ...] = ()) -> FaceDataset:
    root = Path(root)
    train = root / "train" if (root / "train").is_dir() else root
    return FaceDataset("folder", root, FolderTrainSet(train), find_verification_bins(root, verification))


def prepare_face_dataset(name: str, root: str | os.PathLike, synthetic: dict | None = None,
                         verification: tuple[str, ...] = ()) -> FaceDataset:
    """Read a face dataset by name (one of ``FACE_READERS``); ``synthetic_faces`` is
    generated into ``root`` first when absent (``synthetic``: keyword arguments
    of ``FaceSyntheticSpec``)."""
    reader = FACE_READERS.get(name)
    if name == "synthetic_faces":
        from stra_jax.data.face.synthetic import FaceSyntheticSpec, generate_face_set

        generate_face_set(Path(root), FaceSyntheticSpec(**(synthetic or {})))
    dataset = reader(root, tuple(verification))
    dataset.name = name
    return dataset
