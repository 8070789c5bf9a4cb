"""Whole episodes inside one jitted ``lax.scan``: thousands of cars, no Python in the loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlcar_core.sim.env import RLCar
from rlcar_core.sim.params import EnvParams


class EpisodeStats(NamedTuple):
    """Per car, for the first episode only (later steps are masked out)."""

    episode_return: jax.Array
    progress: jax.Array
    lap_complete: jax.Array
    crashed: jax.Array
    length: jax.Array  # steps until the episode ended (or the rollout did)


def first_episode_stats(
    env: RLCar,
    params: EnvParams,
    policy: Callable[[jax.Array, jax.Array], jax.Array],
    key: jax.Array,
    track_ids: jax.Array,
    num_steps: int,
) -> EpisodeStats:
    """Run one episode per entry of ``track_ids`` for at most ``num_steps`` steps with ``policy(obs, key)``
    (batched over cars) and return its statistics. Jit it with ``env``, ``policy`` and ``num_steps`` static."""
    num_cars = track_ids.shape[0]
    reset_keys = jax.random.split(key, num_cars + 1)
    key, reset_keys = reset_keys[0], reset_keys[1:]
    obs, state = jax.vmap(env.reset, in_axes=(0, None, 0))(reset_keys, params, track_ids)
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def body(carry, step_key):
        obs, state, stats, running = carry
        policy_key, env_key = jax.random.split(step_key)
        action = policy(obs, policy_key)
        obs, state, reward, terminated, truncated, info = step(
            jax.random.split(env_key, num_cars), state, action, params
        )
        stats = EpisodeStats(
            episode_return=stats.episode_return + jnp.where(running, reward, 0.0),
            progress=jnp.where(running, info["progress"], stats.progress),
            lap_complete=stats.lap_complete | (running & info["lap_complete"]),
            crashed=stats.crashed | (running & info["crashed"]),
            length=stats.length + running.astype(jnp.int32),
        )
        return (obs, state, stats, running & ~(terminated | truncated)), None

    zeros = jnp.zeros(num_cars, jnp.float32)
    false = jnp.zeros(num_cars, bool)
    stats = EpisodeStats(zeros, zeros, false, false, jnp.zeros(num_cars, jnp.int32))
    carry = (obs, state, stats, ~false)
    (_, _, stats, _), _ = jax.lax.scan(body, carry, jax.random.split(key, num_steps))
    return stats
