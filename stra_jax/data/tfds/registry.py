"""Every TFDS builder of the package, by TFDS name: ``TFDS_BUILDERS``.

One registration beside a builder class says what it builds and which
dataset it is; ``build_tfds`` and the TFDS sources (``config.dataset.source =
"tfds"``) find everything here, so adding a builder is its class plus::

    register_tfds(Market1501, dataset="market1501")                      # a ReID set
    register_tfds(Cuhk03Np, dataset="cuhk03_detected", config="detected")  # one BuilderConfig

A ReID builder's ``dataset`` is the ``config.dataset.name`` (a
``stra_jax.data.reid.REID_READERS`` name) whose reader reads its
``manual_dir`` and whose ``source="tfds"`` reads the build. A face builder's
``dataset`` is the insightface set (``ms1m``) its BuilderConfig holds.

This module imports no TensorFlow; the builders register when
``stra_jax.data.tfds`` (which importing this module imports first) loads.
"""
from __future__ import annotations

import dataclasses

from stra_jax.registry import Registry

KINDS = ("reid", "face")


@dataclasses.dataclass(frozen=True)
class TFDSEntry:
    """One buildable TFDS dataset.

    ``builder``: the ``tfds.core.DatasetBuilder`` class; ``config``: its
    BuilderConfig name ("" if it has none); ``dataset``: the name users give
    it (see the module docstring); ``kind``: "reid" (built by
    ``build_reid_tfds`` from the folder a ReID reader reads) or "face"
    (``build_face_tfds``, from insightface's folder).
    """

    builder: type
    dataset: str
    config: str = ""
    kind: str = "reid"

    @property
    def tfds_name(self) -> str:
        """The name ``tfds.builder`` takes: ``builder`` or ``builder/config``."""
        return f"{self.builder.name}/{self.config}" if self.config else self.builder.name


#: TFDS name (``market1501``, ``cuhk03_np/labeled``, ``face_recordio/ms1m``) -> :class:`TFDSEntry`.
TFDS_BUILDERS: Registry[TFDSEntry] = Registry("TFDS builder")


def register_tfds(builder: type, dataset: str, *, config: str = "", kind: str = "reid",
                  overwrite: bool = False) -> TFDSEntry:
    """Register ``builder`` (with BuilderConfig ``config``) as the TFDS build of ``dataset``."""
    if kind not in KINDS:
        raise ValueError(f"register_tfds({builder.__name__}): kind={kind!r}: expected one of {KINDS}")
    entry = TFDSEntry(builder, dataset, config, kind)
    TFDS_BUILDERS.register(entry.tfds_name, entry, overwrite=overwrite)
    return entry


def tfds_entries(kind: str | None = None) -> list[TFDSEntry]:
    """The registered entries (of ``kind``, if given), in TFDS-name order."""
    entries = [TFDS_BUILDERS.get(name) for name in TFDS_BUILDERS]
    return [e for e in entries if kind is None or e.kind == kind]


def tfds_targets(name: str, kind: str | None = None) -> list[TFDSEntry]:
    """What ``build_tfds NAME`` builds (empty if nothing): a TFDS name
    (``dukemtmc_reid``, ``face_verification/ms1m``); else a dataset name
    (``dukemtmcreid``; ``ms1m``: both face builders of the set); else a ReID
    builder with configs (``cuhk03_np``: all its configs, which read one folder)."""
    entries = tfds_entries(kind)
    for found in ([e for e in entries if e.tfds_name == name],
                  [e for e in entries if e.dataset == name],
                  [e for e in entries if e.kind == "reid" and e.builder.name == name]):
        if found:
            return found
    return []


def tfds_name(dataset: str) -> str:
    """``config.dataset.name`` -> the TFDS name of its ReID builder
    (``cuhk03_detected`` -> ``cuhk03_np/detected``)."""
    found = [e for e in tfds_entries("reid") if e.dataset == dataset]
    if not found:
        known = sorted(e.dataset for e in tfds_entries("reid"))
        raise ValueError(f"config.dataset.name={dataset!r} has no TFDS builder; datasets with one: "
                         f"{known} (custom folder/csv data: use config.dataset.source='folder')")
    return found[0].tfds_name
