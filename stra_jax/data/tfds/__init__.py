"""TFDS builders (``stra_jax.data.tfds.reid``) and the TFDS source of ReID data.

Importing this package registers the builders with TFDS, so that
``tfds.load("market1501", data_dir=...)`` and ``tfds.builder(...)`` find them.
"""
from stra_jax.data.tfds.reid import TFDS_NAMES, Cuhk03Np, DukemtmcReid, Market1501, Msmt17, SyntheticReid
from stra_jax.data.tfds.source import SOURCES, build_reid_tfds, load_reid_tfds, tfds_name

__all__ = ["SOURCES", "TFDS_NAMES", "Cuhk03Np", "DukemtmcReid", "Market1501", "Msmt17", "SyntheticReid",
           "build_reid_tfds", "load_reid_tfds", "tfds_name"]
