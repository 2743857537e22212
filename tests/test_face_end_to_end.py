"""The face task end to end through train.py and eval.py: the synthetic set in
RecordIO/.bin, a tiny face StRA-ResNet, ArcFace + L_d, verification, the best
model by mean accuracy, eval.py's table/JSON/ROC PNGs; the classifier sharded
over 8 simulated devices; bad settings refused before anything is written."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from tests.helpers import REPO, multidevice_env

SMOKE = "configs/face_synthetic.py:smoke"


def _run(args, env=None, timeout=600):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One smoke run on 8 simulated devices with the classifier split over them
    (6 identities padded to 8 columns): the path MS1M-size runs take. (Sharded
    and replicated steps are compared number for number in test_margin_losses.)"""
    workdir = tmp_path_factory.mktemp("face") / "run"
    env = multidevice_env(8)
    proc = _run(["train.py", "--config", SMOKE, "--workdir", str(workdir), "--config.model.shard_classifier=True"],
                env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir, proc.stdout


def test_train_writes_verification_metrics_and_models(trained):
    workdir, stdout = trained
    data = workdir / "data" / "synthetic_faces"
    assert {"train.rec", "train.idx", "synthetic_lfw.bin", "synthetic_cfp.bin"} <= {p.name for p in data.iterdir()}
    final = json.loads((workdir / "final_metrics.json").read_text())
    for name in ("synthetic_lfw", "synthetic_cfp"):
        assert 0.0 <= final[f"face/{name}/accuracy"] <= 1.0 and final[f"face/{name}/pairs"] == 20
    assert final["face/mean_accuracy"] == pytest.approx(
        (final["face/synthetic_lfw/accuracy"] + final["face/synthetic_cfp/accuracy"]) / 2)
    spec = json.loads((workdir / "model_best" / "model.json").read_text())
    assert spec["arch"] == "stra_resnet50_face" and spec["kwargs"]["num_classes"] == 8  # 6 ids padded to 8 devices
    assert "face/mean_accuracy" in spec["info"]["metrics"]
    assert "6 identities" in stdout and "synthetic_lfw" in stdout and "diversity" in stdout
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert all(r["train/loss"] == r["train/loss"] for r in rows if "train/loss" in r)  # finite, logged


def test_eval_cli_table_json_and_roc(trained, tmp_path):
    """eval.py on one device reads the model whose classifier was split over 8."""
    workdir, _ = trained
    out = tmp_path / "face.json"
    proc = _run(["eval.py", "--config", SMOKE, "--checkpoint", str(workdir), "--output", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.rstrip().splitlines()[-1].startswith("mean")  # the table comes last
    assert "note: differs" not in proc.stdout  # the numbers training logged for this model
    metrics = json.loads(out.read_text())["metrics"]
    assert len(metrics["face/synthetic_cfp/roc"]["fpr"]) == 400
    for name in ("synthetic_lfw", "synthetic_cfp"):
        with Image.open(tmp_path / f"roc_{name}.png") as im:
            assert im.size == (500, 450)


def test_bad_margin_and_loss_fail_before_writing(tmp_path):
    from configs import face_synthetic
    from stra_jax.training.loop import train_and_evaluate

    workdir = tmp_path / "never"
    for key, value, message in (("margin", 2.5, r"train.losses.arcface.margin=2.5: expected a number in \[0, 1\)"),
                                ("scale", 0.0, r"train.losses.arcface.scale=0.0"),
                                ("loss", "sphereface", r"sphereface.*arcface")):
        config = face_synthetic.get_config("smoke")
        if key == "loss":  # the term's name
            config.train.losses = {value: {"weight": 1.0}}
        else:
            config.train.losses.arcface[key] = value
        with pytest.raises(ValueError, match=message):
            train_and_evaluate(config, workdir)
        assert not workdir.exists()
