"""The jitted train step (state donated); the loss comes from the task."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from stra_jax.sharding import batch_sharding, replicated
from stra_jax.training.state import TrainState

LossFn = Callable[[dict[str, jax.Array], dict[str, jax.Array], Mapping[str, Any]],
                  tuple[jax.Array, dict[str, jax.Array]]]


def check_micro_batches(global_batch: int, accum_steps: int, group_size: int = 1) -> None:
    """Raise ValueError unless ``global_batch`` splits into ``accum_steps``
    micro-batches of whole sampler groups (``group_size`` consecutive examples,
    ``config.input.sampler``): (global_batch / group_size) % accum_steps == 0."""
    if global_batch % group_size:
        raise ValueError(f"train.batch_size={global_batch} is not a whole number of groups of {group_size} "
                         "examples (the group size of config.input.sampler)")
    if (global_batch // group_size) % accum_steps:
        raise ValueError(f"train.batch_size={global_batch} is not train.accum_steps={accum_steps} micro-batches "
                         f"of whole groups of {group_size} examples (the group size of config.input.sampler): "
                         f"the batch must hold a multiple of {accum_steps} groups")


def micro_batches(x: jax.Array, accum_steps: int, group_size: int = 1) -> jax.Array:
    """(B, ...) -> (accum_steps, B / accum_steps, ...): micro-batch j holds the
    groups j, j + k, j + 2k, ... (k = ``accum_steps``) of ``group_size``
    consecutive examples, in order, so each keeps whole groups and stays spread
    over the batch (and the devices). ``group_size`` 1: examples j, j + k, ...."""
    groups = x.reshape(x.shape[0] // (accum_steps * group_size), accum_steps, group_size, *x.shape[1:])
    return jnp.swapaxes(groups, 0, 1).reshape(accum_steps, x.shape[0] // accum_steps, *x.shape[1:])


def make_train_step(
    model: Any,
    tx: optax.GradientTransformation,
    schedule: Callable[[jax.Array], jax.Array],
    mesh: Mesh,
    loss_fn: LossFn,
    *,
    frozen: Sequence[str] = (),
    accum_steps: int = 1,
    group_size: int = 1,
    seed: int = 0,
    state_sharding: Any = None,
) -> Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]:
    """One optimiser step on a global batch {"images" (B, H, W, 3), ...} sharded
    over the mesh's 'data' axis; the state is replicated and donated.

    ``loss_fn(outputs, batch, collections) -> (loss, metrics)`` is the task's
    (``Task.loss``): ``outputs`` the model's dict, ``collections`` the updated
    mutable collections (``losses`` holds sown regularisers such as L_d).
    Models that use dropout get a ``"dropout"`` rng folded from (seed, step).

    ``frozen``: model groups whose BatchNorms stay in inference mode (the
    optimiser freezes their parameters; see ``optim.make_optimizer``). The loop
    builds one step with and one without, and switches when freezing ends.

    ``state_sharding``: a pytree of shardings like the state (default: all
    replicated); a task may split some leaves (``Task.sharding_rules``).

    ``accum_steps`` > 1: gradient accumulation for small devices. The global
    batch is split into that many micro-batches (:func:`micro_batches`:
    micro-batch j = groups j, j+k, j+2k, ... of ``group_size`` consecutive
    examples, k = ``accum_steps``, so each keeps the sampler's groups whole
    and stays spread over all devices; with ``group_size`` 1, examples j, j+k,
    ...); gradients are averaged, BatchNorm statistics updated once per
    micro-batch, and the optimiser steps once. The batch must hold a multiple
    of ``accum_steps`` groups (:func:`check_micro_batches`).
    """
    frozen = tuple(frozen)
    if accum_steps < 1:
        raise ValueError(f"accum_steps={accum_steps}: expected a positive integer")
    if group_size < 1:
        raise ValueError(f"group_size={group_size}: expected a positive integer")

    def grads_of(params, batch_stats, batch, rng):
        def objective(p):
            out, new_vars = model.apply({"params": p, "batch_stats": batch_stats}, batch["images"],
                                        train=True, frozen=frozen, mutable=["batch_stats", "losses"],
                                        rngs={"dropout": rng})
            loss, metrics = loss_fn(out, batch, new_vars)
            return loss, (metrics, new_vars.get("batch_stats", batch_stats))

        (_, (metrics, new_stats)), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return grads, metrics, new_stats

    def accumulated(params, batch_stats, batch, rng):
        micro = jax.tree.map(lambda x: micro_batches(x, accum_steps, group_size), batch)

        def body(carry, xs):
            total, stats = carry
            mb, index = xs
            grads, metrics, stats = grads_of(params, stats, mb, jax.random.fold_in(rng, index))
            return (jax.tree.map(jnp.add, total, grads), stats), metrics

        zeros = jax.tree.map(jnp.zeros_like, params)
        (total, stats), metrics = jax.lax.scan(body, (zeros, batch_stats), (micro, jnp.arange(accum_steps)))
        grads = jax.tree.map(lambda g: g / accum_steps, total)
        return grads, jax.tree.map(jnp.mean, metrics), stats

    def step(state: TrainState, batch: dict[str, jax.Array]):
        compute = grads_of if accum_steps == 1 else accumulated
        rng = jax.random.fold_in(jax.random.key(seed), state.step)
        grads, metrics, batch_stats = compute(state.params, state.batch_stats, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics, grad_norm=optax.tree.norm(grads), lr=schedule(state.step))
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                                  opt_state=opt_state)
        return new_state, metrics

    state_sharding = replicated(mesh) if state_sharding is None else state_sharding
    return jax.jit(step, in_shardings=(state_sharding, batch_sharding(mesh)),
                   out_shardings=(state_sharding, replicated(mesh)), donate_argnums=(0,))
