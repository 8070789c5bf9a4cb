"""Argument checks for the Gymnasium envs: a wrong action, seed or option is a clear ValueError
(`InvalidArgument`) at the call, never a silent default or an error from deep inside JAX."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from rlcar_core.errors import InvalidArgument

# jax.random.PRNGKey takes a signed 64-bit integer.
SEED_LIMIT = 2**63


def checked_action(action: Any, shape: tuple[int, ...]) -> np.ndarray:
    """`action` as a float32 array of exactly `shape`. Non-finite values pass: the simulator clips them,
    as the design promises, so a diverging agent cannot crash the env."""
    if action is None:
        raise InvalidArgument(f"action must be an array of shape {shape}, got None")
    try:
        array = np.asarray(action, dtype=np.float32)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"action must be numbers of shape {shape}, got {type(action).__name__}"
        ) from None
    if array.shape != shape:
        raise InvalidArgument(
            f"action must have shape {shape} ([steer, gas, brake]), got shape {array.shape}"
        )
    return array


def checked_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InvalidArgument(f"seed must be a non-negative integer or None, got {type(seed).__name__}")
    if not 0 <= int(seed) < SEED_LIMIT:
        raise InvalidArgument(f"seed must be an integer in [0, 2**63), got {seed}")
    return int(seed)


def checked_options(options: Any) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InvalidArgument(
            f"options must be a dict (e.g. {{'track_id': 0}}) or None, got {type(options).__name__}"
        )
    return options


def checked_max_steps(max_steps: Any) -> int:
    if isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral) or max_steps < 1:
        raise InvalidArgument(f"max_steps must be an integer of at least 1, got {max_steps!r}")
    return int(max_steps)
