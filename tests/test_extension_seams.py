"""The config-chosen seams, extended from outside the package: a dataset reader,
a sampler and a loss term registered here train one epoch through
``train_and_evaluate`` with the ReID task, as a user's plug-in module would."""
from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import reid_synthetic
from stra_jax.data.reid.common import REID_READERS, Record, ReIDDataset
from stra_jax.data.samplers import SAMPLERS
from stra_jax.losses import LOSSES
from stra_jax.losses.registry import loss_term
from stra_jax.training.loop import train_and_evaluate

CALLS: dict[str, int] = {"reader": 0, "orders": 0}


def read_toy_layout(root: str | Path) -> ReIDDataset:
    """A layout no built-in reader knows: ``{train,query,gallery}/<pid>_<camera>_<n>.png``."""
    CALLS["reader"] += 1
    root = Path(root)
    splits = {}
    for split in ("train", "query", "gallery"):
        records = []
        for path in sorted((root / split).glob("*.png")):
            pid, cam, _ = path.stem.split("_")
            records.append(Record(str(path), int(pid), int(cam)))
        splits[split] = records
    relabel = {pid: i for i, pid in enumerate(sorted({r.pid for r in splits["train"]}))}
    train = tuple(Record(r.path, relabel[r.pid], r.camid) for r in splits["train"])
    return ReIDDataset("toy_layout", str(root), train, tuple(splits["query"]), tuple(splits["gallery"]))


class PairSampler:
    """Global batches of identity pairs: two images of one identity at positions
    (2i, 2i+1), pairs shuffled per epoch; ``group_size`` 2 keeps them together."""

    group_size = 2

    def __init__(self, num_examples: int, labels: np.ndarray) -> None:
        self.num_examples, self.labels = num_examples, labels

    def _pairs(self, rng: np.random.Generator) -> np.ndarray:
        pairs = []
        for pid in np.unique(self.labels):
            members = rng.permutation(np.flatnonzero(self.labels == pid))
            pairs += [members[i:i + 2] for i in range(0, len(members) - 1, 2)]
        return np.stack(pairs)[rng.permutation(len(pairs))]

    def steps_per_epoch(self, global_batch: int) -> int:
        return 2 * len(self._pairs(np.random.default_rng(0))) // global_batch

    def epoch_order(self, global_batch: int, seed: int, epoch: int) -> np.ndarray:
        CALLS["orders"] += 1
        steps = self.steps_per_epoch(global_batch)
        flat = self._pairs(np.random.default_rng([seed, epoch])).ravel()
        return flat[: steps * global_batch].reshape(steps, global_batch)


def pair_sampler(num_examples, labels, min_pairs: int = 1) -> PairSampler:
    sampler = PairSampler(num_examples, labels())
    assert sampler.steps_per_epoch(2) >= min_pairs
    return sampler


@loss_term(metrics=("pairs_whole", "embedding_norm"), options={"target": 1.0})
def norm_to_target(options, context):
    """(|embedding| - target)^2, and whether each micro-batch holds whole pairs."""
    def term(outputs, batch, collections):
        norm = jnp.linalg.norm(outputs["embedding"].astype(jnp.float32), axis=-1)
        labels = batch["labels"]
        whole = jnp.mean((labels[0::2] == labels[1::2]).astype(jnp.float32))
        value = jnp.mean((norm - options["target"]) ** 2)
        return value, {"pairs_whole": whole, "embedding_norm": jnp.mean(norm)}

    return term


@pytest.fixture()
def plugins():
    REID_READERS.register("toy_layout", read_toy_layout, overwrite=True)
    SAMPLERS.register("toy_pairs", pair_sampler, overwrite=True)
    LOSSES.register("toy_norm", norm_to_target, overwrite=True)
    yield
    REID_READERS.unregister("toy_layout")
    SAMPLERS.unregister("toy_pairs")
    LOSSES.unregister("toy_norm")


def _write_toy_layout(root: Path, ids: int = 6) -> None:
    rng = np.random.default_rng(0)
    colours = rng.integers(40, 215, size=(ids, 3))
    counts = {"train": (4, (0, 1)), "query": (1, (0,)), "gallery": (2, (1,))}
    for split, (per_camera, cameras) in counts.items():
        (root / split).mkdir(parents=True)
        for pid in range(1, ids + 1):
            for cam in cameras:
                for n in range(per_camera if split != "train" else per_camera // len(cameras)):
                    pixels = np.clip(colours[pid - 1] + rng.normal(0, 12, (64, 32, 3)), 0, 255).astype(np.uint8)
                    Image.fromarray(pixels).save(root / split / f"{pid:03d}_{cam}_{n}.png")


def test_reader_sampler_and_loss_registered_outside_train_an_epoch(plugins, tmp_path, capsys):
    _write_toy_layout(tmp_path / "data")
    config = reid_synthetic.get_config("smoke")
    config.dataset.name, config.dataset.root = "toy_layout", str(tmp_path / "data")
    config.dataset.synthetic = None
    config.input.sampler = "toy_pairs"
    config.input.sampler_options = {"min_pairs": 3}
    config.train.losses = {"ce": {"weight": 1.0}, "diversity": {"weight": 1.0},
                           "toy_norm": {"weight": 0.01, "target": 2.0}}
    config.train.update(epochs=1, frozen_epochs=0, accum_steps=2, log_every=1)
    final = train_and_evaluate(config, tmp_path / "run")

    assert CALLS["reader"] >= 1 and CALLS["orders"] >= 1
    assert "toy_layout at" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "train/loss" in r]
    # 24 train images = 12 pairs -> 3 steps of 4 pairs, each split into 2 micro-batches of whole pairs
    assert [r["step"] for r in train_rows] == [1, 2, 3]
    assert all(r["train/pairs_whole"] == 1.0 for r in train_rows)
    assert all(np.isfinite(r["train/embedding_norm"]) for r in train_rows)
    assert 0.0 <= final["reid/mAP"] <= 1.0


def test_grouped_sampler_refuses_an_accumulation_that_splits_groups(plugins, tmp_path):
    _write_toy_layout(tmp_path / "data")
    config = reid_synthetic.get_config("smoke")
    config.dataset.name, config.dataset.root = "toy_layout", str(tmp_path / "data")
    config.dataset.synthetic = None
    config.input.sampler = "toy_pairs"
    config.train.update(epochs=1, frozen_epochs=0, accum_steps=8)
    with pytest.raises(ValueError, match=r"accum_steps=8"):
        train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
