"""``gymnasium.make_vec("rlcar/RLCar-v0", num_envs=N)``: N cars stepped by one jitted, vmapped call."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlcar_core.envs.checks import (
    checked_action,
    checked_env_kind,
    checked_max_steps,
    checked_options,
    checked_seed,
    seed_or_fresh,
)
from rlcar_core.envs.rlcar_gym import RENDER_FPS
from rlcar_core.envs.spaces import action_space, observation_space
from rlcar_core.envs.tracks import camera_spec, check_track_ids, make_track_bank
from rlcar_core.errors import InvalidArgument, require_at_least
from rlcar_core.sim.camera_spec import CameraSpec
from rlcar_core.sim.env import RLCar


def _with_masks(info: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # Gymnasium's vector info convention: every key has a boolean "_key" saying which envs set it.
    masks = {f"_{name}": np.ones(value.shape[0], bool) for name, value in info.items()}
    return {**info, **masks}


@partial(jax.jit, static_argnums=0)
def _reset_batch(sim: RLCar, keys, track_ids, params):
    return jax.vmap(sim.reset, in_axes=(0, None, 0))(keys, params, track_ids)


@partial(jax.jit, static_argnums=0)
def _reset_rows(sim: RLCar, keys, track_ids, params, state, mask):
    """Reset the cars where `mask` is set and keep the others as they are; observe them all."""
    fresh = jax.vmap(sim.reset_state, in_axes=(0, None, 0))(keys, params, track_ids)

    def pick(new, old):
        return jnp.where(mask.reshape(mask.shape + (1,) * (new.ndim - 1)), new, old)

    state = jax.tree.map(pick, fresh, state)
    return jax.vmap(sim.observe, in_axes=(0, None))(state, params), state


@partial(jax.jit, static_argnums=0)
def _step_batch(sim: RLCar, key, state, actions, params):
    key, step_key = jax.random.split(key)
    keys = jax.random.split(step_key, actions.shape[0])
    out = jax.vmap(sim.step_autoreset, in_axes=(0, 0, 0, None))(keys, state, actions, params)
    return (key, *out)


class RLCarVectorEnv(VectorEnv):
    """Gymnasium 1.x vector env with next-step autoreset, backed by ``RLCar.step_autoreset`` under vmap."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": [], "render_fps": RENDER_FPS}

    def __init__(
        self,
        num_envs: int = 1,
        obs: str = "sensors",
        tracks: str = "train",
        num_tracks: int | None = None,
        track_seeds: Sequence[int] | None = None,
        max_steps: int = 1000,
        render_mode: str | None = None,
        camera: CameraSpec | Mapping[str, Any] | None = None,
    ):
        require_at_least("num_envs", num_envs, 1)
        if render_mode is not None:
            raise InvalidArgument(
                "the RLCar vector env does not render; use gymnasium.make for a rendered env"
            )
        max_steps = checked_max_steps(max_steps)
        checked_env_kind(obs, tracks, track_seeds)
        self.num_envs = num_envs
        self.camera = camera_spec(camera)
        self.sim = RLCar(obs, camera_size=self.camera.size)
        self.params = self.sim.default_params(
            make_track_bank(tracks, num_tracks, track_seeds, self.camera),
            max_steps=max_steps,
            **self.camera.env_overrides(),
        )
        num_rays = int(self.params.ray_angles.shape[0])
        self.single_observation_space = observation_space(
            obs, num_rays, float(self.params.ray_range), self.camera.size
        )
        self.single_action_space = action_space()
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self._key: jax.Array | None = None
        self.state = None

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict[str, Any] | None = None):
        """All cars, or with ``options={"reset_mask": mask}`` only the cars where `mask` is set (the
        others keep their episode; ``track_id`` and per-car seeds apply to the reset cars alone, and
        the env's own key, which steps all cars, is left as it was)."""
        options = checked_options(options)
        reset_mask = options.get("reset_mask")
        if reset_mask is not None:
            return self._reset_some(seed, options, reset_mask)
        seeds = self._per_car_seeds(seed)
        if seeds is not None:
            keys = jnp.stack([jax.random.PRNGKey(seed_or_fresh(s)) for s in seeds])
            self._key = jax.random.fold_in(keys[0], len(seeds))
        else:
            seed = checked_seed(seed)
            if seed is not None or self._key is None:
                self._key = jax.random.PRNGKey(
                    np.random.SeedSequence(seed).generate_state(1)[0] if seed is None else seed
                )
            self._key, reset_key = jax.random.split(self._key)
            keys = jax.random.split(reset_key, self.num_envs)
        obs, self.state = _reset_batch(self.sim, keys, self._track_ids(options), self.params)
        return self._observed(obs)

    def _reset_some(self, seed, options: dict[str, Any], reset_mask) -> tuple:
        mask = np.asarray(reset_mask)
        if mask.shape != (self.num_envs,) or mask.dtype != bool:
            raise InvalidArgument(
                f"reset_mask must be {self.num_envs} booleans, one per car, got {reset_mask!r}"
            )
        if self.state is None:
            raise InvalidArgument(
                "reset_mask resets some cars of a running env: call reset() without it first"
            )
        seeds = self._per_car_seeds(seed)
        if seeds is not None:
            # Only the reset cars' seeds are used: the others may be None without drawing entropy.
            keys = jnp.stack(
                [jax.random.PRNGKey(seed_or_fresh(s) if go else 0) for s, go in zip(seeds, mask, strict=True)]
            )
        else:
            seed = checked_seed(seed)
            keys = jax.random.split(
                jax.random.PRNGKey(seed) if seed is not None else jax.random.fold_in(self._key, 1),
                self.num_envs,
            )
        obs, self.state = _reset_rows(
            self.sim, keys, self._track_ids(options), self.params, self.state, jnp.asarray(mask)
        )
        return self._observed(obs)

    def _per_car_seeds(self, seed) -> Sequence | None:
        """`seed` if it is one seed per car (checked), else None (one seed, or none, for all cars)."""
        if not isinstance(seed, Sequence) or isinstance(seed, str):
            return None
        if len(seed) != self.num_envs:
            raise InvalidArgument(f"got {len(seed)} seeds for {self.num_envs} envs")
        return seed

    def _track_ids(self, options: dict[str, Any]) -> jax.Array:
        """``options["track_id"]``, checked against the bank, one per car."""
        track_ids = np.asarray(options.get("track_id", -1))
        check_track_ids(track_ids, self.params.bank.num_tracks)
        return jnp.asarray(np.broadcast_to(track_ids, (self.num_envs,)))

    def _observed(self, obs) -> tuple:
        """Gymnasium's reset result for the cars' current state: observations and info."""
        info = jax.device_get(jax.vmap(self.sim.info)(self.state))
        return jax.device_get(obs), _with_masks({k: np.asarray(v) for k, v in info.items()})

    def step(self, actions):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        actions = jnp.asarray(checked_action(actions, self.action_space.shape))
        self._key, obs, self.state, reward, terminated, truncated, info = _step_batch(
            self.sim, self._key, self.state, actions, self.params
        )
        obs, reward, terminated, truncated, info = jax.device_get((obs, reward, terminated, truncated, info))
        info = _with_masks({k: np.asarray(v) for k, v in info.items()})
        return obs, np.asarray(reward), np.asarray(terminated), np.asarray(truncated), info
