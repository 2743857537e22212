"""Face data formats: MXNet RecordIO and insightface ``.bin`` files, written by
hand here (struct and pickle opcodes, independent of the code under test)."""
from __future__ import annotations

import io
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from stra_jax.data.face import (RecordIOReader, read_face_recordio, read_verification_bin,
                                write_face_recordio, write_verification_bin)

MAGIC = 0xCED7230A


def _jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG")
    return out.getvalue()


def _payload(flag, label, image, id1=0, id2=0):
    if flag:
        return struct.pack("<IfQQ", flag, 0.0, id1, id2) + struct.pack(f"<{flag}f", *label) + image
    return struct.pack("<IfQQ", 0, label, id1, id2) + image


def _write_rec(tmp_path, payloads, split_key=None):
    """Records as mxnet writes them; ``split_key``'s payload is written in three
    parts (cflag 1, 2, 3), as mxnet does when a payload contains the magic number."""
    blob, lines = bytearray(), []
    for key, payload in enumerate(payloads):
        lines.append(f"{key}\t{len(blob)}")
        if key == split_key:
            parts = payload.split(struct.pack("<I", MAGIC))
            assert len(parts) == 3, "the split fixture needs two magic numbers in its payload"
            for cflag, part in zip((1, 2, 3), parts):
                blob += struct.pack("<II", MAGIC, cflag << 29 | len(part)) + part + b"\0" * (-len(part) % 4)
        else:
            blob += struct.pack("<II", MAGIC, len(payload)) + payload + b"\0" * (-len(payload) % 4)
    (tmp_path / "train.rec").write_bytes(bytes(blob))
    (tmp_path / "train.idx").write_text("\n".join(lines) + "\n")
    return tmp_path / "train.rec"


def test_recordio_with_identity_header(tmp_path):
    images = [_jpeg(i) for i in range(5)]
    labels = [0, 0, 1, 1, 1]
    payloads = [_payload(2, [6, 8], b"")] + [_payload(0, float(l), im) for im, l in zip(images, labels)]
    payloads += [_payload(2, [1, 3], b""), _payload(2, [3, 6], b"")]  # identity records
    rec = _write_rec(tmp_path, payloads)
    assert read_face_recordio(rec) == [(1, 0), (2, 0), (3, 1), (4, 1), (5, 1)]
    with RecordIOReader(rec) as reader:
        header, image = reader.read(3)
        assert image == images[2] and header.label == 1.0 and header.flag == 0
        assert reader.read(0)[0].label == (6.0, 8.0)


def test_recordio_without_header_multi_label_and_split_records(tmp_path):
    magic = struct.pack("<I", MAGIC)
    tricky = b"JPEG" + magic + b"middle" + magic + b"end!"
    payloads = [_payload(0, 3.0, _jpeg(0)), _payload(2, [7.0, 0.5], _jpeg(1)), _payload(0, 4.0, tricky)]
    rec = _write_rec(tmp_path, payloads, split_key=2)
    assert read_face_recordio(rec) == [(0, 3), (1, 7), (2, 4)]
    with RecordIOReader(rec) as reader:
        assert reader.read(2)[1] == tricky  # parts joined with the magic number between them


def test_writer_round_trip_is_read_by_the_hand_written_layout(tmp_path):
    items = [(_jpeg(i), label) for i, label in enumerate([0, 0, 1, 2, 2])]
    rec = write_face_recordio(tmp_path / "out.rec", items)
    assert read_face_recordio(rec) == [(k + 1, label) for k, (_, label) in enumerate(items)]
    raw = rec.read_bytes()
    assert struct.unpack_from("<I", raw)[0] == MAGIC  # record 0: the identity header
    flag, _, _, _ = struct.unpack_from("<IfQQ", raw, 8)
    assert flag == 2 and struct.unpack_from("<2f", raw, 32) == (6.0, 9.0)
    plain = write_face_recordio(tmp_path / "plain.rec", items, identity_header=False)
    assert read_face_recordio(plain) == [(k, label) for k, (_, label) in enumerate(items)]


def test_recordio_errors_name_the_file_and_offset(tmp_path):
    rec = _write_rec(tmp_path, [_payload(0, 1.0, _jpeg(0)), _payload(0, 2.0, _jpeg(1))])
    (tmp_path / "train.idx").rename(tmp_path / "gone.idx")
    with pytest.raises(FileNotFoundError, match=r"train.idx: no such .idx file"):
        read_face_recordio(rec)
    (tmp_path / "gone.idx").rename(tmp_path / "train.idx")
    data = bytearray(rec.read_bytes())
    second = int((tmp_path / "train.idx").read_text().splitlines()[1].split("\t")[1])
    rec.write_bytes(bytes(data[:second + 20]))  # cut inside the second record
    with pytest.raises(ValueError, match=rf"train.rec: truncated record at byte {second}"):
        read_face_recordio(rec)
    data[second:second + 4] = b"\0\0\0\0"
    rec.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=rf"bad magic number 0x00000000 at byte {second}"):
        read_face_recordio(rec)
    with pytest.raises(ValueError, match="grouped by label"):
        write_face_recordio(tmp_path / "x.rec", [(b"a", 1), (b"b", 0)])
    assert not (tmp_path / "x.rec").exists() and not (tmp_path / "x.idx").exists()


