"""One DreamerV3 learner step: world model, then actor, then critic, as a single pure function."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from rlcar_core.dreamer.behavior import actor_loss_and_grads, critic_loss
from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.dreamer.optim import actor_optimizer, critic_optimizer, world_model_optimizer
from rlcar_core.dreamer.prng import fast_key
from rlcar_core.dreamer.train_state import AgentParams, OptStates, TrainingState
from rlcar_core.dreamer.world_model import world_model_loss

Metrics = dict[str, jax.Array]


def update(
    train_state: TrainingState,
    batch: Mapping[str, jax.Array],
    key: jax.Array,
    *,
    config: DreamerConfig,
) -> tuple[TrainingState, Metrics]:
    """Trains all three modules on a batch of (B, T) sequences (keys: obs, action, reward, is_first,
    is_terminal; see `world_model` for the alignment). Pure: jit it with `make_update(config)`.

    Imagination starts from the posterior of every replayed step under the world-model parameters
    *before* this step's update, so all three losses see one consistent model, as in the paper.
    """
    world_model_key, imagine_key = jax.random.split(fast_key(key))
    params = train_state.params
    batch = dict(batch)

    (_, world_model_out), world_model_grads = jax.value_and_grad(world_model_loss, has_aux=True)(
        params.world_model, batch, world_model_key, config
    )
    world_model_params, world_model_opt_state = _apply(
        world_model_optimizer(config),
        world_model_grads,
        train_state.opt_states.world_model,
        params.world_model,
    )

    flatten = lambda x: jax.lax.stop_gradient(x.reshape((-1,) + x.shape[2:]))  # noqa: E731
    start = jax.tree.map(flatten, world_model_out.observed.posterior)
    start_continue = flatten(1.0 - jnp.asarray(batch["is_terminal"], jnp.float32))

    (_, actor_out), actor_grads = actor_loss_and_grads(
        params.actor,
        params.world_model,
        params.critic,
        train_state.return_norm,
        start,
        start_continue,
        imagine_key,
        config,
    )
    actor_params, actor_opt_state = _apply(
        actor_optimizer(config), actor_grads, train_state.opt_states.actor, params.actor
    )

    (_, critic_metrics), critic_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        params.critic, train_state.slow_critic, actor_out.trajectory, actor_out.returns, config
    )
    critic_params, critic_opt_state = _apply(
        critic_optimizer(config), critic_grads, train_state.opt_states.critic, params.critic
    )

    step = train_state.step + 1
    mix = jnp.where(step % config.slow_critic_update_every == 0, config.slow_critic_fraction, 0.0)
    slow_critic = optax.incremental_update(critic_params, train_state.slow_critic, mix)

    new_state = TrainingState(
        params=AgentParams(world_model=world_model_params, actor=actor_params, critic=critic_params),
        opt_states=OptStates(
            world_model=world_model_opt_state, actor=actor_opt_state, critic=critic_opt_state
        ),
        slow_critic=slow_critic,
        return_norm=actor_out.return_norm,
        step=step,
    )
    metrics = {
        **world_model_out.metrics,
        **actor_out.metrics,
        **critic_metrics,
        "wm/grad_norm": _global_norm(world_model_grads),
        "actor/grad_norm": _global_norm(actor_grads),
        "critic/grad_norm": _global_norm(critic_grads),
    }
    return new_state, metrics


def make_update(config: DreamerConfig) -> Callable[..., tuple[TrainingState, Metrics]]:
    """`update(train_state, batch, key)` with the config bound; wrap it in `jax.jit`."""
    return functools.partial(update, config=config)


def _apply(optimizer: optax.GradientTransformation, grads, opt_state, params):
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def _global_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree)))
