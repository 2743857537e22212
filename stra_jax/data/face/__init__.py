"""Face recognition data: MXNet RecordIO training sets and ``.bin`` verification pairs."""
from stra_jax.data.face.folder import read_face_folder
from stra_jax.data.face.recordio import (RecordHeader, RecordIOReader, read_face_recordio,
                                         write_face_recordio)
from stra_jax.data.face.verification_bin import read_verification_bin, write_verification_bin

__all__ = ["RecordHeader", "RecordIOReader", "read_face_folder", "read_face_recordio", "read_verification_bin",
           "write_face_recordio", "write_verification_bin"]