def _python2_pickle(images, issame) -> bytes:
    """What Python 2's cPickle protocol 2 writes for (list of str, list of bool)."""
    out = bytearray(b"\x80\x02(]")  # PROTO 2, MARK, EMPTY_LIST
    out += b"("
    for im in images:
        out += (b"U" + bytes([len(im)]) if len(im) < 256 else b"T" + struct.pack("<I", len(im))) + im
    out += b"e]("  # APPENDS, EMPTY_LIST, MARK
    out += b"".join(b"\x88" if s else b"\x89" for s in issame)
    out += b"et."  # APPENDS, TUPLE, STOP
    return bytes(out)


def test_bin_files_python2_and_python3(tmp_path):
    images, issame = [_jpeg(i) for i in range(6)], [True, False, True]
    py2 = tmp_path / "lfw.bin"
    py2.write_bytes(_python2_pickle(images, issame))
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(py2.read_bytes())  # what a plain Python 3 load does with these files
    got_images, got_issame = read_verification_bin(py2)
    assert got_images == images and got_issame.tolist() == issame
    py3 = write_verification_bin(tmp_path / "cfp_fp.bin", images, issame)
    got_images, got_issame = read_verification_bin(py3)
    assert got_images == images and got_issame.dtype == bool and got_issame.tolist() == issame


def test_bad_bin_files_are_named(tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"bad.bin: not a readable \(images, issame\) pickle"):
        read_verification_bin(bad)
    bad.write_bytes(pickle.dumps(([b"a", b"b", b"c"], [True])))
    with pytest.raises(ValueError, match=r"bad.bin: 3 images for 1 pairs"):
        read_verification_bin(bad)
    bad.write_bytes(pickle.dumps({"images": []}))
    with pytest.raises(ValueError, match=r"expected a pickled \(images, issame\) pair, got dict"):
        read_verification_bin(bad)
    with pytest.raises(ValueError, match="3 images for 1 pairs"):
        write_verification_bin(tmp_path / "out.bin", [b"a", b"b", b"c"], [True])
    assert not (tmp_path / "out.bin").exists()


def test_pack_faces_tool(tmp_path):
    import subprocess
    import sys

    from tests.helpers import REPO

    root = tmp_path / "faces"
    for who, count in (("bob", 2), ("alice", 3)):
        (root / who).mkdir(parents=True)
        for i in range(count):
            (root / who / f"{i}.jpg").write_bytes(_jpeg(len(who) * 10 + i))
    (root / "alice" / "notes.txt").write_text("not a face")
    out = tmp_path / "packed" / "train.rec"
    proc = subprocess.run([sys.executable, "-m", "stra_jax.tools.pack_faces", str(root), str(out)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert f"skipped, not images (.jpg, .jpeg, .png, .bmp): 1 files: {root / 'alice' / 'notes.txt'}" in proc.stdout
    assert read_face_recordio(out) == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1)]  # alice = 0, bob = 1
    with RecordIOReader(out) as reader:
        assert reader.read(4)[1] == (root / "bob" / "0.jpg").read_bytes()  # stored as is
    assert (tmp_path / "packed" / "train.labels.txt").read_text() == "0\talice\n1\tbob\n"

    (root / "bob" / "1.jpg").write_bytes(b"broken")
    out2 = tmp_path / "packed2" / "train.rec"
    proc = subprocess.run([sys.executable, "-m", "stra_jax.tools.pack_faces", str(root), str(out2)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1 and proc.stderr.startswith(f"error: {root / 'bob' / '1.jpg'}: corrupt")
    assert not out2.exists() and not out2.with_suffix(".idx").exists()


def test_pack_faces_pairs_list_to_bin(tmp_path):
    from stra_jax.tools.pack_faces import main

    for i in range(4):
        (tmp_path / f"{i}.jpg").write_bytes(_jpeg(100 + i))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("# a b same\n0.jpg 1.jpg 1\n2.jpg 3.jpg 0\n")
    out = tmp_path / "mine.bin"
    assert main([str(pairs), str(out)]) == 0
    images, issame = read_verification_bin(out)
    assert images == [(tmp_path / f"{i}.jpg").read_bytes() for i in range(4)] and issame.tolist() == [True, False]

    bad = tmp_path / "bad.txt"
    bad.write_text("0.jpg 1.jpg yes\n")
    assert main([str(bad), str(tmp_path / "bad.bin")]) == 1 and not (tmp_path / "bad.bin").exists()
    missing = tmp_path / "missing.txt"
    missing.write_text("0.jpg 9.jpg 1\n")
    assert main([str(missing), str(tmp_path / "m.bin")]) == 1 and not (tmp_path / "m.bin").exists()
    (tmp_path / "3.jpg").write_bytes(b"broken")
    assert main([str(pairs), str(tmp_path / "b.bin")]) == 1 and not (tmp_path / "b.bin").exists()
