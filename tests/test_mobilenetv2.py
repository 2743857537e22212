"""MobileNetV2 / StRA-MobileNetV2 against torchvision's own MobileNetV2.

torchvision builds the reference (``weights=None``: nothing is downloaded)
with random weights and random BatchNorm statistics; forward passes use narrow
networks (one block per row) on 64x32 images, full-size networks are only
counted and imported (shapes, no compile).
"""
from __future__ import annotations

import importlib
import sys
from unittest import mock

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from stra_jax import total_diversity_loss  # noqa: E402
from stra_jax.convert import from_torch_state_dict  # noqa: E402
from stra_jax.convert.mobilenetv2 import torch_name  # noqa: E402
from stra_jax.models import abstract_variables, create_model, frozen_param_mask  # noqa: E402
from stra_jax.models.complexity import count_params  # noqa: E402
from tests.torch_reference import randomize_bn_stats  # noqa: E402

# Narrow networks: two blocks in rows 1 and 5 (so that residual blocks, and a
# residual StRA block, are tested), one elsewhere: features.1 .. features.9 and
# the last conv features.10. Width 0.35: channels 16 | 8, 8, 16, 24, 32, 56, 112
# | 1280. StRA at width 0.5: hidden 288, 480 and 480 at rows 5, 6, which 8 heads
# split with r = 2 or 4 (0.35's 336 // 4 = 84 logit channels do not).
BLOCKS = (1, 2, 1, 1, 1, 2, 1)
NARROW = dict(width_mult=0.35, stage_blocks=BLOCKS)
NARROW_STRA = dict(width_mult=0.5, stage_blocks=BLOCKS)
STRA_BLOCKS = (7, 8, 9)  # rows 5 and 6
IMAGES = np.random.default_rng(0).standard_normal((2, 64, 32, 3)).astype(np.float32)

# Exact parameter counts, measured. torchvision mobilenet_v2(num_classes=1000):
# 3,504,872 (x1.0) and 6,108,776 (x1.4). StRA variants as registered (G 8, K 3,
# r 2, 751 classes; last stride 1 and the 512-d BN embedding head: 3,265,519 /
# 5,619,567 without StRA): the four 1/32 blocks trade their depthwise 3x3
# (9 * hidden weights: 31,104 / 43,632 in all) for StRAttention (632,928 /
# 1,213,416 in all).
PARAMS = {("mobilenetv2_x1_0", 1000): 3_504_872, ("mobilenetv2_x1_4", 1000): 6_108_776,
          ("stra_mobilenetv2_x1_0", 751): 3_867_343, ("stra_mobilenetv2_x1_4", 751): 6_789_351}


def _tolerant_register_fake(real):
    """torch.library.register_fake that skips torchvision ops which do not exist."""
    def register_fake(op, *args, **kwargs):
        if isinstance(op, str) and op.startswith("torchvision::") \
                and not hasattr(torch.ops.torchvision, op.split("::")[1]):
            return lambda fn: fn
        return real(op, *args, **kwargs)
    return register_fake


@pytest.fixture(scope="module")
def tv():
    """torchvision, also from a wheel whose C++ ops cannot load (a CUDA build beside
    a CPU torch): torchvision copes with missing ops except that it registers fake
    kernels for them at import; those registrations are skipped. MobileNetV2 uses
    none of torchvision's custom ops."""
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"]
    for name in [n for n in sys.modules if n.startswith("torchvision.")]:
        del sys.modules[name]  # a failed earlier import leaves half-initialised submodules
    with mock.patch.object(torch.library, "register_fake", _tolerant_register_fake(torch.library.register_fake)):
        return importlib.import_module("torchvision")  # a requirement of the tests: never skipped


def _torchvision(tv, width_mult=1.0, stage_blocks=(1, 2, 3, 4, 3, 3, 1), last_stride=2, num_classes=1000, seed=0):
    """torchvision's MobileNetV2 with random weights and BN statistics, eval mode.
    torchvision has no last stride: the 160 row's s is set instead."""
    rows = [(1, 16, 1), (6, 24, 2), (6, 32, 2), (6, 64, 2), (6, 96, 1), (6, 160, last_stride), (6, 320, 1)]
    setting = [[t, c, n, s] for (t, c, s), n in zip(rows, stage_blocks)]
    torch.manual_seed(seed)
    model = tv.models.mobilenet_v2(weights=None, num_classes=num_classes, width_mult=width_mult,
                                   inverted_residual_setting=setting)
    randomize_bn_stats(model, seed=seed)
    with torch.no_grad():
        model.classifier[1].bias.normal_(0.0, 0.1)  # zero at init: would hide a wrong bias mapping
    return model.eval()


