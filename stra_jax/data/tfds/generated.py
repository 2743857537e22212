"""The TFDS builds of the built-in generated sets (``synthetic_reid``,
``synthetic_faces``) record the spec they were generated from, and a config
asking for another spec is refused instead of silently training on them.

A build from a folder holding ``spec.json`` (``stra_jax.data.generated``) gets
a copy of it as ``generated_spec.json`` in its TFDS folder
(``DATA_DIR/<name>/<config>/<version>/``), written after TFDS finished. A run
whose ``config.dataset.source = "tfds"`` names a generated set uses an existing
build only when its recorded spec is the config's (``config.dataset.synthetic``)
and otherwise stops naming the differing fields; only when the set is not built
yet does it generate the folder (in the workdir) and build it.
"""
from __future__ import annotations

import json
import os
from typing import Callable

import tensorflow as tf
import tensorflow_datasets as tfds

from stra_jax.data.generated import SPEC_FILE, GeneratedSpec, spec_differences
from stra_jax.utils import ConfigError

RECORDED_SPEC = "generated_spec.json"


def record_spec(builder: tfds.core.DatasetBuilder, manual_dir: str | os.PathLike) -> None:
    """Copy ``manual_dir/spec.json`` (a generated set's) into the build's folder;
    a folder without one (a real dataset) records nothing."""
    source = os.path.join(os.fspath(manual_dir), SPEC_FILE)
    if tf.io.gfile.exists(source):
        tf.io.gfile.copy(source, os.path.join(os.fspath(builder.data_dir), RECORDED_SPEC), overwrite=True)


def check_recorded_spec(builder: tfds.core.DatasetBuilder, spec: GeneratedSpec) -> None:
    """ConfigError unless the build of ``builder`` records ``spec``."""
    path = os.path.join(os.fspath(builder.data_dir), RECORDED_SPEC)
    if not tf.io.gfile.exists(path):
        raise ConfigError(f"{builder.data_dir}: this build of {builder.name} records no generator spec (built "
                          f"before specs were recorded, or by hand), so it cannot be matched to "
                          f"config.dataset.synthetic; rebuild it (remove the folder) or use another "
                          f"config.dataset.data_dir")
    with tf.io.gfile.GFile(path) as f:
        details = spec_differences(json.load(f), spec.to_json())
    if details:
        raise ConfigError(f"{builder.data_dir}: built from another {builder.name} spec than this config's "
                          f"config.dataset.synthetic ({details.replace('on disk', 'built')}); use another "
                          "config.dataset.data_dir, or the config (variant) that built it")


def build_or_check(names: list[str], data_dir: str, spec: GeneratedSpec,
                   generate_and_build: Callable[[], None]) -> None:
    """The TFDS builds ``names`` of a generated set in ``data_dir``: when one is
    missing, ``generate_and_build()`` (generate the folder, build from it, which
    records its spec); then every build must record ``spec``."""
    builders = [tfds.builder(name, data_dir=data_dir) for name in names]
    if not all(b.is_prepared() for b in builders):
        generate_and_build()
        builders = [tfds.builder(name, data_dir=data_dir) for name in names]
    for builder in builders:
        check_recorded_spec(builder, spec)
