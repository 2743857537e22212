"""StRAttention against the independent NumPy reference (tests/reference_numpy.py)."""
from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

from stra_jax import StRAttention, total_diversity_loss
from tests import reference_numpy as ref
from tests.helpers import randomize_variables

# name, heads, kernel, stride, dilation, gate, mode attention, interaction, train, (H, W), impl.
CASES = [
    ("g4_k3_sigmoid_train", 4, 3, 1, 1, "sigmoid", True, True, True, (7, 5), "shift"),
    ("g8_k5_softmax_noint_eval", 8, 5, 1, 1, "softmax", True, False, False, (7, 5), "shift"),
    ("g4_k3_stride2_eval_odd", 4, 3, 2, 1, "sigmoid", True, True, False, (7, 5), "shift"),
    ("g8_k3_stride2_softmax_train", 8, 3, 2, 1, "softmax", True, True, True, (6, 5), "shift"),
    ("g4_k5_dilation2_train", 4, 5, 1, 2, "sigmoid", True, True, True, (7, 6), "shift"),
    ("g8_k3_local_only_eval", 8, 3, 1, 1, "sigmoid", False, True, False, (5, 7), "shift"),
    ("g4_k5_stride2_local_only_train", 4, 5, 2, 1, "sigmoid", False, True, True, (5, 5), "shift"),
    ("patches_g8_k5_train", 8, 5, 1, 1, "sigmoid", True, True, True, (7, 5), "patches"),
    ("patches_g4_k3_stride2_dil2_eval", 4, 3, 2, 2, "softmax", True, True, False, (7, 6), "patches"),
    ("fused_g4_k3_sigmoid_train", 4, 3, 1, 1, "sigmoid", True, True, True, (7, 5), "fused"),
    ("fused_g8_k5_stride2_softmax_train", 8, 5, 2, 1, "softmax", True, True, True, (7, 6), "fused"),
    ("fused_g4_k3_stride2_dil2_local_only_eval", 4, 3, 2, 2, "sigmoid", False, True, False, (7, 6), "fused"),
]
CHANNELS = 32
REDUCTION = 4


def _setup(heads, kernel, stride, dilation, gate, mode_on, interaction, hw, impl="shift", seed=0):
    block = StRAttention(heads=heads, kernel_size=kernel, reduction=REDUCTION, stride=stride,
                         dilation=dilation, gate=gate, mode_attention=mode_on,
                         mode_interaction=interaction, implementation=impl)
    x = jax.random.normal(jax.random.key(seed), (2, *hw, CHANNELS))
    variables = randomize_variables(block.init(jax.random.key(seed + 1), x, train=False), seed)
    return block, x, variables


class StRAReferenceTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*CASES)
    def test_matches_numpy_reference(self, heads, kernel, stride, dilation, gate, mode_on,
                                     interaction, train, hw, impl):
        block, x, variables = _setup(heads, kernel, stride, dilation, gate, mode_on, interaction, hw,
                                     impl)

        @self.variant
        def forward(v, inp):
            return block.apply(v, inp, train=train, mutable=["batch_stats", "losses"])

        y, state = forward(variables, x)
        y_ref, ld_ref, moments = ref.stra_attention(
            np.asarray(x), jax.tree.map(np.asarray, variables), heads=heads, kernel_size=kernel,
            reduction=REDUCTION, stride=stride, dilation=dilation, gate=gate,
            mode_attention_on=mode_on, interaction=interaction, train=train)

        expected_hw = (-(-hw[0] // stride), -(-hw[1] // stride))
        chex.assert_shape(y, (2, *expected_hw, CHANNELS))
        np.testing.assert_allclose(np.asarray(y), y_ref, rtol=1e-5, atol=1e-5)

        if mode_on:
            ld = state["losses"]["mode"]["diversity"]
            chex.assert_shape(ld, (2,))
            np.testing.assert_allclose(np.asarray(ld), ld_ref, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(np.asarray(total_diversity_loss(state["losses"])), ld_ref,
                                       rtol=1e-5, atol=1e-5)
            self.assertTrue(np.all((ld_ref >= 0) & (ld_ref <= heads - 1)))
        else:
            self.assertEqual(state.get("losses", {}), {})
            self.assertEqual(float(total_diversity_loss(state.get("losses", {}))), 0.0)

        old, new = variables["batch_stats"], state["batch_stats"]
        for part, bns in moments.items():
            for name, (mean, var) in bns.items():
                # Flax running update: 0.9 * old + 0.1 * batch moment (biased variance).
                np.testing.assert_allclose(
                    np.asarray(new[part][name]["mean"]),
                    0.9 * np.asarray(old[part][name]["mean"]) + 0.1 * mean, rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(
                    np.asarray(new[part][name]["var"]),
                    0.9 * np.asarray(old[part][name]["var"]) + 0.1 * var, rtol=1e-5, atol=1e-5)
        if not train:
            chex.assert_trees_all_equal(old, new)

    def test_parameter_layout(self):
        """The channel layout the weight importer relies on (reference page)."""
        block, x, variables = _setup(8, 3, 1, 1, "sigmoid", True, True, (5, 5))
        shapes = jax.tree.map(jnp.shape, variables["params"])
        c, g, k = CHANNELS, 8, 3
        self.assertEqual(shapes["local"]["logit_conv1"]["kernel"], (1, 1, c // g, c // REDUCTION))
        self.assertEqual(shapes["local"]["logit_conv2"]["kernel"],
                         (1, 1, c // REDUCTION // g, g * (1 + k * k)))
        self.assertEqual(shapes["local"]["value_conv"], {"kernel": (1, 1, c // g, c)})
        self.assertEqual(shapes["mode"]["mask_conv1"]["kernel"], (1, 1, c // g, 8 * g))
        self.assertEqual(shapes["mode"]["mask_conv2"]["kernel"], (1, 1, 8, g))
        self.assertEqual(shapes["mode"]["gate_bn1"]["scale"], (g,))
        self.assertEqual(shapes["mode"]["gate_bn2"]["scale"], (g,))
        self.assertNotIn("losses", variables)