def _jit(fn):
    """jax.jit without LLVM optimisation: for these tiny networks it costs seconds
    of compile time and saves milliseconds of run time."""
    return jax.jit(fn, compiler_options={"xla_backend_optimization_level": 0})


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _torch_outputs(model, images):
    with torch.no_grad():
        x = _nchw(images)
        features = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(model.features(x), 1), 1)
        return features.numpy(), model(x).numpy()


def _flax_to_torch(leaf, array):
    """The inverse of the importer's conversion: HWIO -> OIHW, (in, out) -> (out, in)."""
    array = np.asarray(array)
    if leaf == "kernel":
        return array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
    return array


@pytest.mark.parametrize("last_stride, num_classes", [(2, 1000), (1, 10)])
def test_matches_torchvision(tv, last_stride, num_classes):
    reference = _torchvision(tv, last_stride=last_stride, num_classes=num_classes, **NARROW)
    model, variables = from_torch_state_dict(reference.state_dict(), arch="mobilenetv2_x1_0",
                                             num_classes=num_classes, last_stride=last_stride, **NARROW)
    features, logits = _torch_outputs(reference, IMAGES)
    out = _jit(lambda v, x: model.apply(v, x, train=False))(variables, IMAGES)
    assert out["features"].shape == (2, 1280) and out["logits"].shape == (2, num_classes)
    assert _rel_err(out["features"], features) < 1e-4
    np.testing.assert_array_equal(out["embedding"], out["features"])  # embedding_dim=None: GAP feature
    assert _rel_err(out["logits"], logits) < 1e-4
    assert count_params(variables["params"]) == sum(p.numel() for p in reference.parameters())


def test_x1_4_imports_torchvision_strictly(tv):
    reference = _torchvision(tv, width_mult=1.4)
    model, variables = from_torch_state_dict(reference.state_dict(), arch="mobilenetv2_x1_4", num_classes=1000)
    # The strict import's template is abstract_variables(create_model(...)): its count is the JAX count.
    assert count_params(variables["params"]) == sum(p.numel() for p in reference.parameters()) \
        == PARAMS["mobilenetv2_x1_4", 1000]
    shapes = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, IMAGES)
    assert shapes["features"].shape == (2, 1792) and shapes["logits"].shape == (2, 1000)
    np.testing.assert_array_equal(np.asarray(variables["params"]["features_18"]["conv"]["kernel"]),
                                  reference.state_dict()["features.18.0.weight"].numpy().transpose(2, 3, 1, 0))


@pytest.mark.parametrize("name, num_classes", [("stra_mobilenetv2_x1_0", 751), ("stra_mobilenetv2_x1_4", 751)])
def test_stra_parameter_counts(name, num_classes):
    """(The plain networks are counted against torchvision in the import tests.)"""
    variables = abstract_variables(create_model(name, num_classes=num_classes))
    assert count_params(variables["params"]) == PARAMS[name, num_classes]


def test_round_trip_both_directions(tv):
    """torchvision -> Flax (strict: every tensor used once) -> torchvision names
    and layout again: the same state_dict, which torchvision loads back."""
    reference = _torchvision(tv, seed=3)
    sd = {k: v.numpy() for k, v in reference.state_dict().items() if not k.endswith("num_batches_tracked")}
    _, variables = from_torch_state_dict(sd, arch="mobilenetv2_x1_0", num_classes=1000)
    assert count_params(variables["params"]) == sum(p.numel() for p in reference.parameters()) \
        == PARAMS["mobilenetv2_x1_0", 1000]
    back = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
        keys = tuple(str(getattr(p, "key", p)) for p in path)[1:]  # drop the collection
        name = torch_name(keys, "classifier.1")
        assert name not in back, name
        back[name] = np.array(_flax_to_torch(keys[-1], leaf))  # a writable copy for torch
    assert sorted(back) == sorted(sd)
    for name, array in sd.items():
        np.testing.assert_array_equal(back[name], array, err_msg=name)
    fresh = _torchvision(tv, seed=4)
    result = fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=False)
    assert not result.unexpected_keys and all(k.endswith("num_batches_tracked") for k in result.missing_keys)


@pytest.fixture(scope="module")
def stra_import(tv):
    """ImageNet-style torchvision weights into a narrow StRA-MobileNetV2 (strict=False)."""
    reference = _torchvision(tv, **NARROW_STRA)
    model, variables, report = from_torch_state_dict(
        reference.state_dict(), arch="stra_mobilenetv2_x1_0", num_classes=10, strict=False, return_report=True,
        **NARROW_STRA)
    return reference.state_dict(), model, variables, report


