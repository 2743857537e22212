"""A built-in synthetic FACE data set, written in insightface's formats (demo data and tests).

No real face data set can be downloaded here, so this module draws one whose
identity lives in facial PARTS (``synthetic_draw``): face shape and jaw, eye
size / spacing / shape / tilt, brow thickness / angle / arch, nose length and
width, mouth width and lip thickness, hairline.  Colours (skin, hair, brows,
iris, lips) and hair style come from small palettes, and identities come in
look-alike families of ``LOOKALIKE_GROUP`` = 3 that share all of them: a family
differs only in part geometry, so global colour does not identify a person.
Nuisance per image: yaw / pitch / roll, expression (smile, open mouth,
blinks, gaze), lighting, blur, occluders (sunglasses, mask, hand), scale and
shift jitter, background and sensor noise, JPEG.

Layout of ``out_dir``::

    train.rec, train.idx   insightface RecordIO: identity header (record 0), images
                           1..N grouped by label 0..num_train_ids-1, one record per identity
    synthetic_lfw.bin      (images, issame) pickle, images 2i and 2i+1 form pair i:
                           near-frontal (|yaw| < 15 deg), mild nuisance (LFW-like)
    synthetic_cfp.bin      frontal-profile pairs: first image |yaw| < 10 deg, second
                           50..80 deg (CFP-FP-like)
    spec.json              the spec (written last: marks a complete set)
    README.txt             statistics

Pairs: identities disjoint from the training ids (global ids num_train_ids ..
num_train_ids + num_pair_ids - 1), pair i is "same" iff i is even, so every
fold of insightface's consecutive 10-fold protocol is balanced.  Every
``HARD_NEGATIVE_EVERY`` = 3rd different pair (1/3 of the negatives) is two
members of one look-alike family (a hard negative); the others come from
different families.

Default spec (the demo's): seed 0, 200 train ids x 24 images = 4,800 train
images; 60 pair ids; 600 pairs per .bin (300 same, 300 different of which 100
look-alike) = 1,200 images each; 7,200 images of 112 x 112, 39 MB on disk,
written by one process (generation times: docs/results.md).

Determinism: every random quantity comes from ``spec.rng(stream, key...)``
(``np.random.default_rng([seed, stream, key...])``, ``stra_jax.data.generated``)
keyed by what it describes, so the same spec gives byte-identical files whatever
the order of generation.
"""
from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

import stra_jax.data.face.synthetic_draw as draw
from stra_jax.data.face.recordio import write_face_recordio
from stra_jax.data.face.verification_bin import write_verification_bin
from stra_jax.data.generated import GeneratedSpec, encode_jpeg, generate_atomically

FORMAT = "stra-jax-face-synthetic/1"   # bump when drawing or planning changes
LOOKALIKE_GROUP = 3          # identities per look-alike family (same colours and hair style)
HARD_NEGATIVE_EVERY = 3      # negative pair j is a look-alike pair when j % 3 == 0
TRAIN_FILES = ("train.rec", "train.idx")
PAIR_SETS = {"lfw": "synthetic_lfw.bin", "cfp": "synthetic_cfp.bin"}
FILES = (*TRAIN_FILES, *PAIR_SETS.values(), "spec.json", "README.txt")

# Independent random streams (first key after the seed).
_FAMILY, _MEMBER, _TRAIN_IMAGE, _PAIRS, _PAIR_IMAGE = range(5)


@dataclass(frozen=True)
class FaceSyntheticSpec(GeneratedSpec):
    """Everything that determines the generated files (stored as ``spec.json``).

    ``num_train_ids`` x ``images_per_id`` training images; ``num_pair_ids``
    held-out identities for the two pair sets of ``pairs_per_set`` pairs each;
    square images of ``size`` pixels, JPEG quality ``jpeg_quality``.
    """
    FORMAT: ClassVar[str] = FORMAT
    seed: int = 0
    num_train_ids: int = 200
    images_per_id: int = 24
    num_pair_ids: int = 60
    pairs_per_set: int = 600
    size: int = 112
    jpeg_quality: int = 95

    def problems(self) -> list[str]:
        problems = super().problems()
        if self.num_train_ids < 1 or self.images_per_id < 1:
            problems.append(f"num_train_ids={self.num_train_ids} and images_per_id={self.images_per_id} must be >= 1")
        if self.num_pair_ids < LOOKALIKE_GROUP + 1:
            problems.append(f"num_pair_ids={self.num_pair_ids} must be >= {LOOKALIKE_GROUP + 1} "
                            "(two look-alike families: hard and ordinary negative pairs)")
        if self.pairs_per_set < 2 or self.pairs_per_set % 2:
            problems.append(f"pairs_per_set={self.pairs_per_set} must be even and >= 2 (half same, half different)")
        if not 32 <= self.size <= 512:
            problems.append(f"size={self.size} must be in 32..512")
        return problems

    @property
    def train_ids(self) -> range:
        """Global identity ids of the training set (= their labels in train.rec)."""
        return range(self.num_train_ids)

    @property
    def pair_ids(self) -> range:
        """Global identity ids of the pair sets (disjoint from ``train_ids``)."""
        return range(self.num_train_ids, self.num_train_ids + self.num_pair_ids)


