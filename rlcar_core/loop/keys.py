"""The one way trainers draw random keys: folded from the seed, never stored in checkpoints.

A trainer's keys are `stream_key(seed, STREAM, counter)`: one stream per purpose (collection,
updates, evaluation...) and a counter the trainer already checkpoints (env steps, updates,
generations). A resumed run therefore draws fresh keys, never replays old ones, and a checkpoint holds
no key data whose layout depends on the PRNG implementation. Checkpoints must not contain typed keys;
use this scheme instead (World Models and DreamerV3 both do).
"""

from __future__ import annotations

import jax


def stream_key(seed: int, stream: int, counter: int) -> jax.Array:
    """The key for draw number `counter` of stream `stream` of a run seeded with `seed`."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), stream), counter)


def stream_base(seed: int, stream: int) -> jax.Array:
    """The stream's base key; `jax.random.fold_in(base, counter)` equals `stream_key(seed, stream, counter)`
    (hold the base when drawing in a hot loop, to skip one fold)."""
    return jax.random.fold_in(jax.random.key(seed), stream)
