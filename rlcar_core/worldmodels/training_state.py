"""The state every World Models update function threads through training."""

from __future__ import annotations

from typing import NamedTuple

import jax
import optax


class TrainingState(NamedTuple):
    params: optax.Params
    opt_state: optax.OptState
    # The training loop's own key stream, saved with the checkpoint so a resumed run keeps drawing
    # fresh keys instead of replaying the ones it used before the interruption.
    rng: jax.Array
    step: jax.Array


def split_rng(state: TrainingState) -> tuple[TrainingState, jax.Array]:
    """Draw one key for the next update and advance the state's key stream."""
    rng, key = jax.random.split(state.rng)
    return state._replace(rng=rng), key
