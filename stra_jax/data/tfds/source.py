"""The TFDS source of ReID data (``config.dataset.source = "tfds"``).

A ReID benchmark is small (Market-1501's encoded images are ~70 MB, MSMT17's
~1 GB), so each host reads its built TFDS splits sequentially once -- a few
large record-file reads from ``data_dir`` (a local folder or ``gs://``)
instead of tens of thousands of small files -- and keeps the encoded images in
host memory (``ReIDDataset.images``). The input pipeline then assembles every
batch in the folder source's deterministic order (``stra_jax.data.reid.pipeline``),
so both sources give the same batches and the same metrics.
"""
from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf
import tensorflow_datasets as tfds

from stra_jax.data import hide_gpus_from_tf
from stra_jax.data.reid.common import ReIDDataset, Record, build_dataset
from stra_jax.data.tfds.generated import record_spec
from stra_jax.data.tfds.registry import tfds_name
from stra_jax.data.tfds.reid import SPLITS

SOURCES = ("folder", "tfds")


def build_reid_tfds(name: str, manual_dir: str | os.PathLike, data_dir: str | os.PathLike | None,
                    ) -> tfds.core.DatasetBuilder:
    """Build TFDS ``name`` (e.g. ``market1501``, ``cuhk03_np/labeled``) from the extracted
    folder ``manual_dir`` into ``data_dir`` (None: TFDS's default); returns the builder.
    Already-built versions are reused. TFDS writes into ``*.incomplete*`` and renames;
    a failed first build also removes the dataset folder it created."""
    hide_gpus_from_tf()  # TFDS runs TF ops: keep TF off JAX's GPUs
    tfds.disable_progress_bar()  # a build inside a training run would fill its log
    builder = tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
    manual_dir = os.fspath(manual_dir)
    if not tf.io.gfile.isdir(manual_dir) or not tf.io.gfile.listdir(manual_dir):
        raise FileNotFoundError(f"{name}: manual_dir {manual_dir} is missing or empty; expected the "
                                f"extracted dataset with the layout {builder.LAYOUT}")
    dataset_dir = os.path.join(builder.data_dir_root, builder.name)
    existed = tf.io.gfile.exists(dataset_dir)
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except BaseException:
        if not existed and tf.io.gfile.exists(dataset_dir):
            tf.io.gfile.rmtree(dataset_dir)  # only the incomplete build's remains
        raise
    record_spec(builder, manual_dir)  # a generated set's spec.json, for build_or_check
    return builder


def load_reid_tfds(dataset: str, data_dir: str | os.PathLike | None) -> ReIDDataset:
    """The built TFDS splits of ``dataset`` (a ``config.dataset.name``) in ``data_dir``,
    as a :class:`ReIDDataset` whose records' paths are the stored relative paths and
    whose ``images`` hold the encoded images."""
    hide_gpus_from_tf()  # TFDS runs TF ops: keep TF off JAX's GPUs
    name = tfds_name(dataset)
    builder = tfds.builder(name, data_dir=None if data_dir is None else os.fspath(data_dir))
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"TFDS dataset {name} is not built in {builder.data_dir}; build it from the extracted "
            f"folder: python -m stra_jax.tools.build_tfds {name} --manual_dir EXTRACTED_DIR "
            f"--data_dir {data_dir or '~/tensorflow_datasets'}")
    images: dict[str, bytes] = {}
    splits: dict[str, list[Record]] = {}
    for split in SPLITS:
        ds = builder.as_dataset(split=split, shuffle_files=False,
                                decoders={"image": tfds.decode.SkipDecoding()})  # keep the JPEG bytes
        records = []
        for example in ds.as_numpy_iterator():
            path = example["path"].decode()
            images[path] = example["image"]
            records.append(Record(path, int(example["pid"]), int(example["camid"])))
        splits[split] = records
    built = build_dataset(dataset, Path(builder.data_dir), splits["train"], splits["query"],
                          splits["gallery"], relabel_train=False)  # stored already relabelled
    return ReIDDataset(built.name, f"tfds:{builder.data_dir}", built.train, built.query, built.gallery,
                       images=images)
