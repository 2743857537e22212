"""TFDS builders (``reid``: the ReID benchmarks; ``face``: insightface RecordIO
training sets and ``.bin`` verification pairs) and the TFDS sources.

Importing this package registers the builders with TFDS, so that
``tfds.load("market1501", data_dir=...)`` and ``tfds.builder(...)`` find them.
"""
from stra_jax.data.tfds.face import (FACE_SETS, FaceRecordio, FaceVerification, build_face_tfds,
                                     load_face_train, load_face_verification)
from stra_jax.data.tfds.reid import TFDS_NAMES, Cuhk03Np, DukemtmcReid, Market1501, Msmt17, SyntheticReid
from stra_jax.data.tfds.source import SOURCES, build_reid_tfds, load_reid_tfds, tfds_name

__all__ = ["FACE_SETS", "SOURCES", "TFDS_NAMES", "Cuhk03Np", "DukemtmcReid", "FaceRecordio", "FaceVerification",
           "Market1501", "Msmt17", "SyntheticReid", "build_face_tfds", "build_reid_tfds", "load_face_train",
           "load_face_verification", "load_reid_tfds", "tfds_name"]
