"""Face networks (FaceResNet: ``resnet50_face``, ``stra_resnet50_face``).

* a narrow plain face network against an independent PyTorch statement of it
  (written here from the layout in the paper's supplement / ArcFace's ResNets);
* exact parameter counts of the full-size networks against a count computed
  here from the layer shapes (traced with ``abstract_variables``: no real init);
* shapes (7x7 last stage at 112x112), where StRA sits, L_d, the margin
  classifier, the dropout rng, and bad options.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn

from stra_jax.models import abstract_variables, create_model, frozen_param_mask
from tests.helpers import randomize_variables

NARROW = dict(width=8, stage_sizes=(1, 1, 1, 1))
CASIA_IDS = 10572


# --- The PyTorch statement (NCHW) --------------------------------------------------------------------

class TorchBottleneck(tnn.Module):
    """torchvision v1.5 bottleneck: stride on the 3x3 conv, 1x1 conv + BN shortcut in block 0."""

    def __init__(self, cin: int, planes: int, stride: int, downsample: bool):
        super().__init__()
        self.conv1 = tnn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(planes)
        self.conv2 = tnn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = tnn.BatchNorm2d(planes)
        self.conv3 = tnn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(planes * 4)
        self.downsample = (tnn.Sequential(tnn.Conv2d(cin, planes * 4, 1, stride=stride, bias=False),
                                          tnn.BatchNorm2d(planes * 4)) if downsample else None)

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + (x if self.downsample is None else self.downsample(x)))


class TorchFaceResNet(tnn.Module):
    """stem conv3x3/1 -> BN -> ReLU (no max-pool); 4 stages, stride 2 in the first block of
    every stage; head BN2d -> Dropout -> flatten -> Linear -> BN1d (insightface's "E" output)."""

    def __init__(self, width: int, stage_sizes, map_hw: tuple[int, int], embedding_dim: int):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = tnn.BatchNorm2d(width)
        cin = width
        for stage, blocks in enumerate(stage_sizes):
            planes = width * 2**stage
            layers = []
            for block in range(blocks):
                layers.append(TorchBottleneck(cin, planes, 2 if block == 0 else 1, block == 0))
                cin = planes * 4
            setattr(self, f"layer{stage + 1}", tnn.Sequential(*layers))
        self.bn_map = tnn.BatchNorm2d(cin)
        self.dropout = tnn.Dropout(0.4)
        self.fc = tnn.Linear(cin * map_hw[0] * map_hw[1], embedding_dim)
        self.bn_embed = tnn.BatchNorm1d(embedding_dim)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        # NCHW flatten: feature index c*h*w + i*w + j (the JAX model flattens NHWC:
        # (i*w + j)*C + c); the weight copy below permutes the FC's columns to match.
        x = torch.flatten(self.dropout(self.bn_map(x)), 1)
        return self.bn_embed(self.fc(x))


# Torch module name -> JAX module name (block modules: layerS.B.<name> -> layerS_B/<name>).
_TOP = {"conv1": "conv1", "bn1": "bn1", "bn_map": "face_bn_map", "fc": "face_fc", "bn_embed": "face_bn_embed"}
_BLOCK = {"conv1": "conv1", "bn1": "bn1", "conv2": "conv2", "bn2": "bn2", "conv3": "conv3", "bn3": "bn3",
          "downsample.0": "downsample_conv", "downsample.1": "downsample_bn"}
# Torch tensor name -> (JAX collection, JAX leaf).
_LEAF = {"weight": ("params", None), "bias": ("params", "bias"), "running_mean": ("batch_stats", "mean"),
         "running_var": ("batch_stats", "var")}


def _jax_location(torch_key: str, is_bn: bool) -> tuple[str, str, str]:
    module, leaf = torch_key.rsplit(".", 1)
    if module.startswith("layer"):
        stage, block, rest = module.split(".", 2)
        module = f"{stage}_{block}/{_BLOCK[rest]}"
    else:
        module = _TOP[module]
    collection, jax_leaf = _LEAF[leaf]
    return collection, module, jax_leaf or ("scale" if is_bn else "kernel")


def copy_jax_to_torch(variables, net: TorchFaceResNet, map_hw: tuple[int, int]) -> None:
    """Every torch tensor from its JAX counterpart; every JAX leaf must be used once."""
    used = set()
    modules = dict(net.named_modules())
    state = {}
    for key, tensor in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        is_bn = isinstance(modules[key.rsplit(".", 1)[0]], tnn.modules.batchnorm._BatchNorm)
        collection, module, leaf = _jax_location(key, is_bn)
        node = variables[collection]
        for part in module.split("/"):
            node = node[part]
        value = np.asarray(node[leaf])
        used.add((collection, module, leaf))
        if value.ndim == 4:  # conv (kh, kw, in, out) -> (out, in, kh, kw)
            value = value.transpose(3, 2, 0, 1)
        elif key == "fc.weight":  # rows (i, j, c) in NHWC order -> torch columns (c, i, j)
            h, w = map_hw
            value = value.reshape(h, w, -1, value.shape[-1]).transpose(3, 2, 0, 1).reshape(value.shape[-1], -1)
        assert tuple(value.shape) == tuple(tensor.shape), key
        state[key] = torch.tensor(value)  # a copy: JAX's buffers are read-only
    net.load_state_dict(state, strict=False)
    n_leaves = sum(len(jax.tree.leaves(variables[c])) for c in ("params", "batch_stats"))
    assert len(used) == n_leaves  # nothing in the JAX model went uncompared


def _random_variables(model, seed: int):
    """Random variables with the model's shapes, without compiling its init: He-normal
    (fan-in) kernels keep activations O(1); randomize_variables then perturbs BN
    scales, biases and statistics."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = str(path[-1].key)
        if name == "kernel":
            return jnp.asarray(rng.standard_normal(leaf.shape) * np.sqrt(2.0 / np.prod(leaf.shape[:-1])), leaf.dtype)
        return jnp.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, leaf.dtype)

    return randomize_variables(jax.tree_util.tree_map_with_path(fill, abstract_variables(model)), seed=seed)


def test_narrow_face_network_matches_pytorch():
    image_hw, map_hw, dim = (48, 32), (3, 2), 16  # not square: a flatten in the wrong order would show
    model = create_model("resnet50_face", num_classes=0, input_size=image_hw, embedding_dim=dim, **NARROW)
    variables = _random_variables(model, seed=1)
    images = np.random.default_rng(2).standard_normal((3, *image_hw, 3)).astype(np.float32)
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, images)

    net = TorchFaceResNet(8, NARROW["stage_sizes"], map_hw, dim)
    copy_jax_to_torch(variables, net, map_hw)
    with torch.no_grad():
        expected = net.eval()(torch.from_numpy(images.transpose(0, 3, 1, 2))).numpy()
    scale = np.abs(expected).max()
    np.testing.assert_allclose(out["embedding"], expected, rtol=1e-4, atol=1e-4 * scale)
    assert out["embedding"].shape == (3, dim) and out["features"].shape == (3, 8 * 8 * 4)


# --- Parameter counts from the layer shapes ----------------------------------------------------------

def _conv(cin: int, cout: int, k: int = 1) -> int:
    return k * k * cin * cout


def _bn(c: int) -> int:  # scale + bias (running statistics are batch_stats)
    return 2 * c


def _stra(c: int, g: int = 8, k: int = 3, r: int = 4) -> int:
    """StRAttention on C channels: grouped 1x1 convs (kernel (C/G) x out, bias) and BNs."""
    logits = (c // g) * (c // r) + c // r + _bn(c // r) + (c // r // g) * g * (1 + k * k) + g * (1 + k * k)
    local = logits + _bn(g * (1 + k * k)) + (c // g) * c  # + value conv, no bias
    mode = (c // g) * 8 * g + 8 * g + _bn(8 * g) + 8 * g + g + _bn(g) + _bn(g) + _bn(g)  # mask convs, gate BNs
    return local + mode


def expected_params(stra_stages: tuple[int, ...], classes: int) -> int:
    total = _conv(3, 64, 3) + _bn(64)
    cin = 64
    for stage, blocks in enumerate((3, 4, 6, 3)):
        p = 64 * 2**stage
        for block in range(blocks):
            spatial = _stra(p) if stage in stra_stages else _conv(p, p, 3)
            total += _conv(cin, p) + _bn(p) + spatial + _bn(p) + _conv(p, 4 * p) + _bn(4 * p)
            if block == 0:
                total += _conv(cin, 4 * p) + _bn(4 * p)
            cin = 4 * p
    head = _bn(2048) + 7 * 7 * 2048 * 512 + 512 + _bn(512)  # BN on the 7x7 map, FC on its flattening, BN
    return total + head + 512 * classes


@functools.lru_cache(maxsize=None)
def _full_params(name: str, classes: int):
    return abstract_variables(create_model(name, num_classes=classes))["params"]


def _count(params) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


@pytest.mark.parametrize("name,stra_stages", [("resnet50_face", ()), ("stra_resnet50_face", (3,))])
@pytest.mark.parametrize("classes", [0, CASIA_IDS])
def test_full_size_parameter_counts(name, stra_stages, classes):
    params = _full_params(name, classes)
    assert _count(params) == expected_params(stra_stages, classes)
    assert params["face_fc"]["kernel"].shape == (7 * 7 * 2048, 512)
    assert ("classifier" in params) == bool(classes)


def test_documented_counts():
    # The numbers the face_resnet docstring states.
    assert expected_params((), 0) == 74_886_208 and expected_params((3,), 0) == 67_950_136
    assert 7 * 7 * 2048 * 512 + 512 == 51_380_736


def test_stra_only_in_the_last_stage():
    def stra_blocks(params):
        paths = jax.tree_util.tree_flatten_with_path(params)[0]
        return {str(path[0].key) for path, _ in paths if any(getattr(k, "key", None) == "stra" for k in path)}

    stra = _full_params("stra_resnet50_face", 0)
    assert stra_blocks(stra) == {"layer4_0", "layer4_1", "layer4_2"}
    assert all("conv2" not in stra[f"layer4_{i}"] for i in range(3)) and "conv2" in stra["layer3_5"]
    assert stra_blocks(_full_params("resnet50_face", 0)) == set()


# --- Shapes, L_d, classifier, rng ---------------------------------------------------------------------

IMAGES_112 = jax.ShapeDtypeStruct((2, 112, 112, 3), jnp.float32)


def _narrow_shapes(name: str = "stra_resnet50_face", **kw):
    """(model, abstract variables): traced, not compiled."""
    model = create_model(name, **{**NARROW, **kw})
    return model, abstract_variables(model)


def test_spatial_sizes_and_outputs_at_112():
    model, variables = _narrow_shapes(num_classes=7)
    out, state = jax.eval_shape(lambda v, x: model.apply(v, x, train=False, capture_intermediates=True,
                                                         mutable=["intermediates"]), variables, IMAGES_112)
    inter = state["intermediates"]
    sizes = {name: inter[name]["__call__"][0].shape[1:] for name in ("conv1", "layer1_0", "layer2_0", "layer3_0",
                                                                     "layer4_0")}
    assert sizes == {"conv1": (112, 112, 8), "layer1_0": (56, 56, 32), "layer2_0": (28, 28, 64),
                     "layer3_0": (14, 14, 128), "layer4_0": (7, 7, 256)}
    assert variables["params"]["face_fc"]["kernel"].shape == (7 * 7 * 256, 512)
    assert {k: v.shape for k, v in out.items()} == {"features": (2, 256), "embedding": (2, 512),
                                                    "class_weights": (512, 7)}
    assert all(v.dtype == jnp.float32 for v in out.values())


def test_parameters_are_sized_by_input_size():
    model, variables = _narrow_shapes(num_classes=3)  # initialised by models.io at input_size
    native = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), IMAGES_112)
    assert jax.tree.map(lambda a: a.shape, variables) == jax.tree.map(lambda a: a.shape, native)
    with pytest.raises(ValueError, match=r"built for 112x112 inputs .* got 64x64"):
        jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False),
                       jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    model2, variables2 = _narrow_shapes(stem_stride=2)  # 112 / 32 = 3.5: ceil -> 4x4 last stage
    assert variables2["params"]["face_fc"]["kernel"].shape == (4 * 4 * 256, 512)
    out = jax.eval_shape(lambda v, x: model2.apply(v, x, train=False), variables2, IMAGES_112)
    assert out["embedding"].shape == (2, 512)


def test_diversity_sown_in_train_mode_and_dropout_needs_an_rng():
    model, variables = _narrow_shapes()
    _, state = jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats", "losses"],
                                                       rngs={"dropout": jax.random.key(0)}), variables, IMAGES_112)
    assert sorted(state["losses"]) == ["layer4_0"]
    assert state["losses"]["layer4_0"]["stra"]["mode"]["diversity"].shape == (2,)
    with pytest.raises(Exception, match='needs PRNG for "dropout"'):
        jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats", "losses"]),
                       variables, IMAGES_112)
    plain, plain_vars = _narrow_shapes("resnet50_face")
    _, state = jax.eval_shape(lambda v, x: plain.apply(v, x, train=True, mutable=["batch_stats", "losses"],
                                                       rngs={"dropout": jax.random.key(0)}), plain_vars, IMAGES_112)
    assert "losses" not in state


# --- Bad options and input -----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,fragment", [
    ({"last_stride": 1}, "unknown option(s) ['last_stride'] for the FaceResNet family; valid options: ["),
    ({"stem_stride": 3}, "stem_stride=3: expected 1"),
    ({"stra_stages": (4,)}, "stra_stages=(4,)"),
    ({"head_dropout": 1.0}, "head_dropout=1.0"),
    ({"classifier": "cos"}, "classifier='cos'"),
    ({"input_size": (8, 8)}, "input size 8x8: the last stage would be smaller than 1x1"),
    ({"stra_stages": (3,), "heads": 0}, "heads=0"),
])
def test_bad_options(kwargs, fragment):
    with pytest.raises(ValueError) as info:
        create_model("resnet50_face", **kwargs)
    assert fragment in str(info.value)
    if "unknown option" in fragment:
        assert "stem_stride" in str(info.value) and "input_size" in str(info.value)


def test_bad_input_and_frozen_groups():
    model, variables = _narrow_shapes("resnet50_face")
    with pytest.raises(ValueError, match=r"frozen=\('stem',\): the FaceResNet family has no pretrained groups"):
        jax.eval_shape(lambda v: model.apply(v, IMAGES_112, train=True, frozen=("stem",)), variables)
    with pytest.raises(ValueError, match="the FaceResNet family can freeze only nothing"):
        frozen_param_mask(model, variables["params"], ("stem",))
    with pytest.raises(ValueError, match=r"built for 112x112 inputs .* got 128x128"):
        jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 128, 128, 3)), train=False), variables)
    with pytest.raises(ValueError, match=r"images shape \(1, 112, 112, 1\)"):
        jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 112, 112, 1)), train=False), variables)
