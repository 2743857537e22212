"""Image classification sets by name (``config.dataset.name`` of the
classification task): a folder per class, and the built-in synthetic
pretraining set.

``folder``: your own data in torchvision's ``ImageFolder`` layout, one
sub-folder per class in each split (ImageNet extracted the usual way has it)::

    ROOT/train/<class>/<image>.jpg ...     classes: the sorted folder names
    ROOT/val/<class>/<image>.jpg ...       labelled with the training split's classes

``synthetic``: the generated pretraining set (``data/classification/synthetic.py``;
generic object-like classes, or synthetic people with ``kind="people"``) in the
same layout, written into ``ROOT`` on first use.

Register another reader beside its code with ``@CLASSIFICATION_READERS.register(name)``:
``reader(root, **options) -> ClassificationDataset``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, NamedTuple

from stra_jax.data.class_folders import read_class_folders
from stra_jax.registry import Registry


class Example(NamedTuple):
    """One labelled image: its file (or the key of its bytes) and class index."""

    path: str
    label: int


@dataclasses.dataclass(frozen=True)
class ClassificationDataset:
    """``train`` and ``val`` examples (labels in ``[0, num_classes)``), the class
    names (index = label) and, for in-memory sources, the encoded images by path."""

    name: str
    root: str
    train: tuple[Example, ...]
    val: tuple[Example, ...]
    class_names: tuple[str, ...]
    skipped_files: int = 0            # files in class folders that are not images
    images: dict[str, bytes] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def summary(self) -> str:
        note = f"; {self.skipped_files} files that are not images ignored" if self.skipped_files else ""
        return (f"{self.name} ({self.root}): {self.num_classes} classes, {len(self.train)} training and "
                f"{len(self.val)} validation images{note}")


Reader = Callable[..., ClassificationDataset]
#: ``config.dataset.name`` -> ``reader(root, **options) -> ClassificationDataset``.
CLASSIFICATION_READERS: Registry[Reader] = Registry("classification dataset")


@CLASSIFICATION_READERS.register("folder")
def read_classification_folder(root: str | Path, *, train_dir: str = "train", val_dir: str = "val",
                               name: str = "folder") -> ClassificationDataset:
    """``ROOT/<train_dir>/<class>/*`` and ``ROOT/<val_dir>/<class>/*`` (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (expected {root}/{train_dir}/<class>/<image>.jpg and "
                                f"{root}/{val_dir}/<class>/<image>.jpg; set config.dataset.root)")
    train, classes, skipped = read_class_folders(root / train_dir)
    val, _, skipped_val = read_class_folders(root / val_dir, classes=classes)
    return ClassificationDataset(name, str(root), tuple(Example(p, y) for p, y in train),
                                 tuple(Example(p, y) for p, y in val), tuple(classes), len(skipped) + len(skipped_val))


@CLASSIFICATION_READERS.register("synthetic")
def read_synthetic_classes(root: str | Path) -> ClassificationDataset:
    """The generated set in ``root`` (generated there by :func:`prepare_classification`)."""
    return read_classification_folder(root, name="synthetic")


def prepare_classification(name: str, root: str | Path, synthetic: dict[str, Any] | None = None,
                           options: dict[str, Any] | None = None) -> ClassificationDataset:
    """Read ``name`` from ``root``; for ``synthetic`` the set of ``synthetic``
    (keyword arguments of ``SyntheticClassesSpec``) is generated there first when absent."""
    reader = CLASSIFICATION_READERS.get(name, key="config.dataset.name")
    if name == "synthetic":
        from stra_jax.data.classification.synthetic import SyntheticClassesSpec, generate_classification_folder

        generate_classification_folder(Path(root), SyntheticClassesSpec(**(synthetic or {})))
    return reader(root, **(options or {}))
