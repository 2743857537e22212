"""ReID dataset readers: standard extracted layouts -> train/query/gallery records."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from stra_jax.data.reid.common import ReIDDataset, Record
from stra_jax.data.reid.cuhk03 import read_cuhk03
from stra_jax.data.reid.market1501 import read_dukemtmc, read_market1501
from stra_jax.data.reid.msmt17 import read_msmt17

READERS: dict[str, Callable[..., ReIDDataset]] = {
    "market1501": read_market1501,
    "dukemtmcreid": read_dukemtmc,
    "cuhk03_detected": lambda root: read_cuhk03(root, "detected"),
    "cuhk03_labeled": lambda root: read_cuhk03(root, "labeled"),
    "msmt17": read_msmt17,
}


def read_dataset(name: str, root: str | Path) -> ReIDDataset:
    """Read a dataset by name (one of ``READERS``) from its extracted folder."""
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}: known datasets are {', '.join(sorted(READERS))}")
    return READERS[name](root)


__all__ = ["READERS", "ReIDDataset", "Record", "read_cuhk03", "read_dataset", "read_dukemtmc",
           "read_market1501", "read_msmt17"]
