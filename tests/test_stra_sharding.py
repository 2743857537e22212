"""StRAttention under jit on an 8-device ('data',) mesh (simulated CPU devices)."""
from __future__ import annotations

from tests.helpers import run_multidevice

SCRIPT = r"""
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from stra_jax import StRAttention, total_diversity_loss
from tests.helpers import randomize_variables

assert jax.device_count() == 8, jax.devices()
block = StRAttention(heads=4, kernel_size=3)
x = jax.random.normal(jax.random.key(0), (16, 6, 5, 32))
variables = randomize_variables(block.init(jax.random.key(1), x, train=False))

@jax.jit
def step(v, inp):
    y, state = block.apply(v, inp, train=True, mutable=["batch_stats", "losses"])
    return y, state["batch_stats"], total_diversity_loss(state["losses"])

single = jax.devices()[0]
ref = step(jax.device_put(variables, single), jax.device_put(x, single))

mesh = jax.make_mesh((8,), ("data",))
with jax.set_mesh(mesh):
    xs = jax.device_put(x, NamedSharding(mesh, P("data")))
    vs = jax.device_put(variables, NamedSharding(mesh, P()))
    out = step(vs, xs)
    assert out[0].sharding.spec[0] == "data", out[0].sharding
    assert len(out[0].addressable_shards) == 8

for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(out)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)

# Global, not per-device, statistics: per-shard BN would give a different mean.
shard_mean = np.asarray(block.apply(variables, x[:2], train=True, mutable=["batch_stats"])[1]
                        ["batch_stats"]["local"]["logit_bn1"]["mean"])
assert not np.allclose(shard_mean, np.asarray(out[1]["local"]["logit_bn1"]["mean"]), atol=1e-4)
print("OK")
"""


def test_sharded_batch_matches_single_device_with_global_batchnorm():
    assert "OK" in run_multidevice(SCRIPT, devices=8)
