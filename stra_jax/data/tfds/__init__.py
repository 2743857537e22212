"""TFDS builders (``reid``: the ReID benchmarks; ``face``: insightface RecordIO
training sets and ``.bin`` verification pairs) and the TFDS sources.

Importing this package registers the builders with TFDS, so that
``tfds.load("market1501", data_dir=...)`` and ``tfds.builder(...)`` find them,
and in ``TFDS_BUILDERS`` (``registry.py``), where ``build_tfds`` and the TFDS
sources look names up. Add a builder: its class plus one ``register_tfds`` line
beside it, in a module imported here.
"""
from stra_jax.data.tfds.face import (FACE_SETS, FaceRecordio, FaceVerification, build_face_tfds,
                                     load_face_train, load_face_verification)
from stra_jax.data.tfds.registry import TFDS_BUILDERS, TFDSEntry, register_tfds, tfds_targets
from stra_jax.data.tfds.reid import Cuhk03Np, DukemtmcReid, Market1501, Msmt17, SyntheticReid
from stra_jax.data.tfds.source import SOURCES, build_reid_tfds, load_reid_tfds, tfds_name

__all__ = ["FACE_SETS", "SOURCES", "TFDS_BUILDERS", "TFDSEntry", "Cuhk03Np", "DukemtmcReid", "FaceRecordio", "FaceVerification",
           "Market1501", "Msmt17", "SyntheticReid", "build_face_tfds", "build_reid_tfds", "load_face_train",
           "load_face_verification", "load_reid_tfds", "register_tfds", "tfds_name", "tfds_targets"]
