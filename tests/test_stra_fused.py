"""The fast formulations (``implementation="fused"``: a hand-written backward pass
for Eq. 4; ``grouped_conv="split"`` and ``"einsum"``) against independent ones.

Forward values are checked against the NumPy reference in test_stra_reference.py.
Here the *gradients*: finite differences in float64 (check_grads), and the
autodiff gradients of the unfold formulation ("patches", a different program
for the same maths) in float32 under jit, for stride 1 and 2, dilation 2 and
K 5, and under an 8-device sharded jit. check_grads runs op by op (no jit), so
both execution modes are covered.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from stra_jax import LocalAttention, StRAttention, total_diversity_loss
from stra_jax.layers.conv import conv1x1, grouped_matmul_split
from stra_jax.layers.fused_local import attend_shifted
from tests.helpers import randomize_variables, run_multidevice

GEOMETRIES = [(3, 1, 1, (5, 4)), (5, 1, 2, (6, 5)), (3, 2, 1, (7, 5)), (5, 2, 2, (6, 7))]  # K, stride, dilation, HW


@pytest.mark.parametrize("kernel,stride,dilation,hw", GEOMETRIES)
def test_fused_eq4_gradients_match_finite_differences(kernel, stride, dilation, hw):
    with jax.enable_x64(True):
        b, g, n = 2, 2, 3
        ho, wo = -(-hw[0] // stride), -(-hw[1] // stride)
        keys = jax.random.split(jax.random.key(0), 3)
        nu = jax.random.normal(keys[0], (b, *hw, g), jnp.float64)
        omega = jax.random.normal(keys[1], (b, ho, wo, g, kernel * kernel), jnp.float64)
        values = jax.random.normal(keys[2], (b, *hw, g, n), jnp.float64)
        fn = lambda a, o, v: jnp.sum(jnp.sin(attend_shifted(a, o, v, kernel, stride, dilation)))  # noqa: E731
        check_grads(fn, (nu, omega, values), order=1, modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)


def _grads(block, variables, x, use_jit):
    stats = variables["batch_stats"]

    def loss(params, inp):
        y, state = block.apply({"params": params, "batch_stats": stats}, inp, train=True,
                               mutable=["batch_stats", "losses"])
        return jnp.sum(jnp.sin(y)) + jnp.sum(total_diversity_loss(state.get("losses", {})))

    fn = jax.grad(loss, argnums=(0, 1))
    return (jax.jit(fn) if use_jit else fn)(variables["params"], x)


@pytest.mark.parametrize("kernel,stride,dilation,hw,use_jit", [
    (3, 1, 1, (5, 4), True), (3, 2, 1, (7, 5), True), (5, 2, 2, (6, 7), True)])
def test_fused_gradients_equal_the_unfold_formulation(kernel, stride, dilation, hw, use_jit):
    kw = dict(heads=4, kernel_size=kernel, stride=stride, dilation=dilation)
    x = jax.random.normal(jax.random.key(0), (2, *hw, 16))
    fused = StRAttention(implementation="fused", grouped_conv="split", **kw)
    patches = StRAttention(implementation="patches", grouped_conv="conv", **kw)
    variables = randomize_variables(fused.init(jax.random.key(1), x, train=False))
    got = _grads(fused, variables, x, use_jit)
    want = _grads(patches, variables, x, use_jit)
    assert_grads_close(got, want)


def assert_grads_close(got, want, rtol=2e-4, atol_fraction=1e-5):
    """Every leaf to ``rtol``, absolute error at most ``atol_fraction`` of the largest
    gradient: a conv bias feeding a train-mode BN has a zero true gradient, so only
    float noise, whose size follows the sums it comes from, not the leaf."""
    scale = max(float(np.max(np.abs(b))) for b in jax.tree.leaves(want))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol_fraction * scale)


def test_fused_bfloat16_gradients_equal_autodiff_in_bfloat16():
    """bf16 compute, float32 parameters: the hand-written backward pass against
    autodiff of the same forward ("shift") in the same precision."""
    x = jax.random.normal(jax.random.key(0), (2, 6, 5, 16))
    fused = LocalAttention(heads=4, implementation="fused", dtype=jnp.bfloat16)
    shift = LocalAttention(heads=4, implementation="shift", dtype=jnp.bfloat16)
    variables = randomize_variables(fused.init(jax.random.key(1), x, train=False))
    got, want = _grads(fused, variables, x, True), _grads(shift, variables, x, True)
    for a in jax.tree.leaves(got):
        assert a.dtype == jnp.float32  # parameters and input stay float32
    assert_grads_close(got, want, rtol=0.05, atol_fraction=0.02)


@pytest.mark.parametrize("implementation", ["split", "einsum"])
@pytest.mark.parametrize("groups,features,bias", [(8, 16, True), (8, 80, True), (4, 32, False), (1, 24, True)])
def test_grouped_conv_formulations_equal_nn_conv(implementation, groups, features, bias):
    x = jax.random.normal(jax.random.key(0), (2, 5, 3, 32))
    conv = conv1x1(features, groups=groups, use_bias=bias, implementation="conv")
    other = conv1x1(features, groups=groups, use_bias=bias, implementation=implementation)
    v_conv, v_other = conv.init(jax.random.key(3), x), other.init(jax.random.key(3), x)
    # Same parameter tree and the same initial values: checkpoints and seeds carry over.
    jax.tree.map(np.testing.assert_array_equal, v_conv, v_other)
    variables = randomize_variables(v_conv)
    np.testing.assert_allclose(other.apply(variables, x), conv.apply(variables, x), rtol=1e-5, atol=1e-5)
    g_conv = jax.grad(lambda v, i: jnp.sum(jnp.sin(conv.apply(v, i))), argnums=(0, 1))(variables, x)
    g_other = jax.jit(jax.grad(lambda v, i: jnp.sum(jnp.sin(other.apply(v, i))), argnums=(0, 1)))(variables, x)
    for a, b in zip(jax.tree.leaves(g_other), jax.tree.leaves(g_conv)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_split_grouped_matmul_gradients_match_finite_differences():
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(0), (2, 3, 4, 3, 5), jnp.float64)  # (B, H, W, G, i)
        kernel = jax.random.normal(jax.random.key(1), (5, 3, 2), jnp.float64)  # (i, G, o)
        check_grads(lambda a, k: jnp.sum(jnp.sin(grouped_matmul_split(a, k))), (x, kernel), order=1,
                    modes=["rev"], eps=1e-6, atol=1e-6, rtol=1e-6)


def test_split_grouped_conv_in_bfloat16_equals_the_einsum():
    """bf16 compute, float32 parameters: outputs and gradients of the two
    formulations in the same precision (the split one accumulates the kernel
    gradient in float32, so it is, if anything, the closer one)."""
    x = jax.random.normal(jax.random.key(0), (4, 6, 5, 64))
    split = conv1x1(40, groups=8, use_bias=True, implementation="split", dtype=jnp.bfloat16)
    einsum = conv1x1(40, groups=8, use_bias=True, implementation="einsum", dtype=jnp.bfloat16)
    variables = randomize_variables(split.init(jax.random.key(3), x))
    y_split, y_einsum = split.apply(variables, x), einsum.apply(variables, x)
    assert y_split.dtype == y_einsum.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.float32(y_split), np.float32(y_einsum), rtol=2e-2, atol=2e-2)
    grads = [jax.grad(lambda v, i, m=m: jnp.sum(jnp.sin(m.apply(v, i).astype(jnp.float32))),
                      argnums=(0, 1))(variables, x) for m in (split, einsum)]
    for a, b in zip(*map(jax.tree.leaves, grads)):
        assert a.dtype == b.dtype == jnp.float32
        scale = float(np.max(np.abs(b)))
        np.testing.assert_allclose(a, b, rtol=3e-2, atol=2e-2 * scale)


def test_auto_resolves_per_backend_and_bad_names_fail():
    from stra_jax.layers.conv import resolve_grouped
    from stra_jax.layers.local_attention import resolve_attention

    assert resolve_attention("auto") == "fused" and resolve_attention("shift") == "shift"
    assert resolve_grouped("auto") == "split" and resolve_grouped("conv") == "conv"
    with pytest.raises(ValueError, match=r"grouped_conv='dense': expected one of \('auto', 'split', 'einsum', 'conv'\)"):
        StRAttention(grouped_conv="dense")
    with pytest.raises(ValueError, match=r"implementation='fast': expected one of"):
        LocalAttention(implementation="fast")


SHARDED = r"""
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from stra_jax import StRAttention, total_diversity_loss
from tests.helpers import randomize_variables
from tests.test_stra_fused import assert_grads_close

