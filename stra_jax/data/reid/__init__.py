"""ReID dataset readers: standard extracted layouts -> train/query/gallery records.

``REID_READERS`` maps ``config.dataset.name`` to its reader; each reader is
registered beside its code (``@REID_READERS.register("market1501")``), and the
modules imported here are the built-in ones. Add a dataset: a new file with a
decorated reader, imported below (or registered from your own code).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from stra_jax.data.reid.common import REID_READERS, ReIDDataset, Record
from stra_jax.data.reid.cuhk03 import read_cuhk03
from stra_jax.data.reid.custom import read_csv_dataset, read_identity_folders
from stra_jax.data.reid.market1501 import read_dukemtmc, read_market1501, read_synthetic
from stra_jax.data.reid.msmt17 import read_msmt17


def read_dataset(name: str, root: str | Path, **options: Any) -> ReIDDataset:
    """Read a dataset by name (one of ``REID_READERS``) from its extracted folder;
    ``options`` are the reader's keyword arguments (``config.dataset.options``,
    e.g. ``camera_pattern`` for ``folder``, ``csv_file`` for ``csv``)."""
    reader = REID_READERS.get(name)
    try:
        accepted = list(inspect.signature(reader).parameters)[1:]
    except (TypeError, ValueError):
        accepted = []
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"config.dataset.options {unknown}: not options of the {name!r} reader; "
                         f"its options: {accepted or 'none'}")
    return reader(root, **options)


def prepare_dataset(name: str, root: str | Path, synthetic: dict | None = None,
                    options: dict | None = None) -> ReIDDataset:
    """Read a dataset; for ``synthetic``, first generate it into ``root`` if absent
    (``synthetic``: keyword arguments of ``SyntheticSpec``)."""
    if name == "synthetic":
        from stra_jax.data.reid.synthetic import SyntheticSpec, generate_market_layout

        generate_market_layout(Path(root), SyntheticSpec(**(synthetic or {})))
    return read_dataset(name, root, **(options or {}))


__all__ = ["REID_READERS", "ReIDDataset", "Record", "prepare_dataset", "read_csv_dataset", "read_cuhk03",
           "read_dataset", "read_dukemtmc", "read_identity_folders", "read_market1501", "read_msmt17",
           "read_synthetic"]
