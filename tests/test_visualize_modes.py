"""Mode masks of StRA blocks (stra_jax.models.modes) and the Fig. 4 drawing tool."""
from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from stra_jax.models import abstract_variables, create_model, load_model, save_model
from stra_jax.models.modes import extract_modes, resolve_block, stra_blocks
from tests.helpers import randomize_variables

NARROW = dict(width=8, stage_sizes=(1, 1, 1, 2))  # StRA in layer4_0 and layer4_1 (C = 64, G = 8)
BLOCKS = ["layer4_0/stra/mode", "layer4_1/stra/mode"]
# As many images as the CLI test draws: its forward pass is then the same program,
# which the test session's compilation cache (conftest.py) compiles only once.
IMAGES = np.asarray(jax.random.normal(jax.random.key(0), (2, 64, 32, 3)))


def _variables(model, seed: int = 0):
    """Random non-trivial variables without compiling an init (shapes by tracing):
    BatchNorms and biases perturbed, kernels He-scaled (fan in) so that the last
    stage's maps still vary over positions and the masks are far from uniform."""
    rng = np.random.default_rng(seed)
    zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract_variables(model))

    def he(path, leaf):
        if path[-1].key != "kernel":
            return leaf
        return jnp.asarray(rng.standard_normal(leaf.shape) * np.sqrt(2 / np.prod(leaf.shape[:-1])), leaf.dtype)

    return jax.tree_util.tree_map_with_path(he, randomize_variables(zeros, seed))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The tiny model saved as a model directory (with the input size training records),
    a plain ResNet's directory, and a folder of two 64x32 JPEGs (one in a sub-folder)."""
    root = tmp_path_factory.mktemp("modes")
    variables = _variables(create_model("stra_resnet50", num_classes=4, **NARROW))
    info = {"config": {"task": "reid", "input": {"image_size": [64, 32]}}}
    save_model(root / "stra", "stra_resnet50", dict(num_classes=4, **NARROW), variables, info=info)
    plain = create_model("resnet50", num_classes=4, **NARROW)
    save_model(root / "plain", "resnet50", dict(num_classes=4, **NARROW), _variables(plain))
    rng = np.random.default_rng(0)
    (root / "images" / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.jpg", "sub/b.jpg"]):
        pixels = rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)
        pixels[8 * i:8 * i + 20, 8:24] = (220, 40, 40)  # a block that moves from image to image
        Image.fromarray(pixels).save(root / "images" / name, quality=90)
    (root / "empty").mkdir()
    return root


def test_masks_and_gates_match_the_sown_loss_and_the_mask_logits(saved):
    # Restored as the CLI restores them (committed arrays): the same program, compiled once.
    model, variables = load_model(saved / "stra")
    assert stra_blocks(model, variables) == BLOCKS
    maps = extract_modes(model, variables, IMAGES)
    assert maps.block == BLOCKS[-1] and maps.heads == 8
    assert maps.masks.shape == maps.gates.shape == maps.gates_interaction.shape == (2, 4, 2, 8)
    np.testing.assert_allclose(maps.masks.reshape(2, -1, 8).sum(1), 1.0, rtol=1e-5)
    for gates in (maps.gates, maps.gates_interaction):
        assert gates.min() >= 0.0 and gates.max() <= 1.0
    assert np.ptp(maps.masks) > 0.02  # far from uniform (1/8 everywhere): the checks below mean something

    # Independently: the L_d the block sows, and the mask BatchNorm's output softmaxed here.
    @functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})  # compiles faster
    def reference(v, x):
        return model.apply(v, x, train=False, mutable=["losses"],
                           capture_intermediates=lambda mdl, _: mdl.name == "mask_bn2")[1]

    state = reference(variables, jnp.asarray(IMAGES))
    mode = state["losses"]["layer4_1"]["stra"]["mode"]
    masks = maps.masks.reshape(2, -1, 8)
    np.testing.assert_allclose(mode["diversity"], 8 - masks.max(-1).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(maps.diversity(), mode["diversity"], rtol=1e-5)
    logits = np.asarray(state["intermediates"]["layer4_1"]["stra"]["mode"]["mask_bn2"]["__call__"][0], np.float64)
    logits = logits.reshape(2, -1, 8)
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(masks, softmax / softmax.sum(1, keepdims=True), rtol=1e-4, atol=1e-7)
    train_state = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats", "losses"])[1],
                                 variables, IMAGES)
    assert sorted(train_state) == ["batch_stats", "losses"]  # training collects no intermediates


