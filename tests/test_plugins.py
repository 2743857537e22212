"""The seams: a model family, a task and an evaluator registered from outside the
package train and evaluate through the same loop and eval.py as ReID."""
from __future__ import annotations

import importlib
import json
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from stra_jax.evaluation.evaluators import Evaluator, build_evaluators, register_evaluator
from stra_jax.losses import cross_entropy
from stra_jax.models import create_model, frozen_param_mask, init_variables, list_models, register_model
from stra_jax.models.heads import ReIDHead
from stra_jax.tasks import Task, get_task, register_task
from stra_jax.training.loop import train_and_evaluate


class ToyNet(nn.Module):
    """A two-conv net that follows the model contract, with one freezable group."""

    num_classes: int = 0
    width: int = 8
    dtype: Any = jnp.float32

    FREEZABLE = ("stem",)

    @nn.compact
    def __call__(self, images, *, train: bool, frozen=()):
        x = nn.relu(nn.Conv(self.width, (3, 3), strides=2, name="stem")(images))
        x = nn.BatchNorm(use_running_average=not train or "stem" in frozen, momentum=0.9, name="bn")(x)
        x = nn.relu(nn.Conv(self.width, (3, 3), name="conv")(x))
        head = ReIDHead(num_classes=self.num_classes, embedding_dim=None)
        nn.share_scope(self, head)
        return head(x, train=train)

    def frozen_param_mask(self, params, frozen):
        return {k: jax.tree.map(lambda _: k in frozen, v) for k, v in params.items()}


def _colour_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise images whose label is the channel with the largest offset: learnable in one epoch."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int32)
    images = rng.standard_normal((n, 16, 16, 3)).astype(np.float32) * 0.5
    images[np.arange(n), :, :, labels] += 1.5
    return images, labels


class ToyTask(Task):
    progress_metrics = ("accuracy",)

    def load(self) -> str:
        self.images, self.labels = _colour_images(96, self.config.seed)
        self.test = _colour_images(48, self.config.seed + 1)
        return f"toy: {len(self.labels)} train, {len(self.test[1])} test"

    @property
    def num_classes(self) -> int:
        return 3

    @property
    def num_train_examples(self) -> int:
        return len(self.labels)

    def train_batches(self, *, epoch, start_step, global_batch, process_index, process_count):
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.labels))
        local = global_batch // process_count
        for step in range(start_step, len(order) // global_batch):
            idx = order[step * global_batch:(step + 1) * global_batch][process_index * local:(process_index + 1) * local]
            yield {"images": self.images[idx], "labels": self.labels[idx]}

    def loss(self, outputs, batch, collections):
        loss = jnp.mean(cross_entropy(outputs["logits"], batch["labels"]))
        accuracy = jnp.mean((jnp.argmax(outputs["logits"], -1) == batch["labels"]).astype(jnp.float32))
        return loss, {"loss": loss, "accuracy": accuracy}

    def eval_context(self):
        return {"toy_test": self.test}


class ToyAccuracy(Evaluator):
    """Nearest-class-mean accuracy of the embeddings on the task's test set."""

    def __init__(self, name: str, settings: dict, context: Mapping[str, Any]):
        self.name, self.images, self.labels = name, *context["toy_test"]
        self.scale = settings.pop("scale", 1.0)

    def check(self, mesh):
        pass

    def run(self, model, variables, mesh=None):
        emb = np.asarray(model.apply(variables, jnp.asarray(self.images), train=False)["embedding"])
        means = np.stack([emb[self.labels == c].mean(0) for c in range(3)])
        pred = np.argmin(((emb[:, None] - means[None]) ** 2).sum(-1), axis=1)
        return {"accuracy": self.scale * float(np.mean(pred == self.labels)), "curve": [0.0, 1.0]}

    def table(self, metrics):
        return f"{self.name}: accuracy {100 * metrics['accuracy']:.1f}"


def register_toys() -> None:
    register_model("toy_net", ToyNet, width=8, overwrite=True)
    register_task("toy", ToyTask, overwrite=True)
    register_evaluator("toy_accuracy", ToyAccuracy, overwrite=True)


@pytest.fixture(scope="module", autouse=True)
def plugins():
    register_toys()


def _toy_config(epochs: int = 1) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        task="toy", seed=0, init_from="",
        model=dict(name="toy_net", kwargs=dict(width=8)),
        evals=dict(toy=dict(type="toy_accuracy")),
        train=dict(epochs=epochs, batch_size=16, accum_steps=1, optimizer=dict(name="adam", b1=0.9, b2=0.999),
                   lr=3e-3, weight_decay=0.0, schedule=dict(name="step", decay_every=10, gamma=0.1),
                   frozen_epochs=1, frozen_groups=("stem",),
                   log_every=2, eval_every_epochs=1, checkpoint_every_epochs=1, checkpoint_every_steps=0,
                   keep_checkpoints=2, best_metric="toy/accuracy"),
    ))


