"""TFDS builders of the ReID benchmarks, built from the user's extracted copy.

None of these sets can be downloaded automatically (their licences require a
request or they were withdrawn), so each builder reads ``manual_dir``: the
folder ``config.dataset.root`` would point at for the folder source. The
builder reads it with the project's own reader (``stra_jax.data.reid``), so
the splits, the train relabelling and the junk filtering are exactly the
folder source's, decodes every image once (a corrupt file stops the build,
naming it), and writes the encoded images unchanged: decoding a TFDS example
gives the same pixels as decoding the file.

Features (one example per image):

* ``image``: the encoded JPEG/PNG, as in the extracted folder;
* ``pid``: ``train``: the class label 0..N-1 (original ids in sorted order,
  torchreid's relabelling); ``query``/``gallery``: the original person id
  (0 = distractor);
* ``camid``: 0-based camera;
* ``path``: the image's path relative to the dataset folder.

Splits ``train``, ``query``, ``gallery``, in the readers' order
(``disable_shuffling``), so both sources feed the same examples in the same
order. Build with ``python -m stra_jax.tools.build_tfds NAME --manual_dir DIR
--data_dir DIR`` (``data_dir`` may be ``gs://...``); TFDS writes into a
temporary folder and renames it when complete.
"""
from __future__ import annotations

import os
from typing import Any, ClassVar

import tensorflow as tf
import tensorflow_datasets as tfds

from stra_jax.data.image_check import check_images
from stra_jax.data.reid import REID_READERS, ReIDDataset
from stra_jax.data.tfds.registry import TFDS_BUILDERS, register_tfds

SPLITS = ("train", "query", "gallery")
_WHERE = ("The data cannot be downloaded automatically. Extract it yourself and pass the "
          "folder as --manual_dir (python -m stra_jax.tools.build_tfds {name} --manual_dir DIR "
          "--data_dir DIR). Expected layout:\n\n    {layout}\n")


class ReIDBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """A ReID benchmark read from ``manual_dir`` by the folder source's reader."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First release: train/query/gallery."}
    LAYOUT: ClassVar[str] = ""
    HOMEPAGE: ClassVar[str] = ""
    DESCRIPTION: ClassVar[str] = ""

    def reader_name(self) -> str:
        """The ``stra_jax.data.reid.REID_READERS`` name that reads ``manual_dir``:
        the dataset this builder (and config) is registered for."""
        config = self.builder_config.name if self.builder_config else ""
        return TFDS_BUILDERS.get(f"{self.name}/{config}" if config else self.name).dataset

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(),  # stored as read: same bytes, same pixels
                "pid": tf.int64,
                "camid": tf.int64,
                "path": tfds.features.Text(),
            }),
            supervised_keys=("image", "pid"),
            homepage=self.HOMEPAGE,
            disable_shuffling=True,  # keep the readers' order: the folder source's order
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
        dataset = read_manual_dir(self.name, self.reader_name(), os.fspath(dl_manager.manual_dir),
                                  self.LAYOUT)
        return {split: self._generate_examples(dataset, split) for split in SPLITS}

    def _generate_examples(self, dataset: ReIDDataset, split: str):
        for index, record in enumerate(getattr(dataset, split)):
            yield index, {"image": record.path, "pid": record.pid, "camid": record.camid,
                          "path": os.path.relpath(record.path, dataset.root)}


def read_manual_dir(name: str, reader: str, manual_dir: str, layout: str) -> ReIDDataset:
    """The dataset in ``manual_dir`` read by ``REID_READERS[reader]``, every image decoded
    once; a missing folder or a bad file fails naming ``manual_dir`` and the layout."""
    if not tf.io.gfile.isdir(manual_dir):
        raise FileNotFoundError(f"{name}: manual_dir {manual_dir} is not a folder; expected the "
                                f"extracted dataset with the layout {layout}")
    try:
        dataset = REID_READERS.get(reader)(manual_dir)
    except (FileNotFoundError, ValueError) as err:
        raise ValueError(f"{name}: manual_dir {manual_dir} is not the expected layout {layout}: {err}") from None
    check_images(dataset.train + dataset.query + dataset.gallery)  # names a corrupt file
    return dataset


def _instructions(name: str, layout: str) -> str:
    return _WHERE.format(name=name, layout=layout)


class Market1501(ReIDBuilder):
    """Market-1501 (Zheng et al., ICCV 2015): 1,501 ids, 6 cameras."""

    LAYOUT = "MANUAL_DIR/{bounding_box_train,query,bounding_box_test}/PPPP_cCsS_FFFFFF_BB.jpg"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions("market1501", LAYOUT)
    HOMEPAGE = "https://zheng-lab-anu.github.io/Project/project_reid.html"
    DESCRIPTION = "Market-1501: 751 train ids (12,936 images), 3,368 queries, 19,732 gallery images."


register_tfds(Market1501, "market1501")


class DukemtmcReid(ReIDBuilder):
    """DukeMTMC-reID (Zheng et al., ICCV 2017): 8 cameras, Market-1501 layout."""

    LAYOUT = "MANUAL_DIR/{bounding_box_train,query,bounding_box_test}/PPPP_cC_fFFFFFFF.jpg"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions("dukemtmc_reid", LAYOUT)
    DESCRIPTION = "DukeMTMC-reID: 702 train ids (16,522 images), 2,228 queries, 17,661 gallery images."


register_tfds(DukemtmcReid, "dukemtmcreid")


class Cuhk03Np(ReIDBuilder):
    """CUHK03 under the new protocol (Zhong et al., CVPR 2017): 767 train / 700 test ids."""

    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name="detected", description="Detected (DPM) boxes."),
        tfds.core.BuilderConfig(name="labeled", description="Hand-labeled boxes."),
    ]
    LAYOUT = "MANUAL_DIR/cuhk03_new_protocol_config_{detected,labeled}.mat + MANUAL_DIR/images_{detected,labeled}/"
    MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions("cuhk03_np/detected", LAYOUT)
    DESCRIPTION = "CUHK03-NP: 767 train ids, 700 test ids, 1,400 queries."


register_tfds(Cuhk03Np, "cuhk03_detected", config="detected")
register_tfds(Cuhk03Np, "cuhk03_labeled", config="labeled")


class Msmt17(ReIDBuilder):
    """MSMT17 (Wei et al., CVPR 2018): 4,101 ids, 15 cameras, official lists."""

    LAYOUT = ("MANUAL_DIR/{train,test}/ + MANUAL_DIR/list_{train,val,query,gallery}.txt "
              "(MSMT17_V1 or MSMT17_V2)")
    MANUAL_DOWNLOAD_INSTRUCTIONS = _instructions("msmt17", LAYOUT)
    DESCRIPTION = "MSMT17: 1,041 train ids (30,248 images), 11,659 queries, 82,161 gallery images."


register_tfds(Msmt17, "msmt17")


class SyntheticReid(ReIDBuilder):
    """The built-in synthetic set (``stra_jax.data.reid.synthetic``, Market-1501 layout)."""

    LAYOUT = "MANUAL_DIR/{bounding_box_train,query,bounding_box_test}/PPPP_cCsS_FFFFFF_BB.jpg (generated)"
    MANUAL_DOWNLOAD_INSTRUCTIONS = ("Generate the set first (python -m stra_jax.tools.build_tfds "
                                    "synthetic_reid --manual_dir DIR --data_dir DIR --generate generates "
                                    "it into an absent or empty DIR). Layout:\n\n    " + LAYOUT + "\n")
    DESCRIPTION = "Synthetic part-structured pedestrians (stra_jax.data.reid.synthetic)."


register_tfds(SyntheticReid, "synthetic")