assert jax.device_count() == 8
for impl, stride in (("fused", 1), ("fused", 2)):
    block = StRAttention(heads=4, kernel_size=3, stride=stride, implementation=impl)
    x = jax.random.normal(jax.random.key(0), (16, 6, 5, 32))
    variables = randomize_variables(block.init(jax.random.key(1), x, train=False))

    @jax.jit
    def grads(v, inp):
        def loss(p, i):
            y, s = block.apply({"params": p, "batch_stats": v["batch_stats"]}, i, train=True,
                               mutable=["batch_stats", "losses"])
            return jnp.sum(jnp.sin(y)) + jnp.sum(total_diversity_loss(s["losses"]))
        return jax.grad(loss, argnums=(0, 1))(v["params"], inp)

    single = grads(jax.device_put(variables, jax.devices()[0]), jax.device_put(x, jax.devices()[0]))
    mesh = jax.make_mesh((8,), ("data",))
    with jax.set_mesh(mesh):
        out = grads(jax.device_put(variables, NamedSharding(mesh, P())),
                    jax.device_put(x, NamedSharding(mesh, P("data"))))
    assert out[1].sharding.spec[0] == "data", out[1].sharding
    assert_grads_close(out, single)
print("OK")
"""


def test_fused_gradients_under_an_8_device_sharded_jit():
    assert "OK" in run_multidevice(SHARDED, devices=8)
