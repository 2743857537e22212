"""Pack a folder of face images (one sub-folder per identity) as insightface data.

    python -m stra_jax.tools.pack_faces FOLDER OUT.rec            # OUT.rec + OUT.idx
    python -m stra_jax.tools.pack_faces FOLDER OUT.rec --no-identity-header
    python -m stra_jax.tools.pack_faces PAIRS.txt OUT.bin         # a verification set

A ``.bin`` is packed from a pairs list: one pair per line, ``PATH_A PATH_B
SAME`` (SAME 1 or 0; paths relative to the list's folder), as insightface's
``.bin`` sets (LFW, CFP-FP, ...) hold them.

Images are stored as they are (encoded bytes, not re-encoded), each checked to
decode first; labels follow the sorted folder names, written to OUT.labels.txt
(``label<TAB>folder``). Nothing is written unless every image is readable.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="ROOT/<identity>/<image>.jpg, or a pairs list for a .bin")
    parser.add_argument("out", help="the .rec to write (its .idx goes beside it) or the .bin")
    parser.add_argument("--no-identity-header", action="store_true",
                        help="omit insightface's identity header record 0 and identity records")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.suffix == ".bin":
        return pack_pairs(Path(args.folder), out)
    if out.suffix != ".rec":
        parser.error(f"{out}: expected a path ending in .rec (training set) or .bin (verification pairs)")

    from stra_jax.data.class_folders import IMAGE_SUFFIXES, read_class_folders
    from stra_jax.data.face.recordio import write_face_recordio
    from stra_jax.data.image_check import decode_error
    from stra_jax.utils import atomic_file

    try:
        items, names, skipped = read_class_folders(args.folder, kind="identity")
        for path, _ in items:
            error = decode_error(path)
            if error is not None:
                raise ValueError(f"{path}: corrupt or unreadable image ({error}); nothing was written")
        write_face_recordio(out, [(Path(p).read_bytes(), label) for p, label in items],
                            identity_header=not args.no_identity_header)
        with atomic_file(out.with_suffix(".labels.txt")) as f:
            f.write("".join(f"{label}\t{name}\n" for label, name in enumerate(names)))
    except (ValueError, FileNotFoundError, PermissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out} and {out.with_suffix('.idx')}: {len(items)} images of {len(names)} identities")
    if skipped:  # not an error (thumbnails, notes), but never silent
        shown = ", ".join(skipped[:10]) + (f", ... ({len(skipped) - 10} more)" if len(skipped) > 10 else "")
        print(f"skipped, not images ({', '.join(IMAGE_SUFFIXES)}): {len(skipped)} files: {shown}")
    return 0


def read_pairs_list(path: Path) -> tuple[list[Path], list[bool]]:
    """``([a0, b0, a1, b1, ...], [same0, same1, ...])`` of a pairs list; a bad
    line or a missing image is named with its line number."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pairs list (expected lines 'PATH_A PATH_B SAME')")
    images, issame = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or parts[2] not in ("0", "1"):
            raise ValueError(f"{path}:{number}: {line!r}: expected 'PATH_A PATH_B SAME' with SAME 1 or 0")
        for name in parts[:2]:
            image = (path.parent / name)
            if not image.is_file():
                raise FileNotFoundError(f"{path}:{number}: no such image {image}")
            images.append(image)
        issame.append(parts[2] == "1")
    if not issame:
        raise ValueError(f"{path}: no pairs")
    return images, issame


def pack_pairs(pairs: Path, out: Path) -> int:
    from stra_jax.data.face.verification_bin import write_verification_bin
    from stra_jax.data.image_check import decode_error

    try:
        images, issame = read_pairs_list(pairs)
        for image in images:
            error = decode_error(str(image))
            if error is not None:
                raise ValueError(f"{image}: corrupt or unreadable image ({error}); nothing was written")
        write_verification_bin(out, [p.read_bytes() for p in images], issame)
    except (ValueError, FileNotFoundError, PermissionError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out}: {len(issame)} pairs ({sum(issame)} same)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
