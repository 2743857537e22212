"""MXNet RecordIO (``train.rec`` + ``train.idx``), read and written without mxnet.

insightface ships CASIA-WebFace, MS1M and Glint in this format:

* ``.idx``: text lines ``key<TAB>byte offset`` into the ``.rec``;
* each record: uint32 magic ``0xced7230a``, uint32 ``cflag << 29 | length``,
  ``length`` payload bytes, zero-padded to 4 bytes. ``cflag`` 0 is a whole
  record; 1, 2, 3 are the first, middle and last parts of a record that was
  split where its payload contained the magic number (the parts are joined
  with the magic bytes between them);
* the payload (mxnet ``IRHeader``): uint32 flag, float32 label, uint64 id,
  uint64 id2, then ``flag`` float32 labels when flag > 0 (which replace the
  scalar label), then the encoded image;
* insightface's identity header: record 0 with flag > 0 and labels
  ``[a, b]``: images are records 1 .. a-1 (identity records a .. b-1 follow);
  without it every key of the ``.idx`` is an image.

(mxnet is unmaintained and does not install with current NumPy.)
"""
from __future__ import annotations

import dataclasses
import os
import struct
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from stra_jax.utils import atomic_file

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEADER = struct.Struct("<IfQQ")  # flag, label, id, id2: 24 bytes


@dataclasses.dataclass(frozen=True)
class RecordHeader:
    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int