@dataclass(frozen=True)
class PairPlan:
    """Pair ``index`` of a verification set: global identity ids of its two
    images, whether they are the same, whether a look-alike (hard) negative,
    and the nuisance of each image."""
    index: int
    ids: tuple[int, int]
    issame: bool
    hard: bool
    nuisances: tuple[draw.FaceNuisance, draw.FaceNuisance]


def family(spec: FaceSyntheticSpec, ident: int) -> tuple[int, int]:
    """(split, family index) of global identity ``ident``: look-alike families
    are consecutive groups of ``LOOKALIKE_GROUP`` ids within a split (0 train, 1 pairs)."""
    split = int(ident >= spec.num_train_ids)
    return split, (ident - split * spec.num_train_ids) // LOOKALIKE_GROUP


@functools.lru_cache(maxsize=4096)
def face_identity(spec: FaceSyntheticSpec, ident: int) -> draw.FaceIdentity:
    """Part attributes of global identity ``ident``: its family's colours and
    hair style, its own geometry."""
    if not 0 <= ident < spec.num_train_ids + spec.num_pair_ids:
        raise ValueError(f"identity {ident} out of range 0..{spec.num_train_ids + spec.num_pair_ids - 1}")
    split, fam = family(spec, ident)
    appearance = draw.sample_appearance(spec.rng(_FAMILY, split, fam))
    return draw.sample_identity(appearance, spec.rng(_MEMBER, split, ident - split * spec.num_train_ids))


def sample_nuisance(rng: np.random.Generator, abs_yaw_deg: float, level: float = 1.0) -> draw.FaceNuisance:
    """Random nuisance with |yaw| = ``abs_yaw_deg`` (random sign); ``level``
    scales the strength of everything else (0.5: mild, LFW-like; 1: training):
    pitch / roll std 7 / 6 deg, occluder probability 0.16 (sunglasses, mask,
    hand), blur in half of the images, expression, lighting, background."""
    deg, u, normal = math.pi / 180, rng.uniform, rng.normal
    occ = float(rng.random())
    return draw.FaceNuisance(
        yaw=(1.0 if rng.random() < 0.5 else -1.0) * abs_yaw_deg * deg,
        pitch=min(max(normal(0, 7 * level), -15.0), 15.0) * deg,
        roll=min(max(normal(0, 6 * level), -15.0), 15.0) * deg,
        scale=math.exp(normal(0, 0.05 * level)), shift_x=normal(0, 0.035 * level), shift_y=normal(0, 0.035 * level),
        smile=level * u(-0.3, 1.0), mouth_open=level * u(0, 1) if rng.random() < 0.4 else 0.0,
        eye_open=0.15 if rng.random() < 0.04 * level else u(1 - 0.35 * level, 1.1),
        gaze=normal(0, 0.3 * level), light_azimuth=u(-math.pi, math.pi),
        light_strength=level * u(0.05, 0.7), brightness=math.exp(normal(0, 0.15 * level)),
        blur=u(0.3, 1.6) * level if rng.random() < 0.5 else 0.0,
        occlusion=sum(occ < level * c for c in (0.16, 0.10, 0.05)),  # sunglasses, mask, hand: 6, 5, 5 % at level 1
        occ_colour=int(rng.integers(len(draw.OCCLUDER))),
        occ_x=u(-1, 1), occ_y=u(0, 1), occ_angle=u(-1.2, 1.2),
        background=(int(rng.integers(len(draw.BACKGROUND))), int(rng.integers(len(draw.BACKGROUND)))),
        bg_angle=u(0, 2 * math.pi), noise_seed=int(rng.integers(2 ** 31)), noise_std=u(1.0, 4.0))


def train_nuisance(spec: FaceSyntheticSpec, label: int, index: int) -> draw.FaceNuisance:
    """Nuisance of training image ``index`` of ``label``: |yaw| = 80 deg * U^1.5
    (mean 32 deg, a quarter beyond 50 deg), full-strength other nuisances."""
    rng = spec.rng(_TRAIN_IMAGE, label, index)
    return sample_nuisance(rng, 80.0 * rng.random() ** 1.5, 1.0)


def _pair_nuisance(spec: FaceSyntheticSpec, which: str, i: int, slot: int) -> draw.FaceNuisance:
    rng = spec.rng(_PAIR_IMAGE, list(PAIR_SETS).index(which), i, slot)
    if which == "lfw":
        return sample_nuisance(rng, rng.uniform(0.0, 15.0), 0.5)
    return sample_nuisance(rng, rng.uniform(0.0, 10.0) if slot == 0 else rng.uniform(50.0, 80.0), 0.7)