def test_torchvision_weights_into_stra(stra_import):
    sd, _, variables, report = stra_import
    stra_slots = tuple(f"features.{i}.conv.1.0." for i in STRA_BLOCKS)  # the depthwise slot
    initialised = set(report.initialised)
    assert not report.mismatched
    assert all(n.startswith(stra_slots + ("global_avg_pool.1.", "global_avg_pool.2.", "classifier."))
               for n in initialised)
    for fragment in ("features.7.conv.1.0.mask_conv.0.weight", "features.9.conv.1.0.moe.bn2.running_var",
                     "features.8.conv.1.0.value_conv.weight", "global_avg_pool.2.running_mean", "classifier.weight"):
        assert fragment in initialised, fragment
    # The depthwise convs StRA replaces and the ImageNet classifier are unused; nothing else.
    assert set(report.unexpected) == {f"features.{i}.conv.1.0.weight" for i in STRA_BLOCKS} | {
        "classifier.1.weight", "classifier.1.bias"}
    assert set(report.loaded) | initialised | set(report.unexpected) \
        == {k for k in sd if not k.endswith("num_batches_tracked")} | initialised
    # The depthwise BN after StRA and the 1x1 convs of the StRA blocks came from torchvision.
    block = variables["batch_stats"]["features_7"]
    np.testing.assert_array_equal(np.asarray(block["dw_bn"]["var"]), sd["features.7.conv.1.1.running_var"].numpy())
    np.testing.assert_array_equal(np.asarray(variables["params"]["features_9"]["project_conv"]["kernel"]),
                                  sd["features.9.conv.2.weight"].numpy().transpose(2, 3, 1, 0))
    with pytest.raises(ValueError, match=r"features\.7\.conv\.1\.0\.mask_conv\.0\.weight"):
        from_torch_state_dict(sd, arch="stra_mobilenetv2_x1_0", num_classes=10, **NARROW_STRA)


def test_stra_train_forward_sows_diversity_and_freezes(stra_import):
    _, model, variables, _ = stra_import
    out, state = _jit(lambda v, x: model.apply(v, x, train=True, frozen=("stem",),
                                               mutable=["batch_stats", "losses"]))(variables, IMAGES)
    assert out["features"].shape == (2, 1280) and out["embedding"].shape == (2, 512)
    assert out["logits"].shape == (2, 10)
    sown = state["losses"]
    assert sorted(sown) == [f"features_{i}" for i in STRA_BLOCKS]
    per_block = [sown[f"features_{i}"]["stra"]["mode"]["diversity"] for i in STRA_BLOCKS]
    assert per_block[0].shape == (2,)
    np.testing.assert_allclose(total_diversity_loss(sown), sum(per_block), rtol=1e-6)
    old, new = variables["batch_stats"], state["batch_stats"]
    # "stem" frozen: its BN keeps its statistics; the others (StRA's included) update.
    np.testing.assert_array_equal(np.asarray(new["features_0"]["bn"]["mean"]), np.asarray(old["features_0"]["bn"]["mean"]))
    for path in (("features_1", "dw_bn"), ("features_8", "stra", "local", "logit_bn1")):
        a, b = new, old
        for key in path:
            a, b = a[key], b[key]
        assert not np.allclose(np.asarray(a["mean"]), np.asarray(b["mean"])), path

    mask = frozen_param_mask(model, variables["params"], ("stem", "stage6", "last_conv"))
    assert all(jax.tree.leaves(mask["features_0"])) and all(jax.tree.leaves(mask["features_10"]))
    assert all(jax.tree.leaves(mask["features_8"]["dw_bn"])) and all(jax.tree.leaves(mask["features_8"]["expand_conv"]))
    assert not any(jax.tree.leaves(mask["features_8"]["stra"]))
    assert not any(jax.tree.leaves({k: mask[k] for k in ("features_6", "features_9", "embed_conv", "classifier")}))


def test_bad_options_fail_with_names():
    with pytest.raises(ValueError, match=r"stage_sizes.*MobileNetV2"):
        create_model("mobilenetv2_x1_0", stage_sizes=(1, 1, 1, 1))
    with pytest.raises(ValueError, match=r"features\.7 \(row 5\).*192 hidden channels.*heads=7"):
        create_model("stra_mobilenetv2_x1_0", heads=7, **NARROW)
    # x1.4's first 1/32 block: 816 // 4 = 204 logit channels do not split into 8 heads.
    with pytest.raises(ValueError, match=r"features\.14 \(row 5\).*816 hidden.*reduction=4.*heads=8"):
        create_model("stra_mobilenetv2_x1_4", reduction=4)
    for bad, match in [(dict(width_mult=0.0), "width_mult"), (dict(stage_blocks=(1,) * 6), "stage_blocks"),
                       (dict(last_stride=3), "last_stride"), (dict(stra_stages=(7,)), "stra_stages"),
                       (dict(num_classes=-1), "num_classes"), (dict(classifier="cosine"), "classifier")]:
        with pytest.raises(ValueError, match=match):
            create_model("mobilenetv2_x1_0", **bad)