def read_idx(path: str | os.PathLike) -> dict[int, int]:
    """``key -> byte offset`` from a ``.idx`` file; a bad line is named."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .idx file (expected next to the .rec, lines 'key<TAB>offset')")
    index = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            key, offset = int(parts[0]), int(parts[1])
        except (ValueError, IndexError):
            raise ValueError(f"{path}:{number}: {line!r} is not 'key<TAB>offset'") from None
        index[key] = offset
    return index


class RecordIOReader:
    """Random access to the records of ``rec`` through its ``idx`` (default: same
    name with ``.idx``)."""

    def __init__(self, rec: str | os.PathLike, idx: str | os.PathLike | None = None) -> None:
        self.rec = Path(rec)
        if not self.rec.is_file():
            raise FileNotFoundError(f"{self.rec}: no such .rec file")
        self.index = read_idx(idx if idx is not None else self.rec.with_suffix(".idx"))
        self._size = self.rec.stat().st_size
        self._file = open(self.rec, "rb")

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "RecordIOReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def keys(self) -> list[int]:
        return sorted(self.index)

    def _part(self, offset: int) -> tuple[int, bytes, int]:
        """(cflag, payload, next offset) of the record part at ``offset``."""
        self._file.seek(offset)
        head = self._file.read(8)
        if len(head) < 8:
            raise ValueError(f"{self.rec}: truncated record at byte {offset} (file has {self._size} bytes)")
        magic, lrecord = struct.unpack("<II", head)
        if magic != MAGIC:
            raise ValueError(f"{self.rec}: bad magic number 0x{magic:08x} at byte {offset} "
                             f"(expected 0x{MAGIC:08x}): not a RecordIO file, or a wrong .idx offset")
        cflag, length = lrecord >> 29, lrecord & ((1 << 29) - 1)
        payload = self._file.read(length)
        if len(payload) < length:
            raise ValueError(f"{self.rec}: truncated record at byte {offset}: header says {length} bytes, "
                             f"{len(payload)} left in the file")
        return cflag, payload, offset + 8 + length + (-length % 4)

    def read_raw(self, key: int) -> bytes:
        """The payload of record ``key`` (parts of a split record joined)."""
        if key not in self.index:
            raise KeyError(f"{self.rec}: no record {key} in its .idx")
        cflag, payload, offset = self._part(self.index[key])
        if cflag == 0:
            return payload
        if cflag != 1:
            raise ValueError(f"{self.rec}: record {key} at byte {self.index[key]} starts with part flag {cflag}")
        parts = [payload]
        while cflag != 3:
            start = offset
            cflag, payload, offset = self._part(start)
            if cflag not in (2, 3):
                raise ValueError(f"{self.rec}: record {key}: part at byte {start} has flag {cflag}, expected 2 or 3")
            parts.append(payload)
        return _MAGIC_BYTES.join(parts)

    def read(self, key: int) -> tuple[RecordHeader, bytes]:
        """``(header, encoded image)`` of record ``key``."""
        payload = self.read_raw(key)
        if len(payload) < _HEADER.size:
            raise ValueError(f"{self.rec}: record {key} has {len(payload)} bytes, fewer than its 24-byte header")
        flag, label, id1, id2 = _HEADER.unpack_from(payload)
        body = payload[_HEADER.size:]
        if flag > 0:
            if len(body) < 4 * flag:
                raise ValueError(f"{self.rec}: record {key} declares {flag} labels but has {len(body)} bytes")
            label = tuple(float(v) for v in np.frombuffer(body[: 4 * flag], "<f4"))
            body = body[4 * flag:]
        return RecordHeader(flag, label, id1, id2), body


def read_face_recordio(rec: str | os.PathLike) -> list[tuple[int, int]]:
    """``[(key, identity label)]`` of every image record, honouring insightface's
    identity header (record 0) when present."""
    with RecordIOReader(rec) as reader:
        keys = reader.keys()
        if not keys:
            return []
        header, _ = reader.read(keys[0])
        if keys[0] == 0 and header.flag > 0:
            first_identity = int(header.label[0])
            keys = [k for k in keys if 1 <= k < first_identity]
        out = []
        for key in keys:
            h, _ = reader.read(key)
            label = h.label[0] if isinstance(h.label, tuple) else h.label
            out.append((key, int(label)))
        return out


def _pack(flag: int, label: float | Sequence[float], image: bytes, id1: int = 0, id2: int = 0) -> bytes:
    if flag > 0:
        return _HEADER.pack(flag, 0.0, id1, id2) + np.asarray(label, "<f4").tobytes() + image
    return _HEADER.pack(0, float(label), id1, id2) + image


def _record(payload: bytes) -> bytes:
    if len(payload) >= 1 << 29:
        raise ValueError(f"record of {len(payload)} bytes: RecordIO allows at most {(1 << 29) - 1}")
    # Whole records only (cflag 0); readers that split on embedded magic numbers
    # (mxnet's) read these as well.
    return struct.pack("<II", MAGIC, len(payload)) + payload + b"\0" * (-len(payload) % 4)


def write_face_recordio(rec: str | os.PathLike, images: Iterable[tuple[bytes, int]],
                        identity_header: bool = True) -> Path:
    """Write ``(encoded image, label)`` pairs as ``rec`` + its ``.idx``, insightface
    style (with the identity header record 0 and one record per identity when
    ``identity_header``; labels must then be grouped). Both files appear
    atomically, or neither."""
    rec = Path(rec)
    items = list(images)
    records: list[bytes] = []
    if identity_header:
        labels = [label for _, label in items]
        if labels != sorted(labels):
            raise ValueError("write_face_recordio: with identity_header the images must be grouped by label")
        first_identity = len(items) + 1
        ids = sorted(set(labels))
        records.append(_pack(2, [first_identity, first_identity + len(ids)], b""))
        records += [_pack(0, label, image) for image, label in items]
        for label in ids:
            keys = [i + 1 for i, (_, lab) in enumerate(items) if lab == label]
            records.append(_pack(2, [keys[0], keys[-1] + 1], b""))
    else:
        records = [_pack(0, label, image) for image, label in items]
    offsets, blob = [], bytearray()
    for payload in records:
        offsets.append(len(blob))
        blob += _record(payload)
    idx = rec.with_suffix(".idx")
    with atomic_file(rec, "wb") as f_rec, atomic_file(idx) as f_idx:
        f_rec.write(bytes(blob))
        f_idx.write("".join(f"{key}\t{offset}\n" for key, offset in enumerate(offsets)))
    return rec