def test_block_names():
    assert resolve_block(BLOCKS, None) == BLOCKS[-1]
    assert resolve_block(BLOCKS, "layer4_0") == resolve_block(BLOCKS, "layer4_0/stra/mode/") == BLOCKS[0]
    with pytest.raises(ValueError, match=r"layer9.*no such StRA block.*layer4_0/stra/mode.*layer4_1/stra/mode"):
        resolve_block(BLOCKS, "layer9")
    with pytest.raises(ValueError, match="names several"):
        resolve_block(BLOCKS + ["layer4_0/other/mode"], "layer4_0")
    with pytest.raises(ValueError, match="no StRA blocks"):
        resolve_block([], None)


def test_cli_writes_one_png_per_image_and_a_summary(saved, tmp_path, capsys):
    import matplotlib.pyplot as plt

    from stra_jax.tools import visualize_modes as vm

    out = tmp_path / "out"
    assert vm.main(["--checkpoint", str(saved / "stra"), "--images", str(saved / "images"),
                    "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "block layer4_1/stra/mode" in printed and "2 images at 64x32 (input.image_size of" in printed
    names = ["00_a_modes.png", "01_b_modes.png", "summary_modes.png"]
    assert sorted(p.name for p in out.iterdir()) == names  # no temporary files left
    # Each PNG is the whole figure, as drawn for these shapes.
    g = np.zeros((4, 2, 8), np.float32) + 1 / 8
    shapes = {"one": vm.draw_image(np.zeros((64, 32, 3)), g, g, g, "t"),
              "summary": vm.draw_summary(np.zeros((2, 64, 32, 3)), np.stack([g] * 2), np.stack([g] * 2),
                                         ["a", "b"], "t")}
    sizes = {k: tuple(np.round(f.get_size_inches() * f.dpi).astype(int)) for k, f in shapes.items()}
    for f in shapes.values():
        plt.close(f)
    for name in names:
        with Image.open(out / name) as image:
            image.load()
            assert image.mode == "RGB"
            assert image.size == sizes["summary" if name.startswith("summary") else "one"]
    # The run's size, read from the run, draws exactly what the size given explicitly draws.
    given = tmp_path / "given"
    assert vm.main(["--checkpoint", str(saved / "stra"), "--images", str(saved / "images"), "--out", str(given),
                    "--image-size", "64x32"]) == 0
    assert "(--image-size" in capsys.readouterr().out
    for name in names:
        with Image.open(out / name) as a, Image.open(given / name) as b:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("case", ["no_stra", "empty", "block", "missing"])
def test_cli_bad_input_fails_in_one_line(case, saved, tmp_path, capsys):
    from stra_jax.tools.visualize_modes import main

    checkpoint, images, extra = saved / "stra", saved / "images", []
    expect = {"no_stra": r"'resnet50' has no StRA blocks", "empty": str(saved / "empty") + ": no images",
              "block": r"'layer9'.*known blocks: \['layer4_0/stra/mode', 'layer4_1/stra/mode'\]",
              "missing": str(tmp_path / "nowhere") + r": no model.json.*expected a stra-jax model directory"}[case]
    if case == "no_stra":
        checkpoint = saved / "plain"
    elif case == "empty":
        images = saved / "empty"
    elif case == "block":
        extra = ["--block", "layer9"]
    else:
        checkpoint = tmp_path / "nowhere"
    out = tmp_path / "out"
    assert main(["--checkpoint", str(checkpoint), "--images", str(images), "--out", str(out), *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    assert re.search(expect, err), err
    assert not out.exists()
