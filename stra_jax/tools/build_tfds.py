"""Build a TFDS dataset from an extracted copy (the data cannot be downloaded).

    python -m stra_jax.tools.build_tfds market1501 --manual_dir /data/Market-1501-v15.09.15 --data_dir gs://bucket/tfds
    python -m stra_jax.tools.build_tfds cuhk03_np --manual_dir /data/cuhk03      # both detected and labeled
    python -m stra_jax.tools.build_tfds synthetic_reid --manual_dir /tmp/synthetic --data_dir /tmp/tfds --generate
    python -m stra_jax.tools.build_tfds ms1m --manual_dir /data/faces_emore --data_dir gs://bucket/tfds

NAME: a ReID TFDS name (``market1501``, ``dukemtmc_reid``, ``cuhk03_np[/detected|/labeled]``,
``msmt17``, ``synthetic_reid``) or a ``config.dataset.name`` (``dukemtmcreid``,
``cuhk03_labeled``, ``synthetic``, ...); or a face set (``casia_webface``, ``ms1m``,
``glint360k``, ``custom``, ``synthetic_faces``; or ``face_recordio/SET`` /
``face_verification/SET`` alone) built from an insightface folder (train.rec,
train.idx and the ``.bin`` pairs). ``--manual_dir``: the folder the folder
source reads (``config.dataset.root``); a missing or empty one is an error,
except that ``--generate`` (or ``--synthetic KEY=VALUE``, a field of its
``SyntheticSpec``) asks for the built-in ``synthetic_reid`` / ``synthetic_faces``
set to be generated into it first. The build records that spec, and a run whose
``config.dataset.synthetic`` differs refuses it. ``--data_dir``: where TFDS writes
(default ``~/tensorflow_datasets``; ``gs://`` works). Then train with
``--config.dataset.source=tfds --config.dataset.data_dir=DATA_DIR``.

A folder without the expected layout exits 1 naming it and the layout; TFDS
writes into a temporary folder and renames it when complete, so a failed build
leaves no dataset behind.
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stra_jax.data.tfds.registry import TFDSEntry


def known_names() -> str:
    """Every name ``build_tfds`` builds: the TFDS names and the dataset names."""
    from stra_jax.data.tfds import TFDS_BUILDERS

    datasets = sorted({TFDS_BUILDERS.get(n).dataset for n in TFDS_BUILDERS})
    return f"TFDS names {', '.join(TFDS_BUILDERS.names())}; or dataset names {', '.join(datasets)}"


def _targets(name: str) -> list[TFDSEntry]:
    """The ``TFDS_BUILDERS`` entries ``name`` builds; an unknown name lists the known ones."""
    from stra_jax.data.tfds import tfds_targets

    targets = tfds_targets(name)
    if not targets:
        raise ValueError(f"unknown dataset {name!r}: {known_names()}")
    return targets


def _absent_or_empty(folder: Path) -> bool:
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


def _generate_into(manual: Path, generate: bool, what: str) -> bool:
    """Whether to generate the built-in set into ``manual``: asked for and the
    folder absent or empty; a missing folder without ``--generate`` is an error
    (a mistyped path must not become a new synthetic set)."""
    if not _absent_or_empty(manual):
        return False
    if not generate:
        raise FileNotFoundError(f"--manual_dir {manual}: {'empty' if manual.exists() else 'no such folder'}; give "
                                f"the folder the {what} set was generated into, or add --generate to generate it "
                                "there")
    return True


def _spec(pairs: list[str]) -> dict:
    spec = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--synthetic {pair!r}: expected KEY=VALUE (a SyntheticSpec field)")
        try:
            spec[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            spec[key] = value
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stra_jax.tools.build_tfds", description=__doc__.split("\n\n")[0],
                                     epilog=f"NAME: {known_names()}.")
    parser.add_argument("name", help="TFDS or config dataset name (listed below)")
    parser.add_argument("--manual_dir", required=True, help="the extracted dataset folder")
    parser.add_argument("--data_dir", default=None, help="TFDS data_dir (default ~/tensorflow_datasets; gs:// works)")
    parser.add_argument("--generate", action="store_true",
                        help="generate the built-in synthetic_reid / synthetic_faces set into an absent or empty "
                             "--manual_dir first")
    parser.add_argument("--synthetic", action="append", default=[], metavar="KEY=VALUE",
                        help="spec field of the generated set (implies --generate)")
    args = parser.parse_args(argv)
    try:
        import tensorflow_datasets as tfds

        from stra_jax.data.tfds import build_reid_tfds

        tfds.disable_progress_bar()

        from stra_jax.data.tfds.face import build_face_tfds

        entries = _targets(args.name)
        if entries[0].kind == "face":  # insightface sets: casia_webface, ms1m, ..., synthetic_faces
            if args.name.rpartition("/")[2] == "synthetic_faces":
                from stra_jax.data.face.synthetic import FaceSyntheticSpec, generate_face_set

                manual = Path(args.manual_dir)
                if _generate_into(manual, args.generate or bool(args.synthetic), "synthetic_faces"):
                    generate_face_set(manual, FaceSyntheticSpec(**_spec(args.synthetic)))
                    print(f"generated the synthetic face set into {manual}")
            elif args.synthetic or args.generate:
                raise ValueError("--generate / --synthetic only apply to synthetic_reid and synthetic_faces")
            start = time.perf_counter()
            for builder in build_face_tfds(args.name, args.manual_dir, args.data_dir):
                splits = ", ".join(f"{k} {v.num_examples}" for k, v in sorted(builder.info.splits.items()))
                print(f"{builder.name}/{builder.builder_config.name}: {splits} examples in {builder.data_dir} "
                      f"({time.perf_counter() - start:.1f} s)")
            return 0

        targets = [entry.tfds_name for entry in entries]
        if targets == ["synthetic_reid"]:
            from stra_jax.data.reid.synthetic import SyntheticSpec, generate_market_layout

            manual = Path(args.manual_dir)
            if _generate_into(manual, args.generate or bool(args.synthetic), "synthetic_reid"):
                if manual.is_dir():
                    manual.rmdir()  # an empty folder: generate into it
                generate_market_layout(manual, SyntheticSpec(**_spec(args.synthetic)))
                print(f"generated the synthetic set into {manual}")
        elif args.synthetic or args.generate:
            raise ValueError("--generate / --synthetic only apply to synthetic_reid and synthetic_faces")
        for target in targets:
            start = time.perf_counter()
            builder = build_reid_tfds(target, args.manual_dir, args.data_dir)
            splits = ", ".join(f"{k} {v.num_examples}" for k, v in sorted(builder.info.splits.items()))
            print(f"{target}: {splits} examples in {builder.data_dir} ({time.perf_counter() - start:.1f} s)")
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
