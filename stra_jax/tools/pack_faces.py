"""Pack a folder of face images (one sub-folder per identity) as insightface data.

    python -m stra_jax.tools.pack_faces FOLDER OUT.rec            # OUT.rec + OUT.idx
    python -m stra_jax.tools.pack_faces FOLDER OUT.rec --no-identity-header

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
    parser.add_argument("folder", help="ROOT/<identity>/<image>.jpg")
    parser.add_argument("out", help="the .rec to write (its .idx goes beside it)")
    parser.add_argument("--no-identity-header", action="store_true",
                        help="omit insightface's identity header record 0 and identity records")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.suffix != ".rec":
        parser.error(f"{out}: expected a path ending in .rec")

    from stra_jax.data.face.folder import read_face_folder
    from stra_jax.data.face.recordio import write_face_recordio
    from stra_jax.data.image_check import decode_error
    from stra_jax.utils import atomic_file

    try:
        items, names = read_face_folder(args.folder)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
