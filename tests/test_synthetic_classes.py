"""The synthetic classification set (stra_jax.data.classification.synthetic): layout,
determinism (also across num_classes), reuse / refusal, spec checks, the people
kind, and that the generic kind is learnable but not separable by colour alone."""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stra_jax.data.classification import synthetic
from stra_jax.data.classification.synthetic import SyntheticClassesSpec, generate_classification_folder
from stra_jax.data.reid import synthetic as reid_synthetic

SMALL = SyntheticClassesSpec(seed=5, num_classes=4, train_per_class=3, val_per_class=2, height=48, width=24)
PEOPLE = dataclasses.replace(SMALL, kind="people", num_classes=3, height=64, width=32)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _check_layout(root: Path, spec: SyntheticClassesSpec) -> None:
    assert sorted(p.name for p in root.iterdir()) == ["readme.txt", "spec.json", "train", "val"]
    assert json.loads((root / "spec.json").read_text()) == spec.to_json()
    names = [f"c{k:05d}" for k in range(spec.num_classes)]
    for split, count in (("train", spec.train_per_class), ("val", spec.val_per_class)):
        assert sorted(p.name for p in (root / split).iterdir()) == names
        for name in names:
            files = sorted(p.name for p in (root / split / name).iterdir())
            assert files == [f"{name}_{i:04d}.jpg" for i in range(count)]
            for f in files:
                with Image.open(root / split / name / f) as im:
                    assert im.format == "JPEG"
                    assert np.asarray(im).shape == (spec.height, spec.width, 3)
    readme = (root / "readme.txt").read_text()
    assert f"{spec.num_classes * spec.train_per_class} in all" in readme and spec.kind in readme


def test_layout_counts_and_decoding(tmp_path):
    _check_layout(generate_classification_folder(tmp_path / "set", SMALL), SMALL)


def test_people_kind(tmp_path):
    root = generate_classification_folder(tmp_path / "people", PEOPLE)
    _check_layout(root, PEOPLE)
    people = [synthetic.person(PEOPLE, k) for k in range(20)]
    assert len(set(people)) == len(people)
    # Own random streams: none of the ReID set's identities (same seed) reappears.
    reid = reid_synthetic.SyntheticSpec(seed=PEOPLE.seed, num_ids=40)
    assert not set(people) & {reid_synthetic.identity(reid, p) for p in range(1, 41)}
    images = [np.asarray(Image.open(p), np.float32) for p in sorted((root / "train").rglob("*.jpg"))]
    assert min(np.abs(a - b).mean() for i, a in enumerate(images) for b in images[i + 1:]) > 2.0


# ----------------------------------------------------------------------------- determinism

def test_deterministic_and_seeded(tmp_path):
    a = _files(generate_classification_folder(tmp_path / "a", SMALL))
    b = _files(generate_classification_folder(tmp_path / "b", SMALL))
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    c = _files(generate_classification_folder(tmp_path / "c", dataclasses.replace(SMALL, seed=6)))
    jpegs = {v for k, v in a.items() if k.endswith(".jpg")}
    assert len(jpegs) == 4 * 5 and not jpegs & {v for k, v in c.items() if k.endswith(".jpg")}


def test_class_images_do_not_depend_on_num_classes_or_order(tmp_path):
    four = _files(generate_classification_folder(tmp_path / "four", SMALL))
    six = _files(generate_classification_folder(tmp_path / "six", dataclasses.replace(SMALL, num_classes=6)))
    jpegs = [k for k in four if k.endswith(".jpg")]
    assert len(jpegs) == 20 and all(four[k] == six[k] for k in jpegs)
    assert sum(k.endswith(".jpg") for k in six) == 30
    bigger = dataclasses.replace(PEOPLE, num_classes=7)
    keys = [(k, s, i) for k in range(PEOPLE.num_classes) for s in ("train", "val") for i in range(2)]
    forward = [synthetic.render(PEOPLE, *key) for key in keys]
    backward = [synthetic.render(bigger, *key) for key in reversed(keys)][::-1]
    assert all(np.array_equal(x, y) for x, y in zip(forward, backward))


# ----------------------------------------------------------------------------- reuse, checks