def test_toy_family_and_task_train_and_evaluate_through_the_loop(tmp_path, capsys):
    assert "toy_net" in list_models()
    final = train_and_evaluate(_toy_config(), tmp_path)
    out = capsys.readouterr().out
    assert "toy: 96 train" in out and "accuracy" in out and "toy: accuracy" in out
    assert final["toy/curve"] == [0.0, 1.0] and 0.0 <= final["toy/accuracy"] <= 1.0
    assert final["toy/accuracy"] > 0.6, final  # one epoch on an easy problem: well above chance (1/3)
    assert json.loads((tmp_path / "final_metrics.json").read_text())["toy/accuracy"] == final["toy/accuracy"]
    spec = json.loads((tmp_path / "model_best" / "model.json").read_text())
    assert spec["arch"] == "toy_net" and spec["kwargs"]["num_classes"] == 3 and spec["info"]["step"] == 6
    assert (tmp_path / "model_last" / "variables").is_dir()
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("train/accuracy" in row for row in logged) and any("eval/toy/accuracy" in row for row in logged)

    # eval.py's run() on the workdir: the task and evaluators are rebuilt from the
    # config and give the number the run logged.
    eval_script = importlib.import_module("eval")
    payload = eval_script.run(_toy_config(), str(tmp_path), str(tmp_path / "eval.json"))
    assert payload["metrics"]["toy/accuracy"] == final["toy/accuracy"]


def test_frozen_groups_come_from_the_family():
    model = create_model("toy_net", num_classes=3)
    params = init_variables(model, jax.random.key(0))["params"]
    mask = frozen_param_mask(model, params, ("stem",))
    assert all(jax.tree.leaves(mask["stem"])) and not any(jax.tree.leaves(mask["conv"]))
    with pytest.raises(ValueError, match=r"frozen groups \['layer4'\]: the ToyNet family can freeze only \['stem'\]"):
        frozen_param_mask(model, params, ("layer4",))


def test_unknown_option_names_the_family_and_its_options():
    with pytest.raises(ValueError, match=r"toy_net: unknown option\(s\) \['heads'\] for the ToyNet family; "
                                         r"valid options: \['dtype', 'num_classes', 'width'\]"):
        create_model("toy_net", heads=8)
    with pytest.raises(ValueError, match=r"stra_resnet50: unknown option\(s\) \['widht'\] for the ResNet family"):
        create_model("stra_resnet50", widht=8)
    with pytest.raises(ValueError, match="unknown model 'toy'.*known models are"):
        create_model("toy")
    with pytest.raises(ValueError, match="already registered"):
        register_model("toy_net", ToyNet)


def test_unknown_evaluator_and_task_list_the_known_ones():
    with pytest.raises(ValueError, match=r"config.evals.val.type='reid': unknown evaluator; known evaluators: "
                                         r"\[.*'reid_retrieval'.*'toy_accuracy'\]"):
        build_evaluators({"val": {"type": "reid"}}, {})
    with pytest.raises(ValueError, match=r"config.task='pose': unknown task; known tasks: \['classification', 'face', 'reid', 'toy'\]"):
        get_task("pose")
    with pytest.raises(ValueError, match=r"config.evals.reid: unknown setting\(s\) \['fip'\]; valid settings"):
        build_evaluators({"reid": {"type": "reid_retrieval", "fip": True}}, {"reid_dataset": None})
