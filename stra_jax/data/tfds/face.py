"""TFDS builders of insightface's face sets, built from the user's copy.

insightface ships each face set as one folder (``faces_webface_112x112``,
``faces_emore``, ...)::

    MANUAL_DIR/train.rec, MANUAL_DIR/train.idx   the training images (MXNet RecordIO)
    MANUAL_DIR/lfw.bin, MANUAL_DIR/cfp_fp.bin, ...   verification pairs

Two builders read such a folder (``manual_dir``) with the project's own readers
(``stra_jax.data.face``) and store the encoded images unchanged (decoding a
TFDS image gives the same pixels as decoding the RecordIO / ``.bin`` bytes):

* ``face_recordio/<set>``: split ``train``, one example per image record in
  ``.idx`` order (``disable_shuffling``): ``image`` (the encoded JPEG/PNG),
  ``label`` (int64, the record's identity 0..N-1). The identity count is stored
  in the dataset's metadata (``num_classes``). Written as ArrayRecord files
  (MS1M: 5.8M images), read by random access (``tfds.data_source`` /
  ``builder.as_data_source("train")``), so training never holds the set in
  memory. ``tfds.load``/``as_dataset`` do not read ArrayRecord (TFDS 4.9):
  use the data source.
* ``face_verification/<set>``: one split per ``.bin`` of ``manual_dir``
  (``lfw``, ``cfp_fp``, ``agedb_30``, ...), one example per pair in file order:
  ``image1``, ``image2`` (encoded), ``is_same`` (bool). Every image is decoded
  once while building (a bad one stops the build, naming the file and index).
  TFRecord files: ``tfds.load("face_verification/<set>", split="lfw")`` works.

``<set>`` (a BuilderConfig, so that several sets live in one ``data_dir``):
``casia_webface``, ``ms1m``, ``glint360k``, ``custom`` (any other folder in
this layout, e.g. one packed by ``stra_jax.tools.pack_faces``) and
``synthetic_faces`` (the built-in set, ``stra_jax.data.face.synthetic``; not
``synthetic``, which ``build_tfds`` reads as the ReID synthetic set).

Build with :func:`build_face_tfds` (``python -m stra_jax.tools.build_tfds
ms1m --manual_dir DIR --data_dir DIR`` builds both). ``manual_dir`` is read with
Python's ``open`` (a local folder); ``data_dir`` may be ``gs://...``. TFDS
writes into a temporary folder and renames it when complete; a failed first
build removes the folders it created.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from stra_jax.data import hide_gpus_from_tf
from stra_jax.data.face.dataset import BIN_SUFFIX, RecordIOTrainSet, find_verification_bins
from stra_jax.data.face.verification_bin import read_verification_bin
from stra_jax.data.image_check import decode_error
from stra_jax.data.tfds.generated import record_spec
from stra_jax.data.tfds.registry import register_tfds, tfds_targets

#: BuilderConfig names: one per insightface set (plus ``custom`` and ``synthetic_faces``).
FACE_SETS = ("casia_webface", "ms1m", "glint360k", "custom", "synthetic_faces")
TRAIN_BUILDER = "face_recordio"
VERIFICATION_BUILDER = "face_verification"
TRAIN_LAYOUT = "MANUAL_DIR/train.rec + MANUAL_DIR/train.idx (insightface's MXNet RecordIO)"
VERIFICATION_LAYOUT = "MANUAL_DIR/<set>.bin (insightface's (images, issame) pickles: lfw.bin, cfp_fp.bin, ...)"
LAYOUT = (f"{TRAIN_LAYOUT}; {VERIFICATION_LAYOUT} -- insightface's folder as extracted "
          "(faces_webface_112x112, faces_emore, ...)")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_INSTRUCTIONS = ("The data cannot be downloaded automatically. Extract insightface's folder yourself and "
                 "pass it as --manual_dir (python -m stra_jax.tools.build_tfds SET --manual_dir DIR "
                 "--data_dir DIR, SET one of " + ", ".join(FACE_SETS) + "). Expected layout:\n\n    "
                 + LAYOUT + "\n")

_DESCRIPTIONS = {
    "casia_webface": "CASIA-WebFace (insightface faces_webface_112x112): 10,572 ids, 494,414 images.",
    "ms1m": "MS1MV2 (insightface faces_emore): 85,742 ids, 5.8M images.",
    "glint360k": "Glint360K (insightface): 360,232 ids, 17M images.",
    "custom": "Any face set in insightface's layout (e.g. packed by stra_jax.tools.pack_faces).",
    "synthetic_faces": "The built-in synthetic face set (stra_jax.data.face.synthetic).",
}


def _configs() -> list[tfds.core.BuilderConfig]:
    return [tfds.core.BuilderConfig(name=n, description=_DESCRIPTIONS[n]) for n in FACE_SETS]


def check_manual_dir(name: str, manual_dir: str | os.PathLike, *, train: bool = True,
                     verification: bool = True) -> Path:
    """``manual_dir`` as a Path, or one error naming it and the expected layout:
    not a folder, no ``train.rec``/``train.idx`` (``train``), no ``*.bin``
    (``verification``)."""
    root = Path(os.fspath(manual_dir))
    if not root.is_dir():
        raise FileNotFoundError(f"{name}: manual_dir {root} is not a folder; expected insightface's "
                                f"extracted folder with the layout {LAYOUT}")
    missing = []
    if train:
        missing += [f for f in ("train.rec", "train.idx") if not (root / f).is_file()]
    if verification and not find_verification_bins(root):
        missing.append(f"*{BIN_SUFFIX}")
    if missing:
        present = sorted(p.name for p in root.iterdir())[:10]
        raise FileNotFoundError(f"{name}: manual_dir {root} has no {', '.join(missing)} (found: "
                                f"{present or 'nothing'}); expected the layout {LAYOUT}")
    return root


def _register_sets(builder: type) -> type:
    """Class decorator: register every set (BuilderConfig) of a face builder in
    ``TFDS_BUILDERS`` as the build of that set."""
    for set_name in FACE_SETS:
        register_tfds(builder, set_name, config=set_name, kind="face")
    return builder


@_register_sets
class FaceRecordio(tfds.core.GeneratorBasedBuilder):
    """insightface's training set (``train.rec`` + ``train.idx``), ArrayRecord files."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release: train (image, label)."}
    BUILDER_CONFIGS = _configs()
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    LAYOUT = TRAIN_LAYOUT

    def __init__(self, *, file_format: str | tfds.core.FileFormat | None = None, **kwargs: Any) -> None:
        # Random access (tfds.data_source) needs ArrayRecord.
        super().__init__(file_format=file_format or tfds.core.FileFormat.ARRAY_RECORD, **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=_DESCRIPTIONS[self.builder_config.name],
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(),  # the record's bytes, stored as read
                "label": tf.int64,
            }),
            supervised_keys=("image", "label"),
            homepage="https://github.com/deepinsight/insightface/tree/master/recognition/_datasets_",
            disable_shuffling=True,  # the .idx order: the RecordIO source's order
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        root = check_manual_dir(self.name, dl_manager.manual_dir, verification=False)
        try:
            train = RecordIOTrainSet(root / "train.rec")
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"{self.name}: manual_dir {root} is not the expected layout {TRAIN_LAYOUT}: "
                             f"{err}") from None
        self.info.metadata["num_classes"] = int(train.num_classes)
        self.info.metadata["source"] = str(root)
        return {"train": self._generate_examples(train)}

    def _generate_examples(self, train: RecordIOTrainSet):
        for index in range(len(train)):
            image, label = train.read(index)  # a label outside the identity header stops the build
            yield index, {"image": image, "label": label}


