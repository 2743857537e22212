"""Face recognition data: MXNet RecordIO training sets, image folders, ``.bin``
verification pairs, the datasets built from them, and the synthetic face set."""
from stra_jax.data.face.dataset import FACE_READERS, FaceDataset, find_verification_bins, prepare_face_dataset
from stra_jax.data.face.folder import read_face_folder
from stra_jax.data.face.recordio import (RecordHeader, RecordIOReader, read_face_recordio,
                                         write_face_recordio)
from stra_jax.data.face.verification_bin import read_verification_bin, write_verification_bin

__all__ = ["FACE_READERS", "FaceDataset", "RecordHeader", "RecordIOReader", "find_verification_bins",
           "prepare_face_dataset", "read_face_folder", "read_face_recordio", "read_verification_bin",
           "write_face_recordio", "write_verification_bin"]
