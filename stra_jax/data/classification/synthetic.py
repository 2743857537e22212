"""A built-in synthetic image CLASSIFICATION set: the pretraining set that plays
the role ImageNet plays for Market-1501 (demo data and tests; issue #24).

Two kinds:

* ``"generic"`` (like ImageNet for Market, not pedestrians): a class is a fixed
  random composition (``synthetic_draw``): a background texture (solid,
  gradient, stripes or checks at an angle, soft blobs) in two colours, and 1-3
  foreground shapes (ellipse, rectangle, triangle, ring, cross, star, blob),
  each with its colour (optionally striped), size, aspect, angle and place in
  the frame. Every attribute comes from a small vocabulary shared by all
  classes, so no single one identifies a class; only combinations do.
  Nuisances per image: scale / shift of the whole composition, small per-part
  moves, random clutter shapes from the same vocabulary and palette (behind
  or in front), horizontal flip, brightness / contrast / white balance,
  sensor noise and JPEG.
* ``"people"``: a class is one synthetic pedestrian drawn by the ReID set's code
  (``stra_jax.data.reid.synthetic_draw``, one image =
  ``stra_jax.data.reid.synthetic.render_scene``) from this spec's own random
  streams, so its identities are none of a synthetic ReID target's. Person
  nuisances (pose, placement, occluders, camera colour casts and blur over
  ``PEOPLE_CAMERAS`` cameras) are the ReID set's defaults; ``flip_prob``,
  ``brightness_jitter``, ``noise_std`` and ``clutter`` are this spec's.

Layout (folder per class, class index = position in sorted order)::

    root/train/c00000/c00000_0000.jpg ... root/train/cNNNNN/...
    root/val/c00000/c00000_0000.jpg ...
    root/readme.txt, root/spec.json

Determinism: a class is drawn from ``spec.rng(stream, class_index)`` and each
image from ``spec.rng(stream, class_index, split_code, image_index)``
(``stra_jax.data.generated``), so an image's bytes depend neither on the order
of generation nor on ``num_classes``: class k is the same in every set of the
same seed, kind and image settings.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar

import numpy as np

import stra_jax.data.classification.synthetic_draw as draw
import stra_jax.data.reid.synthetic as reid
from stra_jax.data.generated import GeneratedSpec, encode_jpeg, generate_atomically

FORMAT = "stra-jax-synthetic-classes/1"   # bump when drawing or planning changes
KINDS = ("generic", "people")
SPLITS = {"train": 0, "val": 1}           # split name -> the split code in the image streams
FILES = (*SPLITS, "readme.txt", "spec.json")
PEOPLE_CAMERAS = 6                        # cameras the "people" kind's images are seen by

# Independent random streams (first key after the seed); disjoint from the ReID
# set's (0..6) and the face set's (0..4), so no class repeats their draws.
_CLASS, _IMAGE, _PEOPLE_ID, _PEOPLE_CAMERA, _PEOPLE_IMAGE = range(100, 105)


@dataclass(frozen=True)
class SyntheticClassesSpec(GeneratedSpec):
    """Everything that determines the generated files (stored as ``spec.json``).

    ``num_classes`` classes of ``kind`` with ``train_per_class`` and
    ``val_per_class`` images each, ``height x width`` pixels. Nuisance
    strengths: ``scale_jitter`` (log-uniform half range of the composition's
    scale), ``shift_jitter`` (uniform half range of its shift, fraction of the
    image size), ``shape_jitter`` (std of each part's move, same unit) and
    ``contrast_jitter`` (std of log contrast) apply to the generic kind;
    ``flip_prob``, ``brightness_jitter`` (std of log brightness), ``noise_std``
    (grey levels) and ``clutter`` (mean number of clutter shapes) to both.
    """
    FORMAT: ClassVar[str] = FORMAT
    seed: int = 0
    kind: str = "generic"
    num_classes: int = 512
    train_per_class: int = 8
    val_per_class: int = 2
    height: int = 96
    width: int = 48
    scale_jitter: float = 0.15
    shift_jitter: float = 0.08
    shape_jitter: float = 0.03
    clutter: float = 2.5
    flip_prob: float = 0.5
    brightness_jitter: float = 0.12
    contrast_jitter: float = 0.12
    noise_std: float = 3.0
    jpeg_quality: int = 90

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.kind not in KINDS:
            problems.append(f"kind={self.kind!r} must be one of {list(KINDS)}")
        if not 2 <= self.num_classes <= 99_999:
            problems.append(f"num_classes={self.num_classes} must be in 2..99999 (5-digit class folders)")
        for name in ("train_per_class", "val_per_class"):
            if not 1 <= getattr(self, name) <= 10_000:
                problems.append(f"{name}={getattr(self, name)} must be in 1..10000 (4-digit image numbers)")
        if self.height < 32 or self.width < 16:
            problems.append(f"image size {self.height}x{self.width} must be at least 32x16")
        if not 0.0 <= self.flip_prob <= 1.0:
            problems.append(f"flip_prob={self.flip_prob} must be a probability")
        for name, top in (("scale_jitter", 0.5), ("shift_jitter", 0.5), ("shape_jitter", 0.5), ("clutter", 6.0),
                          ("brightness_jitter", 1.0), ("contrast_jitter", 1.0), ("noise_std", 64.0)):
            if not 0.0 <= getattr(self, name) <= top:
                problems.append(f"{name}={getattr(self, name)} must be in 0..{top}")
        return problems

    def count(self, split: str) -> int:
        """Images per class in ``split`` ("train" or "val")."""
        return self.train_per_class if split == "train" else self.val_per_class


def class_name(index: int) -> str:
    """Folder name of class ``index``: ``c00000`` ..., sorted order == index order."""
    return f"c{index:05d}"


def composition(spec: SyntheticClassesSpec, class_index: int) -> draw.Composition:
    """The generic kind's class ``class_index`` (its own stream: independent of num_classes)."""
    return draw.sample_composition(spec.rng(_CLASS, class_index))


def person(spec: SyntheticClassesSpec, class_index: int) -> reid.draw.Identity:
    """The people kind's class ``class_index``: a pedestrian from this spec's own stream."""
    return reid.draw.sample_identity(spec.rng(_PEOPLE_ID, class_index))


def _people_scene(spec: SyntheticClassesSpec) -> reid.SyntheticSpec:
    """The ReID set's nuisance strengths (its defaults) at this spec's size, with
    this spec's flip, brightness, noise and clutter; used for drawing only."""
    return reid.SyntheticSpec(height=spec.height, width=spec.width, flip_prob=spec.flip_prob,
                              brightness_jitter=spec.brightness_jitter, noise_std=spec.noise_std,
                              clutter=spec.clutter)


def render(spec: SyntheticClassesSpec, class_index: int, split: str, index: int) -> np.ndarray:
    """Image ``index`` of class ``class_index`` in ``split``: (height, width, 3) uint8 RGB."""
    return class_renderer(spec, class_index)(split, index)


def class_renderer(spec: SyntheticClassesSpec, class_index: int) -> Callable[[str, int], np.ndarray]:
    """``(split, index) -> image`` for class ``class_index``, the class drawn once
    (what ``render`` does per image; generation calls this once per class)."""
    def split_code(split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} must be one of {list(SPLITS)}")
        return SPLITS[split]

    if spec.kind == "people":
        scene, ident = _people_scene(spec), person(spec, class_index)

        def people(split: str, index: int) -> np.ndarray:
            rng = spec.rng(_PEOPLE_IMAGE, class_index, split_code(split), index)
            cam_rng = spec.rng(_PEOPLE_CAMERA, int(rng.integers(PEOPLE_CAMERAS)))
            cam = reid.draw.sample_camera(cam_rng, scene.color_cast, scene.blur_camera_fraction)
            return reid.render_scene(scene, rng, cam, ident)
        return people

    comp = composition(spec, class_index)

    def generic(split: str, index: int) -> np.ndarray:
        return draw.render_composition(
            comp, spec.rng(_IMAGE, class_index, split_code(split), index), spec.height, spec.width,
            scale_jitter=spec.scale_jitter, shift_jitter=spec.shift_jitter, shape_jitter=spec.shape_jitter,
            clutter=spec.clutter, flip_prob=spec.flip_prob, brightness_jitter=spec.brightness_jitter,
            contrast_jitter=spec.contrast_jitter, noise_std=spec.noise_std)
    return generic


def _write_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    """One image file (deterministic bytes: ``encode_jpeg``)."""
    path.write_bytes(encode_jpeg(image, quality))


def _readme(spec: SyntheticClassesSpec) -> str:
    what = ("random compositions of a background texture and 1-3 shapes (generic objects)"
            if spec.kind == "generic" else "one synthetic pedestrian each (drawn like the synthetic ReID set)")
    lines = [
        f"Synthetic image classification data ({spec.kind!r} kind), generated by",
        "stra_jax.data.classification.synthetic.generate_classification_folder (deterministic:",
        "the same spec gives byte-identical files).",
        "",
        f"Classes: {what}.",
        "One folder per class; the class index is the folder's position in sorted order.",
        "",
        f"classes: {spec.num_classes} ({class_name(0)}..{class_name(spec.num_classes - 1)}), "
        f"{spec.height}x{spec.width} px",
        f"train/: {spec.train_per_class} images per class, {spec.num_classes * spec.train_per_class} in all",
        f"val/: {spec.val_per_class} images per class, {spec.num_classes * spec.val_per_class} in all",
        "",
        "spec:",
        json.dumps(spec.to_json(), indent=2, sort_keys=True),
    ]
    return "\n".join(lines) + "\n"


def generate_classification_folder(out_dir: str | os.PathLike, spec: SyntheticClassesSpec | None = None) -> Path:
    """Write the set for ``spec`` (default ``SyntheticClassesSpec()``) to ``out_dir``.

    Returns the absolute root. Reuses an existing ``out_dir`` whose
    ``spec.json`` matches and raises ValueError (naming the differing fields)
    when it does not (an empty ``out_dir`` is filled); the folder is written
    under a temporary name and renamed into place, so ``out_dir`` is either
    complete or absent.
    """
    spec = SyntheticClassesSpec() if spec is None else spec

    def write(folder: Path) -> None:
        for split in SPLITS:
            (folder / split).mkdir()
        for k in range(spec.num_classes):
            name, draw_image = class_name(k), class_renderer(spec, k)
            for split in SPLITS:
                (folder / split / name).mkdir()
                for i in range(spec.count(split)):
                    _write_jpeg(folder / split / name / f"{name}_{i:04d}.jpg", draw_image(split, i),
                                spec.jpeg_quality)
        (folder / "readme.txt").write_text(_readme(spec))

    return generate_atomically(out_dir, spec, write, what="synthetic classification set", files=FILES,
                                fill_empty=True)
