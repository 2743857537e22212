"""StRAttention properties: gradients, bf16, locality, bad input."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from stra_jax import LocalAttention, ModeAttention, StRAttention, total_diversity_loss
from tests.helpers import randomize_variables


def test_gradients_match_finite_differences():
    """Reverse-mode gradients w.r.t. input and parameters, float64, train-mode BN."""
    with jax.enable_x64(True):
        block = StRAttention(heads=2, kernel_size=3, reduction=2, dtype=jnp.float64,
                             param_dtype=jnp.float64)
        x = jax.random.normal(jax.random.key(0), (2, 4, 3, 8), jnp.float64)
        variables = randomize_variables(block.init(jax.random.key(1), x, train=False))
        stats = variables["batch_stats"]

        def loss(params, inp):
            y, state = block.apply({"params": params, "batch_stats": stats}, inp, train=True,
                                   mutable=["batch_stats", "losses"])
            return jnp.sum(jnp.sin(y)) + jnp.sum(total_diversity_loss(state["losses"]))

        check_grads(loss, (variables["params"], x), order=1, modes=["rev"], eps=1e-6,
                    atol=1e-5, rtol=1e-5)


def test_bfloat16_compute_float32_parameters():
    block32 = StRAttention(heads=4, kernel_size=3)
    block16 = StRAttention(heads=4, kernel_size=3, dtype=jnp.bfloat16)
    x = jax.random.normal(jax.random.key(0), (4, 8, 6, 64))
    variables = randomize_variables(block32.init(jax.random.key(1), x, train=False))
    init16 = block16.init(jax.random.key(1), x, train=False)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(init16))

    y32, s32 = block32.apply(variables, x, train=True, mutable=["batch_stats", "losses"])
    y16, s16 = block16.apply(variables, x, train=True, mutable=["batch_stats", "losses"])
    assert y16.dtype == jnp.bfloat16
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(s16["batch_stats"]))
    ld16 = s16["losses"]["mode"]["diversity"]
    assert ld16.dtype == jnp.float32
    # Stated tolerance: bf16 has an 8-bit mantissa (relative step 2^-8 ~ 0.4%);
    # through ~10 chained ops the error stays within 5% of the output scale.
    scale = float(jnp.max(jnp.abs(y32)))
    err = float(jnp.max(jnp.abs(y16.astype(jnp.float32) - y32)))
    assert err <= 0.05 * scale, (err, scale)
    np.testing.assert_allclose(ld16, s32["losses"]["mode"]["diversity"], rtol=0.02, atol=0.02)


def _changed_nodes(block, perturb_at=(4, 4)):
    x = jax.random.normal(jax.random.key(0), (1, 9, 9, 16))
    variables = randomize_variables(block.init(jax.random.key(1), x, train=False))
    y0 = block.apply(variables, x, train=False)  # eval BN: no batch coupling
    x1 = x.at[0, perturb_at[0], perturb_at[1], :].add(1.0)
    y1 = block.apply(variables, x1, train=False)
    return np.asarray(jnp.max(jnp.abs(y1 - y0), axis=-1)[0]) > 0


@pytest.mark.parametrize("kernel,dilation,impl", [(3, 1, "shift"), (5, 1, "shift"), (3, 2, "shift"),
                                                 (3, 2, "patches")])
def test_local_attention_is_local(kernel, dilation, impl):
    changed = _changed_nodes(StRAttention(heads=4, kernel_size=kernel, dilation=dilation,
                                          mode_attention=False, implementation=impl))
    expected = np.zeros((9, 9), bool)
    offsets = [(k - (kernel - 1) // 2) * dilation for k in range(kernel)]
    for dy in offsets:
        for dx in offsets:
            expected[4 + dy, 4 + dx] = True
    np.testing.assert_array_equal(changed, expected)


def test_mode_attention_reaches_every_node():
    changed = _changed_nodes(StRAttention(heads=4, kernel_size=3, mode_attention=True))
    assert changed.all()


def test_diversity_loss_bounds_and_no_losses_at_init():
    block = StRAttention(heads=8)
    x = jax.random.normal(jax.random.key(0), (3, 6, 4, 64))
    variables = block.init(jax.random.key(1), x, train=False)
    assert set(variables) == {"params", "batch_stats"}
    _, state = block.apply(variables, x, train=True, mutable=["batch_stats", "losses"])
    ld = state["losses"]["mode"]["diversity"]
    assert ld.shape == (3,)
    assert np.all((ld >= 0) & (ld <= 7))


BAD = [
    (dict(heads=3), (1, 4, 4, 32), "heads=3"),
    (dict(heads=0), (1, 4, 4, 32), "heads=0"),
    (dict(kernel_size=4), (1, 4, 4, 32), "kernel_size=4"),
    (dict(kernel_size=0), (1, 4, 4, 32), "kernel_size=0"),
    (dict(kernel_size=-3), (1, 4, 4, 32), "kernel_size=-3"),
    (dict(stride=3), (1, 4, 4, 32), "stride=3"),
    (dict(dilation=0), (1, 4, 4, 32), "dilation=0"),
    (dict(gate="relu"), (1, 4, 4, 32), "gate='relu'"),
    (dict(implementation="unfold"), (1, 4, 4, 32), "implementation='unfold'"),
    (dict(reduction=0), (1, 4, 4, 32), "reduction=0"),
    (dict(heads=8, reduction=8), (1, 4, 4, 32), "reduction=8"),
    (dict(), (4, 4, 32), "rank-4"),
    (dict(), (1, 0, 4, 32), "0x4"),
    (dict(stride=2), (1, 4, 0, 32), "4x0"),
]


@pytest.mark.parametrize("kwargs,shape,fragment", BAD)
def test_bad_input_raises_value_error(kwargs, shape, fragment):
    with pytest.raises(ValueError, match=None) as info:
        block = StRAttention(**{"heads": 4, **kwargs})
        block.init(jax.random.key(0), jnp.zeros(shape), train=False)
    assert fragment in str(info.value)


def test_submodules_validate_their_own_arguments():
    with pytest.raises(ValueError, match="kernel_size=2"):
        LocalAttention(kernel_size=2)
    with pytest.raises(ValueError, match="gate='max'"):
        ModeAttention(gate="max")
    with pytest.raises(ValueError, match="channels=30 is not divisible by heads=4"):
        ModeAttention(heads=4).init(jax.random.key(0), jnp.zeros((1, 3, 3, 30)), train=False)
