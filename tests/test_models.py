"""Model zoo on narrow networks: shapes, options, losses, checkpoints, bad input."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stra_jax import total_diversity_loss
from stra_jax.models import create_model, init_variables, list_models, load_model, save_model

NARROW = dict(width=8, stage_sizes=(1, 1, 2, 3))  # stage 4: 3 blocks of C = 64 channels
IMAGES = jax.random.normal(jax.random.key(0), (2, 64, 32, 3))


def _apply_train(model, variables, images=IMAGES):
    return jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats", "losses"]))(
        variables, images)


def _apply_eval(model, variables, images=IMAGES, **kw):
    return jax.jit(lambda v, x: model.apply(v, x, train=False, **kw))(variables, images)


@pytest.fixture(scope="module")
def narrow():
    """One narrow StRA network, initialised once (init compiles take seconds)."""
    model = create_model("stra_resnet50", num_classes=10, **NARROW)
    return model, init_variables(model, jax.random.key(1))


def test_registry_lists_models():
    assert list_models() == ["mobilenetv2_x1_0", "mobilenetv2_x1_4", "nonlocal_resnet50", "resnet50", "resnet50_face",
                             "sasa_resnet50", "se_resnet50", "stra_mobilenetv2_x1_0", "stra_mobilenetv2_x1_4",
                             "stra_resnet50", "stra_resnet50_face"]


def test_stra_network_shapes_and_diversity_from_every_block(narrow):
    model, variables = narrow
    assert set(variables) == {"params", "batch_stats"}
    out, state = _apply_train(model, variables)
    assert out["embedding"].shape == (2, 512) and out["logits"].shape == (2, 10)
    assert out["features"].shape == (2, 8 * 8 * 4)
    sown = state["losses"]
    assert sorted(sown) == ["layer4_0", "layer4_1", "layer4_2"]
    per_block = [sown[f"layer4_{i}"]["stra"]["mode"]["diversity"] for i in range(3)]
    np.testing.assert_allclose(total_diversity_loss(sown), sum(per_block), rtol=1e-6)
    eval_out = _apply_eval(model, variables)
    assert set(eval_out) == {"features", "embedding", "logits"}


def _shapes(model, method="train", **kw):
    """Output / collection shapes by tracing only (no XLA compile)."""
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), IMAGES, train=False))
    if method == "init":
        return variables
    mutable = ["batch_stats", "losses"] if method == "train" else kw.pop("mutable", False)
    return jax.eval_shape(lambda v: model.apply(v, IMAGES, train=method == "train", mutable=mutable, **kw),
                          variables)


def test_options_change_the_network():
    paper = create_model("stra_resnet50", num_classes=5, embedding_dim=None, **NARROW)
    assert _shapes(paper, "eval")["embedding"].shape == (2, 256)
    two_stages = create_model("stra_resnet50", stra_stages=(2, 3), **NARROW)
    assert sorted(_shapes(two_stages)[1]["losses"]) == ["layer3_0", "layer3_1", "layer4_0", "layer4_1",
                                                        "layer4_2"]
    local_only = create_model("stra_resnet50", mode_attention=False, **NARROW)
    assert "losses" not in _shapes(local_only)[1]
    # Last stride 1 keeps the last stage at 1/16 of the image; 2 halves it again.
    for last_stride, hw in ((1, (4, 2)), (2, (2, 1))):
        model = create_model("stra_resnet50", last_stride=last_stride, **NARROW)
        inter = _shapes(model, "eval", capture_intermediates=True, mutable=["intermediates"])[1]
        assert inter["intermediates"]["layer4_2"]["__call__"][0].shape[1:3] == hw
    four_heads = create_model("stra_resnet50", heads=4, kernel_size=5, gate="softmax",
                              mode_interaction=False, **NARROW)
    params = _shapes(four_heads, "init")["params"]["layer4_0"]["stra"]
    assert params["local"]["logit_conv2"]["kernel"].shape[-1] == 4 * (1 + 25)
    assert "gate_bn2" not in params["mode"]
    plain = _shapes(create_model("resnet50", num_classes=3, **NARROW), "init")["params"]
    assert "conv2" in plain["layer4_0"] and "embed_conv" not in plain


def test_bfloat16_model_keeps_float32_parameters(narrow):
    m32, variables = narrow
    m16 = create_model("stra_resnet50", num_classes=10, dtype="bfloat16", **NARROW)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(_shapes(m16, "init")))
    out32 = _apply_eval(m32, variables)
    out16 = _apply_eval(m16, variables)
    assert out16["embedding"].dtype == jnp.float32  # outputs are returned in float32
    scale = float(jnp.max(jnp.abs(out32["embedding"])))
    assert float(jnp.max(jnp.abs(out16["embedding"] - out32["embedding"]))) < 0.1 * scale


def test_save_and_load_round_trip(tmp_path, narrow):
    model, variables = narrow
    _, state = _apply_train(model, variables)  # non-trivial batch statistics
    variables = {"params": variables["params"], "batch_stats": state["batch_stats"]}
    out_dir = save_model(tmp_path / "m", "stra_resnet50", dict(num_classes=10, **NARROW), variables)
    loaded_model, loaded = load_model(out_dir)
    jax.tree.map(np.testing.assert_array_equal, variables, loaded)
    np.testing.assert_array_equal(_apply_eval(model, variables)["logits"],
                                  _apply_eval(loaded_model, loaded)["logits"])
    with pytest.raises(FileExistsError, match="already exists"):
        save_model(out_dir, "stra_resnet50", dict(num_classes=10, **NARROW), variables)
    save_model(out_dir, "stra_resnet50", dict(num_classes=10, **NARROW), variables, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging leftovers
    with pytest.raises(ValueError, match=r"params/classifier/bias: model expects \(11,\), checkpoint has \(10,\)"):
        load_model(out_dir, num_classes=11)
    with pytest.raises(FileNotFoundError, match="model.json"):
        load_model(tmp_path)


@pytest.mark.parametrize("name,kwargs,fragment", [
    ("vgg16", {}, "unknown model 'vgg16': known models are mobilenetv2_x1_0, mobilenetv2_x1_4, nonlocal_resnet50, "
                  "resnet50, resnet50_face, sasa_resnet50, se_resnet50, stra_mobilenetv2_x1_0"),
    ("stra_resnet50", {"hedas": 8}, "unknown option(s) ['hedas']"),
    ("stra_resnet50", {"dtype": "int8"}, "dtype='int8'"),
    ("stra_resnet50", {"last_stride": 3}, "last_stride=3"),
    ("stra_resnet50", {"stra_stages": (4,)}, "stra_stages=(4,)"),
    ("stra_resnet50", {"heads": 3}, "heads=3"),
])
def test_bad_model_options(name, kwargs, fragment):
    with pytest.raises(ValueError) as info:
        model = create_model(name, **kwargs, **({} if "stage_sizes" in kwargs else NARROW))
        init_variables(model, jax.random.key(0))
    assert fragment in str(info.value)


def test_bad_images():
    model = create_model("resnet50", **NARROW)
    with pytest.raises(ValueError, match=r"images shape \(2, 64, 32\)"):
        model.init(jax.random.key(0), jnp.zeros((2, 64, 32)), train=False)
