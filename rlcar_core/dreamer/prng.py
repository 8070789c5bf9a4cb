"""Key conversion that keeps random-number generation cheap to compile."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def fast_key(key: jax.Array) -> jax.Array:
    """A key of XLA's RngBitGenerator ("rbg") impl, derived from (so still determined by) `key`.

    With JAX's default threefry impl every random call site compiles its own hash kernel; Haiku's
    per-parameter initialisers and the sampling in `update` made compiling take 2-3x longer on a CPU.
    rbg lowers random bits to a single XLA op. Results are reproducible for a given key and backend,
    though not bit-identical across backends.
    """
    return jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl="rbg")
