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


def checked_env_kind(obs: Any, tracks: Any, track_seeds: Any) -> None:
    """An env's observation kind and track split: a ValueError, as Gymnasium's own envs raise for a bad
    constructor argument (`InvalidArgument` is one), before anything is built."""
    from rlcar_core.envs.tracks import TRACK_SPLITS
    from rlcar_core.sim.env import OBS_KINDS

    if obs not in OBS_KINDS:
        raise InvalidArgument(f"unknown observation kind {obs!r}; choose one of {', '.join(OBS_KINDS)}")
    if track_seeds is None and tracks not in TRACK_SPLITS:
        raise InvalidArgument(f"unknown track split {tracks!r}; choose one of {', '.join(TRACK_SPLITS)}")


def checked_single_track_id(track_id: Any) -> Any:
    """A single env's ``options['track_id']``: one index (a list would reach JAX as a batch of tracks
    and fail there with a shape error)."""
    if np.ndim(track_id) != 0:
        raise InvalidArgument(
            f"track_id must be one track index for a single env, got {track_id!r} "
            "(the vector env takes one per car)"
        )
    return track_id


def seed_or_fresh(seed: Any) -> int:
    """A checked seed, or fresh entropy for None (Gymnasium lets one car of a vector env be unseeded)."""
    checked = checked_seed(seed)
    return int(np.random.SeedSequence().generate_state(1)[0]) if checked is None else checked
