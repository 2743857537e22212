"""python -m stra_jax.tools.export: StableHLO and SavedModel equal the JAX eval forward pass."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stra_jax.models import abstract_variables, create_model, save_model
from tests.helpers import REPO, randomize_variables

NARROW = dict(width=8, stage_sizes=(1, 1, 1, 1), num_classes=5)  # StRA in layer4_0
SIZE = (32, 16)
MAX_DIFF: dict[str, float] = {}  # measured, printed at the end (-s) for the README


def _variables(model, seed: int = 0):
    """Non-trivial variables without compiling an init: every BatchNorm's statistics
    and affine perturbed (eval-mode BN is then far from an identity)."""
    zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract_variables(model))
    return randomize_variables(zeros, seed)


def _reference(model, variables, images: np.ndarray) -> np.ndarray:
    """The evaluation features, written here independently of the export code."""
    return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False)["embedding"])(variables, images))


def _images(batch: int, size=SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *size, 3)).astype(np.float32)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stra_jax.tools.export", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def _error_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("error: ") or "error:" in ln]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The narrow StRA-ResNet-50 as a model directory (with the evaluation size training
    records and a step) and as a training workdir's model_best; its variables."""
    root = tmp_path_factory.mktemp("export")
    model = create_model("stra_resnet50", **NARROW)
    variables = _variables(model)
    info = {"step": 7, "config": {"task": "reid", "input": {"image_size": list(SIZE)}}}
    save_model(root / "model", "stra_resnet50", NARROW, variables, info=info)
    save_model(root / "workdir" / "model_best", "stra_resnet50", NARROW, variables)
    (root / "notamodel").mkdir()
    (root / "notamodel" / "something.txt").write_text("x")
    return root, model, variables


def test_stablehlo_matches_the_eval_forward_pass_for_any_batch(saved, tmp_path):
    from stra_jax.tools.export import export_model, load_stablehlo, read_export_meta

    root, model, variables = saved
    out = export_model(root / "model", tmp_path / "hlo", "stablehlo")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hlo"]  # no staging directory left
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.mlir", "model.stablehlo"]
    assert "stablehlo" in (out / "model.mlir").read_text()
    exported = jax.export.deserialize(bytearray((out / "model.stablehlo").read_bytes()))
    assert exported.platforms == ("cpu", "cuda")
    assert str(exported.in_avals[0].shape[0]) == "b" and exported.in_avals[0].shape[1:] == (*SIZE, 3)
    diffs = []
    for batch in (2, 3):
        x = _images(batch, seed=batch)
        want = _reference(model, variables, x)
        got = np.asarray(exported.call(jnp.asarray(x)))
        assert got.shape == (batch, 512) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        diffs.append(float(np.abs(got - want).max()))
    np.testing.assert_allclose(np.asarray(load_stablehlo(out)(_images(2, seed=2))),
                               _reference(model, variables, _images(2, seed=2)), rtol=0, atol=1e-5)
    MAX_DIFF["stablehlo"] = max(diffs)

    meta = read_export_meta(out)
    assert meta["export_format"] == "stablehlo" and meta["arch"] == "stra_resnet50"
    assert meta["kwargs"]["width"] == 8 and meta["kwargs"]["stage_sizes"] == [1, 1, 1, 1]
    assert meta["image_size"] == list(SIZE) and "input.image_size of" in meta["image_size_source"]
    assert meta["input"]["shape"] == [None, *SIZE, 3] and meta["input"]["dtype"] == "float32"
    norm = meta["input"]["normalisation"]
    assert norm["task"] == "reid" and norm["range"] == [0.0, 1.0]
    np.testing.assert_allclose(norm["mean"], [0.485, 0.456, 0.406])
    np.testing.assert_allclose(norm["std"], [0.229, 0.224, 0.225])
    assert meta["output"] == {"name": "embedding", "dim": 512, "dtype": "float32",
                              "computed_as": "model.apply(variables, images, train=False)['embedding']"}
    assert meta["checkpoint"] == str(root / "model") and meta["step"] == 7 and meta["workdir"] is None


def test_savedmodel_serving_signature_matches(saved, tmp_path):
    import tensorflow as tf

    from stra_jax.tools.export import export_model, read_export_meta

    root, model, variables = saved
    out = export_model(root / "model", tmp_path / "sm", "savedmodel")
    assert (out / "saved_model.pb").is_file() and (out / "variables").is_dir()
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    spec = serve.structured_input_signature[1]["images"]
    assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, *SIZE, 3]
    diffs = []
    for batch in (2, 5):
        x = _images(batch, seed=10 + batch)
        got = serve(images=tf.constant(x))
        assert list(got) == ["embedding"]
        got = got["embedding"].numpy()
        want = _reference(model, variables, x)
        assert got.shape == (batch, 512) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        diffs.append(float(np.abs(got - want).max()))
    MAX_DIFF["savedmodel"] = max(diffs)
    meta = read_export_meta(out)
    assert meta["export_format"] == "savedmodel" and meta["signature"] == "serving_default"