def plan_pairs(spec: FaceSyntheticSpec, which: str) -> list[PairPlan]:
    """The ``pairs_per_set`` pairs of set ``which`` ("lfw" or "cfp"), no pixels.

    Positive pairs cycle through shuffled pair identities; negative pair j is a
    look-alike pair (two members of one family) when ``j % HARD_NEGATIVE_EVERY
    == 0``, else two identities of different families.
    """
    if which not in PAIR_SETS:
        raise ValueError(f"unknown pair set {which!r}; expected one of {sorted(PAIR_SETS)}")
    rng = spec.rng(_PAIRS, list(PAIR_SETS).index(which))
    ids = np.array(spec.pair_ids)
    fams = np.array([family(spec, int(i))[1] for i in ids])
    multi = [f for f in np.unique(fams) if (fams == f).sum() >= 2]
    half = spec.pairs_per_set // 2
    pos = np.concatenate([rng.permutation(ids) for _ in range(math.ceil(half / len(ids)))])[:half]
    hard_order = np.concatenate([rng.permutation(multi) for _ in range(math.ceil(half / len(multi)))])
    plans = []
    for i in range(spec.pairs_per_set):
        j = i // 2
        if i % 2 == 0:
            pair, hard = (int(pos[j]), int(pos[j])), False
        elif j % HARD_NEGATIVE_EVERY == 0:
            members = ids[fams == hard_order[j // HARD_NEGATIVE_EVERY]]
            pair, hard = tuple(int(k) for k in rng.choice(members, 2, replace=False)), True
        else:
            first = int(rng.choice(ids))
            others = ids[fams != fams[ids == first][0]]
            pair, hard = (first, int(rng.choice(others))), False
        plans.append(PairPlan(i, pair, i % 2 == 0, hard,
                              (_pair_nuisance(spec, which, i, 0), _pair_nuisance(spec, which, i, 1))))
    return plans


def render_train(spec: FaceSyntheticSpec, label: int, index: int) -> np.ndarray:
    """Training image ``index`` of ``label``: (size, size, 3) uint8 RGB."""
    return draw.render_face(face_identity(spec, label), train_nuisance(spec, label, index), spec.size)


def render_pair_image(spec: FaceSyntheticSpec, pair: PairPlan, slot: int) -> np.ndarray:
    """Image ``slot`` (0 or 1) of ``pair``: (size, size, 3) uint8 RGB."""
    return draw.render_face(face_identity(spec, pair.ids[slot]), pair.nuisances[slot], spec.size)


def _readme(spec: FaceSyntheticSpec, plans: dict[str, list[PairPlan]]) -> str:
    lines = [
        "Synthetic face recognition data in insightface's formats, generated by",
        "stra_jax.data.face.synthetic.generate_face_set (deterministic: the same spec gives",
        "byte-identical files). Identity lives in facial part geometry; look-alike families of",
        f"{LOOKALIKE_GROUP} share skin, hair, brow, iris and lip colours and hair style.",
        "",
        f"train.rec/.idx: {spec.num_train_ids} identities (labels 0..{spec.num_train_ids - 1}) x "
        f"{spec.images_per_id} images = {spec.num_train_ids * spec.images_per_id} images, "
        f"{spec.size}x{spec.size} JPEG q{spec.jpeg_quality}",
        f"pair identities: {spec.num_pair_ids} held-out ids ({spec.pair_ids.start}..{spec.pair_ids.stop - 1}), "
        "disjoint from train; pair i is 'same' iff i is even",
    ]
    for which, plan in plans.items():
        yaw = np.degrees([[abs(n.yaw) for n in p.nuisances] for p in plan]).mean(0)
        lines.append(f"{PAIR_SETS[which]}: {len(plan)} pairs ({sum(p.issame for p in plan)} same, "
                     f"{sum(not p.issame for p in plan)} different of which {sum(p.hard for p in plan)} "
                     f"look-alike), mean |yaw| {yaw[0]:.1f} / {yaw[1]:.1f} deg (first / second image)")
    lines += ["", "spec:", json.dumps(spec.to_json(), indent=2, sort_keys=True)]
    return "\n".join(lines) + "\n"


def generate_face_set(out_dir: str | os.PathLike, spec: FaceSyntheticSpec | None = None) -> Path:
    """Write the set for ``spec`` (default ``FaceSyntheticSpec()``) to ``out_dir``.

    Returns the absolute root.  Reuses an ``out_dir`` that holds the same spec,
    raises ValueError (naming the folder and the difference) when it holds
    another spec or unrelated files; an empty ``out_dir`` is filled.  Files are
    written to a temporary sibling directory renamed into place at the end, so
    ``out_dir`` is either complete or untouched.
    """
    spec = FaceSyntheticSpec() if spec is None else spec

    def write(folder: Path) -> None:
        q = spec.jpeg_quality
        write_face_recordio(folder / "train.rec",
                            ((encode_jpeg(render_train(spec, label, i), q), label)
                             for label in spec.train_ids for i in range(spec.images_per_id)),
                            identity_header=True)
        plans = {which: plan_pairs(spec, which) for which in PAIR_SETS}
        for which, plan in plans.items():
            images = [encode_jpeg(render_pair_image(spec, pair, slot), q) for pair in plan for slot in (0, 1)]
            write_verification_bin(folder / PAIR_SETS[which], images, [pair.issame for pair in plan])
        (folder / "README.txt").write_text(_readme(spec, plans))

    return generate_atomically(out_dir, spec, write, what="synthetic face set", files=FILES, fill_empty=True)
