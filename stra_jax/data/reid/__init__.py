"""ReID dataset readers: standard extracted layouts -> train/query/gallery records."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

from stra_jax.data.reid.common import ReIDDataset, Record
from stra_jax.data.reid.cuhk03 import read_cuhk03
from stra_jax.data.reid.custom import read_csv_dataset, read_identity_folders
from stra_jax.data.reid.market1501 import read_dukemtmc, read_market1501, read_synthetic
from stra_jax.data.reid.msmt17 import read_msmt17

READERS: dict[str, Callable[..., ReIDDataset]] = {
    "market1501": read_market1501,
    "dukemtmcreid": read_dukemtmc,
    "cuhk03_detected": lambda root: read_cuhk03(root, "detected"),
    "cuhk03_labeled": lambda root: read_cuhk03(root, "labeled"),
    "msmt17": read_msmt17,
    "synthetic": read_synthetic,
    "folder": read_identity_folders,  # your own data: a folder per identity
    "csv": read_csv_dataset,          # your own data: path, pid, camid, split
}


def read_dataset(name: str, root: str | Path, **options: Any) -> ReIDDataset:
    """Read a dataset by name (one of ``READERS``) from its extracted folder;
    ``options`` are the reader's keyword arguments (``config.dataset.options``,
    e.g. ``camera_pattern`` for ``folder``, ``csv_file`` for ``csv``)."""
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}: known datasets are {', '.join(sorted(READERS))}")
    reader = READERS[name]
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
        from stra_jax.data.synthetic import SyntheticSpec, generate_market_layout

        generate_market_layout(Path(root), SyntheticSpec(**(synthetic or {})))
    return read_dataset(name, root, **(options or {}))


__all__ = ["prepare_dataset", "READERS", "ReIDDataset", "Record", "read_cuhk03", "read_dataset", "read_dukemtmc",
           "read_csv_dataset", "read_identity_folders", "read_market1501", "read_msmt17"]