def test_existing_directory_reused_or_rejected(tmp_path, monkeypatch):
    root = generate_classification_folder(tmp_path / "d", SMALL)
    before = _files(root)

    def no_writes(*args, **kwargs):
        raise AssertionError("regenerated an existing data set")
    monkeypatch.setattr(synthetic, "_write_jpeg", no_writes)
    assert generate_classification_folder(tmp_path / "d", SMALL) == root
    assert _files(root) == before

    with pytest.raises(ValueError, match="num_classes") as err:
        generate_classification_folder(root, dataclasses.replace(SMALL, num_classes=5))
    assert str(root) in str(err.value) and "seed" not in str(err.value)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("not a data set")
    with pytest.raises(ValueError, match="spec.json"):
        generate_classification_folder(tmp_path / "other", SMALL)


@pytest.mark.parametrize("bad", [dict(kind="cats"), dict(height=24), dict(width=8), dict(num_classes=1),
                                 dict(num_classes=100_000), dict(train_per_class=0), dict(val_per_class=0),
                                 dict(flip_prob=1.5), dict(scale_jitter=-0.1), dict(seed=-1)],
                         ids=lambda d: "-".join(f"{k}={v}" for k, v in d.items()))
def test_invalid_specs_are_rejected(bad):
    field = next(iter(bad))
    with pytest.raises(ValueError, match="size" if field in ("height", "width") else field):
        dataclasses.replace(SMALL, **bad)


def test_unknown_split_is_rejected():
    with pytest.raises(ValueError, match="split='test'"):
        synthetic.render(SMALL, 0, "test", 0)


# ----------------------------------------------------------------------------- class structure

def test_classes_share_every_single_attribute():
    """No one attribute identifies a class: over the default 512 classes every
    background type / colour and part shape / colour is used by many classes,
    while the compositions themselves are all distinct."""
    spec = SyntheticClassesSpec()
    comps = [synthetic.composition(spec, k) for k in range(spec.num_classes)]
    assert len(set(comps)) == len(comps)
    parts = [p for c in comps for p in c.parts]
    for values in ([c.background for c in comps], [c.bg1 for c in comps], [p.kind for p in parts],
                   [p.colour for p in parts], [len(c.parts) for c in comps]):
        assert min(Counter(values).values()) >= 20, Counter(values)


def _load(root: Path, split: str, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Images block-averaged by ``block`` (an explicit reshape-mean), and labels
    from the folder order."""
    x, y = [], []
    for label, folder in enumerate(sorted((root / split).iterdir())):
        for f in sorted(folder.iterdir()):
            a = np.asarray(Image.open(f), np.float64)
            h, w = a.shape[:2]
            x.append(a.reshape(h // block, block, w // block, block, 3).mean((1, 3)))
            y.append(label)
    return np.stack(x), np.array(y)


def _nearest_class_mean(train: np.ndarray, ytrain: np.ndarray, val: np.ndarray, yval: np.ndarray) -> float:
    """Accuracy of the nearest class centroid (Euclidean), written with loops."""
    classes = sorted(set(ytrain.tolist()))
    centroids = [train[ytrain == c].mean(0) for c in classes]
    hits = 0
    for v, label in zip(val, yval):
        dists = [float(((v - m) ** 2).sum()) for m in centroids]
        hits += classes[int(np.argmin(dists))] == label
    return hits / len(yval)


def test_generic_set_is_learnable_but_not_trivial(tmp_path):
    """10 classes: a nearest-class-mean classifier on 12x6 pixels beats chance
    (0.1) by far, the mean colour alone does much worse (measured over seeds
    0..9: pixels 0.65..0.83, mean colour 0.28..0.55; 512 classes at 96x48:
    pixels 0.43, mean colour 0.06)."""
    spec = SyntheticClassesSpec(seed=0, num_classes=10, train_per_class=6, val_per_class=4, height=48, width=24)
    root = generate_classification_folder(tmp_path / "learn", spec)
    xt, yt = _load(root, "train", 4)
    xv, yv = _load(root, "val", 4)
    pixels = _nearest_class_mean(xt.reshape(len(xt), -1), yt, xv.reshape(len(xv), -1), yv)
    colour = _nearest_class_mean(xt.mean((1, 2)), yt, xv.mean((1, 2)), yv)
    assert pixels >= 0.45, pixels
    assert colour <= 0.8, colour
    assert pixels > colour, (pixels, colour)