@_register_sets
class FaceVerification(tfds.core.GeneratorBasedBuilder):
    """insightface's ``.bin`` verification sets: one split per file."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release: one split per .bin."}
    BUILDER_CONFIGS = _configs()
    MANUAL_DOWNLOAD_INSTRUCTIONS = _INSTRUCTIONS
    LAYOUT = VERIFICATION_LAYOUT

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=_DESCRIPTIONS[self.builder_config.name] + " Verification pairs (.bin).",
            features=tfds.features.FeaturesDict({
                "image1": tfds.features.Image(),
                "image2": tfds.features.Image(),
                "is_same": tfds.features.Scalar(dtype=np.bool_),
            }),
            homepage="https://github.com/deepinsight/insightface/tree/master/recognition/_evaluation_",
            disable_shuffling=True,  # pair order matters: insightface's folds are consecutive
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        root = check_manual_dir(self.name, dl_manager.manual_dir, train=False)
        bins = find_verification_bins(root)
        bad = [p.name for n, p in bins.items() if not _SPLIT_NAME.match(n)]
        if bad:
            raise ValueError(f"{self.name}: {bad} in {root}: a .bin's name (without .bin) becomes a split "
                             "name and may hold only letters, digits and '_'; rename the file")
        return {name: self._generate_examples(path) for name, path in bins.items()}

    def _generate_examples(self, path: Path):
        images, issame = read_verification_bin(path)
        for i, image in enumerate(images):
            reason = decode_error(image)
            if reason is not None:
                raise ValueError(f"{path}: image {i} (pair {i // 2}) is undecodable ({reason})")
        for pair, same in enumerate(issame):
            yield pair, {"image1": images[2 * pair], "image2": images[2 * pair + 1], "is_same": bool(same)}


#: insightface's folder names -> the set (BuilderConfig) they hold.
INSIGHTFACE_FOLDERS = {"faces_webface_112x112": "casia_webface", "faces_emore": "ms1m", "glint360k": "glint360k"}


def tfds_config_for(dataset: str, root: str = "", tfds_config: str = "") -> str:
    """The BuilderConfig a face config reads: ``config.dataset.tfds_config``, or
    ``synthetic_faces`` for ``synthetic_faces``, or the set named by ``root``'s
    insightface folder name (``faces_emore`` -> ``ms1m``)."""
    name = tfds_config or ("synthetic_faces" if dataset == "synthetic_faces" else
                           INSIGHTFACE_FOLDERS.get(Path(root or ".").name, ""))
    if not name:
        raise ValueError(f"config.dataset.tfds_config is empty and config.dataset.root={root!r} is not one of "
                         f"insightface's folders {sorted(INSIGHTFACE_FOLDERS)}: set it to the set you built, "
                         f"one of {', '.join(FACE_SETS)}")
    if name not in FACE_SETS:
        raise ValueError(f"config.dataset.tfds_config={name!r}: expected one of {', '.join(FACE_SETS)}")
    return name


def face_tfds_names(name: str) -> list[str]:
    """``name`` -> the TFDS names to build: a set (``ms1m``) -> both builders;
    ``face_recordio/ms1m`` or ``face_verification/ms1m`` -> that one."""
    found = tfds_targets(name, kind="face")
    if found:
        return [entry.tfds_name for entry in found]
    raise ValueError(f"unknown face TFDS name {name!r}: a set ({', '.join(FACE_SETS)}) or "
                     f"{TRAIN_BUILDER}/SET or {VERIFICATION_BUILDER}/SET")


def is_face_name(name: str) -> bool:
    """Whether :func:`build_face_tfds` builds ``name``."""
    try:
        face_tfds_names(name)
    except ValueError:
        return False
    return True


def build_face_tfds(name: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike | None,
                    ) -> list[tfds.core.DatasetBuilder]:
    """Build ``name`` (a set such as ``ms1m``: both builders; or one TFDS name such
    as ``face_recordio/ms1m``) from insightface's folder ``manual_dir`` into
    ``data_dir`` (None: TFDS's default); returns the builders. Already-built
    versions are reused. ``manual_dir`` is checked for everything the builders
    need before anything is written; a failed build removes the folders it
    created (TFDS removes its own incomplete folder)."""
    hide_gpus_from_tf()  # TFDS runs TF ops: keep TF off JAX's GPUs
    tfds.disable_progress_bar()  # a build inside a training run would fill its log
    names = face_tfds_names(name)
    check_manual_dir(name, manual_dir, train=any(n.startswith(TRAIN_BUILDER) for n in names),
                     verification=any(n.startswith(VERIFICATION_BUILDER) for n in names))
    manual_dir = os.fspath(manual_dir)
    data_dir = None if data_dir is None else os.fspath(data_dir)
    builders = []
    for tfds_name in names:
        builder = tfds.builder(tfds_name, data_dir=data_dir)
        dataset_dir = os.path.join(builder.data_dir_root, builder.name)
        config_dir = os.path.join(dataset_dir, builder.builder_config.name)
        downloads = os.path.join(builder.data_dir_root, "downloads")
        created = [d for d in (dataset_dir, config_dir, downloads) if not tf.io.gfile.exists(d)]
        try:
            builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
        except BaseException:
            for folder in created:  # only what this failed build created (deepest first would also do)
                if tf.io.gfile.exists(folder) and (folder != downloads or _only_folders(folder)):
                    tf.io.gfile.rmtree(folder)
            raise
        record_spec(builder, manual_dir)  # a generated set's spec.json, for build_or_check
        builders.append(builder)
    return builders


def _only_folders(path: str) -> bool:
    """Whether ``path`` holds no files (TFDS's empty ``downloads/extracted``)."""
    return all(not files for _, _, files in tf.io.gfile.walk(path))


def _require_built(builder: tfds.core.DatasetBuilder, data_dir: str | None) -> None:
    if not builder.is_prepared():
        set_name = builder.builder_config.name
        raise FileNotFoundError(
            f"TFDS dataset {builder.name}/{set_name} is not built in {builder.data_dir_root}; build it "
            f"from insightface's folder: python -m stra_jax.tools.build_tfds {set_name} --manual_dir "
            f"EXTRACTED_DIR --data_dir {data_dir or '~/tensorflow_datasets'}")


class TFDSTrainSet:
    """A :class:`~stra_jax.data.face.dataset.FaceTrainSet` over the ``train``
    split of ``face_recordio/<set>``: random access to the ArrayRecord files
    (nothing held in memory but the files' indices); ``read(i)`` returns the
    stored bytes and label of the RecordIO set's ``read(i)``.

    :meth:`in_order` gives a view that reads a planned order ahead in chunks
    (one parallel ``__getitems__`` per chunk: far fewer round trips to
    ``gs://`` than one read per image)."""

    def __init__(self, builder: tfds.core.DatasetBuilder) -> None:
        self.builder = builder
        self.source = f"tfds:{builder.data_dir}"
        self._data = builder.as_data_source("train", decoders={"image": tfds.decode.SkipDecoding()})
        num_classes = builder.info.metadata.get("num_classes") if builder.info.metadata else None
        if num_classes is None:
            raise ValueError(f"{builder.data_dir}: no num_classes in the dataset's metadata; rebuild it")
        self.num_classes = int(num_classes)

    def __len__(self) -> int:
        return len(self._data)

    def read(self, index: int) -> tuple[bytes, int]:
        return _example(self._data[int(index)])

    def read_many(self, indices) -> list[tuple[bytes, int]]:
        indices = [int(i) for i in indices]
        return [_example(e) for e in self._data.__getitems__(indices)] if indices else []

    def describe(self, index: int) -> str:
        return f"{self.source} train example {int(index)}"

    def stamp(self) -> dict[str, Any]:
        """What identifies the built data (the image-check cache's key)."""
        split = self.builder.info.splits["train"]
        return {"version": 1, "tfds": self.builder.data_dir, "examples": int(split.num_examples),
                "bytes": int(split.num_bytes), "shards": [int(n) for n in split.shard_lengths]}

    def in_order(self, order, chunk: int = 512) -> "OrderedReads":
        return OrderedReads(self, order, chunk)


class OrderedReads:
    """``train`` read in a known order (the pipeline's): ``read(i)`` of the next
    planned index comes from a chunk read ahead with one ``read_many``; any other
    index is read directly. Same results as ``train.read``."""

    def __init__(self, train: TFDSTrainSet, order, chunk: int) -> None:
        self.train, self.order, self.chunk = train, np.asarray(order, np.int64), max(1, int(chunk))
        self.source, self.num_classes = train.source, train.num_classes
        self._pos = 0
        self._buffer: dict[int, tuple[bytes, int]] = {}
        self._next: list[int] = []

    def __len__(self) -> int:
        return len(self.train)

    def read(self, index: int) -> tuple[bytes, int]:
        index = int(index)
        if not self._next and self._pos < self.order.size and int(self.order[self._pos]) == index:
            self._next = [int(i) for i in self.order[self._pos:self._pos + self.chunk]]
            self._buffer = dict(zip(self._next, self.train.read_many(self._next)))
            self._pos += len(self._next)
            self._next.reverse()  # pop() from the end = the planned order
        if self._next and self._next[-1] == index:
            self._next.pop()
            return self._buffer[index]
        return self.train.read(index)  # off the plan (e.g. the pipeline naming a bad record)

    def describe(self, index: int) -> str:
        return self.train.describe(index)

    def stamp(self) -> dict[str, Any]:
        return self.train.stamp()


def _example(example: dict[str, Any]) -> tuple[bytes, int]:
    return bytes(example["image"]), int(example["label"])


def load_face_train(set_name: str, data_dir: str | os.PathLike | None) -> TFDSTrainSet:
    """The built ``face_recordio/<set_name>`` of ``data_dir`` as a training set."""
    hide_gpus_from_tf()  # TFDS runs TF ops: keep TF off JAX's GPUs
    data_dir = None if data_dir is None else os.fspath(data_dir)
    builder = tfds.builder(f"{TRAIN_BUILDER}/{set_name}", data_dir=data_dir)
    _require_built(builder, data_dir)
    return TFDSTrainSet(builder)


def load_face_verification(set_name: str, data_dir: str | os.PathLike | None,
                           names: tuple[str, ...] = ()) -> tuple[str, dict[str, tuple[list[bytes], np.ndarray]]]:
    """``(data dir of the build, {split: (encoded images, issame)})`` of the built
    ``face_verification/<set_name>``: images 2i and 2i+1 are pair i, as
    ``read_verification_bin`` returns them; all splits (sorted) or the named
    ones (a missing one is named with what is there)."""
    hide_gpus_from_tf()  # TFDS runs TF ops: keep TF off JAX's GPUs
    data_dir = None if data_dir is None else os.fspath(data_dir)
    builder = tfds.builder(f"{VERIFICATION_BUILDER}/{set_name}", data_dir=data_dir)
    _require_built(builder, data_dir)
    available = sorted(builder.info.splits)
    missing = [n for n in names if n not in available]
    if missing:
        raise FileNotFoundError(f"{builder.data_dir}: no verification split(s) {missing}; found {available}")
    out = {}
    for split in (names or available):
        ds = builder.as_dataset(split=split, shuffle_files=False,
                                decoders={"image1": tfds.decode.SkipDecoding(),
                                          "image2": tfds.decode.SkipDecoding()})
        images, issame = [], []
        for example in ds.as_numpy_iterator():
            images += [bytes(example["image1"]), bytes(example["image2"])]
            issame.append(bool(example["is_same"]))
        out[split] = (images, np.asarray(issame, bool))
    return builder.data_dir, out