def test_cli_exports_a_workdir_and_refuses_to_overwrite(saved, tmp_path):
    root, model, variables = saved
    out = tmp_path / "out"
    result = _cli("--checkpoint", str(root / "workdir"), "--format", "stablehlo", "--out", str(out),
                  "--image-size", "32x16", "--platforms", "cpu")
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout and "--image-size" in result.stdout
    meta = json.loads((out / "export.json").read_text())
    assert meta["checkpoint"] == str(root / "workdir" / "model_best") and meta["workdir"] == str(root / "workdir")
    assert meta["step"] is None and meta["platforms"] == ["cpu"] and meta["image_size_source"] == "--image-size"
    exported = jax.export.deserialize(bytearray((out / "model.stablehlo").read_bytes()))
    x = _images(3, seed=3)
    np.testing.assert_allclose(np.asarray(exported.call(x)), _reference(model, variables, x), rtol=0, atol=1e-5)

    before = (out / "model.stablehlo").stat().st_mtime_ns
    again = _cli("--checkpoint", str(root / "workdir"), "--format", "stablehlo", "--out", str(out))
    assert again.returncode == 1
    assert _error_line(again.stderr) == (f"error: {out}: already exists (pass overwrite=True / --overwrite to "
                                         "replace it)")
    assert (out / "model.stablehlo").stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("case", ["not_a_model", "format", "image_size", "platforms"])
def test_cli_bad_input_fails_in_one_line_and_writes_nothing(case, saved, tmp_path):
    root = saved[0]
    out = tmp_path / "sub" / "out"
    args = {"checkpoint": str(root / "model"), "format": "stablehlo", "out": str(out)}
    extra = []
    if case == "not_a_model":
        args["checkpoint"] = str(root / "notamodel")
    elif case == "format":
        args["format"] = "onnx"
    elif case == "image_size":
        extra = ["--image-size", "32by16"]
    else:
        extra = ["--platforms", "cpu,gpu9"]
    result = _cli(*[v for k, a in args.items() for v in (f"--{k}", a)], *extra)
    line = _error_line(result.stderr)
    if case == "not_a_model":
        assert result.returncode == 1
        assert line.startswith(f"error: {root / 'notamodel'}: no model.json here")
        assert "model_best/ or model_last/" in line and "(model.json + variables/)" in line
    elif case == "format":
        assert result.returncode == 2
        assert "--format" in line and "'onnx'" in line and "savedmodel" in line and "stablehlo" in line
    elif case == "image_size":
        assert result.returncode == 1
        assert line == "error: --image-size 32by16: expected H,W or HxW with positive integers, e.g. 256,128"
    else:
        assert result.returncode == 1 and line.startswith("error: --platforms cpu,gpu9: expected")
    assert not out.exists() and not out.parent.exists()


def test_export_model_rejects_a_size_the_model_cannot_take(saved, tmp_path):
    from stra_jax.tools.export import export_model

    with pytest.raises(ValueError, match="format 'onnx': expected one of savedmodel, stablehlo"):
        export_model(saved[0] / "model", tmp_path / "x", "onnx")
    face = create_model("resnet50_face", width=8, stage_sizes=(1, 1, 1, 1), input_size=(32, 32))
    save_model(tmp_path / "face", "resnet50_face", dict(width=8, stage_sizes=(1, 1, 1, 1), input_size=(32, 32)),
               _variables(face, seed=1))
    with pytest.raises(ValueError, match="32x32"):
        export_model(tmp_path / "face", tmp_path / "x", "stablehlo", image_size=(48, 32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face"]


def test_face_net_exports_at_its_input_size(tmp_path):
    from stra_jax.tools.export import export_model, load_stablehlo, read_export_meta

    start = time.perf_counter()
    kwargs = dict(width=8, stage_sizes=(1, 1, 1, 1), stra_stages=(3,), input_size=(32, 32), embedding_dim=16)
    model = create_model("stra_resnet50_face", **kwargs)
    variables = _variables(model, seed=2)
    save_model(tmp_path / "face", "stra_resnet50_face", kwargs, variables)
    out = export_model(tmp_path / "face", tmp_path / "out", "stablehlo", platforms=("cpu",))
    meta = read_export_meta(out)
    assert meta["image_size"] == [32, 32] and meta["image_size_source"] == "the model's input_size"
    norm = meta["input"]["normalisation"]
    assert norm["task"] == "face" and norm["mean"] == [127.5] * 3 and norm["std"] == [128.0] * 3
    assert meta["output"]["dim"] == 16
    x = _images(3, (32, 32), seed=4)
    got = np.asarray(load_stablehlo(out)(x))
    want = _reference(model, variables, x)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    MAX_DIFF["stablehlo_face"] = float(np.abs(got - want).max())
    print(f"\nface export check: {time.perf_counter() - start:.1f} s; max abs differences {MAX_DIFF}")
