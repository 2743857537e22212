"""Synthetic pedestrian images in the exact Market-1501 layout (demo data and tests).

No real ReID data set can be downloaded here, so this module draws one whose
identity lives in body PARTS, the structure StRAttention is meant to exploit:

* An identity is a random combination of part attributes -- head (skin, hair
  colour, long hair, cap), upper body (colour, second colour, texture: solid /
  horizontal stripes / vertical stripes / checks, period, sleeve length), lower
  body (trousers / shorts / skirt, colour, texture), shoes, an optional shoulder
  bag (side, colour) and body build.  Each attribute comes from a small palette
  shared by all parts and identities, so no single part identifies a person.
  With probability ``twin_fraction`` an even pid is the "colour twin" of the
  previous pid: the same colours with upper and lower garments exchanged, so
  that a position-free colour histogram cannot tell the pair apart -- only the
  vertical arrangement of the parts can.
* The person is an articulated silhouette (ellipse head, trapezoid torso,
  capsule arms and legs) drawn with vectorised signed-distance masks
  (``synthetic_draw``); Pillow is used only to encode JPEG.
* Nuisances per image: scale / shift jitter of the person box, pose (leg spread,
  arm swing), horizontal flip (a person seen from the other side: the bag
  changes side), brightness, background clutter in the clothing colours,
  occluders, sensor noise and JPEG.  Per camera (fixed): a 3x3 colour matrix and
  bias, optional blur, the horizon and half of the wall / floor colours (the
  other half varies per image, so the scene does not give the camera away).

Layout, as in Market-1501::

    root/bounding_box_train/  all images of the train ids (the first ceil(num_ids/2) pids)
    root/query/               test ids: one image per camera each id appears in
    root/bounding_box_test/   the other test-id images + distractors (pid 0000) + junk (pid -1)
    root/spec.json, root/readme.txt

File names ``PPPP_cCsS_FFFFFF_BB.jpg``: pid (4 digits, or ``-1``), camera 1..9,
sequence, frame (6 digits), box index (2 digits).  Every test id is seen by at
least ``min_cameras_per_id`` cameras with at least two images per camera, so every
query has a gallery match under another camera.

Determinism: every random quantity comes from ``spec.rng(stream, key...)``
(``np.random.default_rng([seed, stream, key...])``, ``stra_jax.data.generated``)
keyed by what it describes (camera, pid, image index), so the bytes of an image
do not depend on the order of generation, and the same spec gives byte-identical
files.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

import stra_jax.data.reid.synthetic_draw as draw
from stra_jax.data.generated import GeneratedSpec, encode_jpeg, generate_atomically

FORMAT = "stra-jax-synthetic/1"
TRAIN_DIR, QUERY_DIR, GALLERY_DIR = "bounding_box_train", "query", "bounding_box_test"

# Independent random streams (first key after the seed).
_CAMERA, _IDENTITY, _TWIN, _LAYOUT, _IMAGE, _DISTRACTOR, _JUNK = range(7)


@dataclass(frozen=True)
class SyntheticSpec(GeneratedSpec):
    """Everything that determines the generated files (stored as ``spec.json``).

    Sizes: ``num_ids`` identities, the first ``num_ids - num_test_ids`` for
    training (``num_test_ids=None``: ``num_ids // 2``), ``images_per_id`` images
    each of ``height x width`` pixels; ``distractors`` pid-0 and ``junk`` pid -1
    images in ``bounding_box_test``.  The rest are nuisance strengths.
    """
    FORMAT: ClassVar[str] = FORMAT
    seed: int = 0
    num_ids: int = 40
    num_cameras: int = 6
    images_per_id: int = 12
    height: int = 128
    width: int = 64
    num_test_ids: int | None = None
    distractors: int = 8
    junk: int = 4
    min_cameras_per_id: int = 2
    max_sequences: int = 6          # sequence numbers s1..sN in file names
    twin_fraction: float = 0.5      # even pids that are colour twins of pid - 1
    flip_prob: float = 0.5
    occlusion_prob: float = 0.2
    blur_camera_fraction: float = 0.34
    color_cast: float = 0.06        # std of the per-camera colour gains / mixing
    brightness_jitter: float = 0.10  # std of log brightness per image
    scale_jitter: float = 0.06      # relative person-height jitter
    shift_jitter: float = 0.03      # person-box shift std, fraction of the image size
    pose_jitter: float = 1.0        # scales leg spread and arm swing
    clutter: float = 3.0            # mean number of background shapes
    noise_std: float = 2.0          # Gaussian sensor noise, grey levels
    jpeg_quality: int = 90

    def problems(self) -> list[str]:
        problems = super().problems()
        if not 2 <= self.num_cameras <= 9:
            problems.append(f"num_cameras={self.num_cameras} must be in 2..9 (one digit in file names)")
        if not 2 <= self.min_cameras_per_id <= self.num_cameras:
            problems.append(f"min_cameras_per_id={self.min_cameras_per_id} must be in 2..num_cameras")
        if self.images_per_id < 2 * self.min_cameras_per_id:
            problems.append(f"images_per_id={self.images_per_id} must be >= 2 * min_cameras_per_id "
                            "(two images per camera: one query, one gallery)")
        if not 1 <= self.num_test < self.num_ids:
            problems.append(f"num_test_ids={self.num_test} must leave >= 1 train and >= 1 test id "
                            f"of num_ids={self.num_ids}")
        if self.num_ids > 9999 or self.images_per_id > 10_000 or max(self.distractors, self.junk) > 999:
            problems.append("num_ids <= 9999, images_per_id <= 10000, distractors and junk <= 999 "
                            "(6-digit frame numbers in file names)")
        if self.height < 32 or self.width < 16:
            problems.append(f"image size {self.height}x{self.width} must be at least 32x16")
        if self.distractors < 0 or self.junk < 0 or self.max_sequences < 1:
            problems.append("distractors, junk must be >= 0 and max_sequences >= 1")
        for name in ("twin_fraction", "flip_prob", "occlusion_prob", "blur_camera_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name}={getattr(self, name)} must be a probability")
        return problems

    @property
    def num_test(self) -> int:
        return self.num_ids // 2 if self.num_test_ids is None else self.num_test_ids

    @property
    def train_pids(self) -> range:
        return range(1, self.num_ids - self.num_test + 1)

    @property
    def test_pids(self) -> range:
        return range(self.num_ids - self.num_test + 1, self.num_ids + 1)


@dataclass(frozen=True)
class ImageRecord:
    """One file to write: ``kind`` is "person" (index = image of that pid),
    "distractor" (pid 0) or "junk" (pid -1; index = its number)."""
    folder: str
    pid: int
    cam: int
    seq: int
    frame: int
    box: int
    kind: str
    index: int

    @property
    def name(self) -> str:
        pid = "-1" if self.pid < 0 else f"{self.pid:04d}"
        return f"{pid}_c{self.cam}s{self.seq}_{self.frame:06d}_{self.box:02d}.jpg"


def identity(spec: SyntheticSpec, pid: int) -> draw.Identity:
    """Part attributes of ``pid`` (a colour twin of ``pid - 1`` for some even pids)."""
    if pid % 2 == 0 and spec.rng(_TWIN, pid).random() < spec.twin_fraction:
        return draw.swap_colours(draw.sample_identity(spec.rng(_IDENTITY, pid - 1)))
    return draw.sample_identity(spec.rng(_IDENTITY, pid))


def plan_images(spec: SyntheticSpec) -> list[ImageRecord]:
    """All files of the data set, with split, camera and name (no pixels)."""
    records = []
    for pid in range(1, spec.num_ids + 1):
        rng = spec.rng(_LAYOUT, pid)
        n = spec.images_per_id
        k = int(rng.integers(spec.min_cameras_per_id, min(spec.num_cameras, n // 2) + 1))
        cams = np.sort(rng.choice(spec.num_cameras, k, replace=False)) + 1
        # Two images per camera guarantee a query and a gallery image in each.
        assign = rng.permutation(np.concatenate([np.repeat(cams, 2), rng.choice(cams, n - 2 * k)]))
        seqs = {int(c): int(rng.integers(1, spec.max_sequences + 1)) for c in cams}
        frames = int(rng.integers(0, 1_000_000 - 60 * n)) + np.cumsum(rng.integers(3, 60, n))
        boxes = rng.integers(1, 4, n)
        query = {int(c): int(rng.choice(np.flatnonzero(assign == c))) for c in cams}
        is_test = pid in spec.test_pids
        for j in range(n):
            c = int(assign[j])
            folder = (QUERY_DIR if query[c] == j else GALLERY_DIR) if is_test else TRAIN_DIR
            records.append(ImageRecord(folder, pid, c, seqs[c], int(frames[j]),
                                       int(boxes[j]), "person", j))
    for kind, pid, stream, count in (("distractor", 0, _DISTRACTOR, spec.distractors),
                                     ("junk", -1, _JUNK, spec.junk)):
        for i in range(count):
            rng = spec.rng(stream, i, 0)
            # frame = 1000 * i + offset keeps names unique without a shared counter
            records.append(ImageRecord(GALLERY_DIR, pid, int(rng.integers(1, spec.num_cameras + 1)),
                                       int(rng.integers(1, spec.max_sequences + 1)),
                                       1000 * i + int(rng.integers(0, 1000)),
                                       int(rng.integers(1, 4)), kind, i))
    return records


def render(spec: SyntheticSpec, rec: ImageRecord) -> np.ndarray:
    """Pixels of one record: (height, width, 3) uint8 RGB."""
    cam = draw.sample_camera(spec.rng(_CAMERA, rec.cam), spec.color_cast, spec.blur_camera_fraction)
    if rec.kind == "person":
        rng = spec.rng(_IMAGE, rec.pid, rec.index)
        person = identity(spec, rec.pid)
    else:
        rng = spec.rng(_DISTRACTOR if rec.kind == "distractor" else _JUNK, rec.index, 1)
        person = draw.sample_identity(rng)  # an anonymous passer-by
    return render_scene(spec, rng, cam, person, rec.kind)


def render_scene(spec: SyntheticSpec, rng: np.random.Generator, cam: draw.Camera, person: draw.Identity,
                 kind: str = "person") -> np.ndarray:
    """One image of ``person`` seen by ``cam``: (spec.height, spec.width, 3) uint8 RGB.

    Background and clutter, person placement and pose, occluder, flip,
    brightness and the camera's response, with the nuisance strengths of
    ``spec``, all drawn from ``rng`` in a fixed order. ``kind`` "distractor"
    (background only or a person mostly outside the box) and "junk" (a badly
    cropped, blurred body part) are the Market gallery's non-person boxes.
    Also used by the synthetic classification set's "people" kind.
    """
    h, w = spec.height, spec.width
    canvas = draw.draw_background(rng, cam, h, w, spec.clutter)
    s = h * 0.92 * person.height * math.exp(spec.scale_jitter * rng.standard_normal())
    cx = w / 2 + spec.shift_jitter * w * rng.standard_normal()
    top = (h - s) / 2 + spec.shift_jitter * h * rng.standard_normal()
    extra_blur = 0.0
    if kind == "distractor":
        if rng.random() < 0.5:
            s = 0.0  # background only: a false detection
        else:        # a person mostly outside the box
            cx += rng.choice([-1.0, 1.0]) * w * rng.uniform(0.55, 0.8)
    elif kind == "junk":  # a badly cropped, blurred body part
        s *= rng.uniform(1.8, 3.0)
        top -= s * rng.uniform(0.0, 0.6)
        extra_blur = 1.5
    pj = spec.pose_jitter
    legs = tuple(pj * rng.uniform(-0.03, 0.25, 2))
    arms = tuple(pj * rng.uniform(0.03, 0.3, 2))
    if s > 0.0:
        draw.draw_person(canvas, person, cx, top, s, legs, arms)
        if rng.random() < spec.occlusion_prob:
            draw.draw_occluder(rng, canvas, cx, top, s)
    if rng.random() < spec.flip_prob:
        canvas = canvas[:, ::-1]
    brightness = math.exp(spec.brightness_jitter * rng.standard_normal())
    return draw.apply_camera(canvas, cam, rng, brightness=brightness,
                             noise_std=spec.noise_std, extra_blur=extra_blur)


def _write_jpeg(path: Path, image: np.ndarray, quality: int) -> None:
    """One image file (deterministic bytes: ``encode_jpeg``)."""
    path.write_bytes(encode_jpeg(image, quality))


def _readme(spec: SyntheticSpec, records: list[ImageRecord]) -> str:
    counts = {d: sum(r.folder == d for r in records) for d in (TRAIN_DIR, QUERY_DIR, GALLERY_DIR)}
    lines = [
        "Synthetic pedestrian re-identification data in the Market-1501 layout,",
        "generated by stra_jax.data.reid.synthetic.generate_market_layout (deterministic:",
        "the same spec gives byte-identical files).",
        "",
        "Each identity is a combination of part attributes (head, upper body, lower body,",
        "shoes, bag) drawn from palettes shared across identities; per-camera colour casts,",
        "pose, flips, occlusion, clutter, blur and JPEG noise vary per image.",
        "",
        f"train ids: {spec.train_pids.start}..{spec.train_pids.stop - 1}, "
        f"test ids: {spec.test_pids.start}..{spec.test_pids.stop - 1}",
        *(f"{d}: {n} images" for d, n in counts.items()),
        f"({spec.distractors} distractors with pid 0000 and {spec.junk} junk images with pid -1 "
        f"are in {GALLERY_DIR})",
        "",
        "spec:",
        json.dumps(spec.to_json(), indent=2, sort_keys=True),
    ]
    return "\n".join(lines) + "\n"


def generate_market_layout(out_dir: str | os.PathLike, spec: SyntheticSpec | None = None) -> Path:
    """Write the data set for ``spec`` (default ``SyntheticSpec()``) to ``out_dir``.

    Returns the absolute root path.  Reuses an existing ``out_dir`` whose
    ``spec.json`` matches and raises ValueError (naming the differing fields)
    when it does not.  Files are written to a temporary sibling directory that
    is renamed into place at the end, so ``out_dir`` is either complete or absent.
    """
    spec = SyntheticSpec() if spec is None else spec

    def write(folder: Path) -> None:
        records = plan_images(spec)
        for d in (TRAIN_DIR, QUERY_DIR, GALLERY_DIR):
            (folder / d).mkdir()
        for rec in records:
            _write_jpeg(folder / rec.folder / rec.name, render(spec, rec), spec.jpeg_quality)
        (folder / "readme.txt").write_text(_readme(spec, records))

    return generate_atomically(out_dir, spec, write, what="synthetic data set")
