"""``make_env``: the one way the rest of rlcar creates an environment, RLCar or CarRacing-v3."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym

from rlcar_core.envs.names import EnvName
from rlcar_core.errors import RlcarError, require_at_least


def check_env_request(name: str, obs: str) -> EnvName:
    """`name` as an `EnvName`, once it and the observation kind `obs` are known to go together."""
    from rlcar_core.sim.env import OBS_KINDS  # here, not at import: importing the factory stays JAX-free

    env = EnvName.parse(name)
    if obs not in OBS_KINDS:
        raise RlcarError(f"unknown observation kind {obs!r}; choose one of {', '.join(OBS_KINDS)}")
    if not env.has_sensors and obs != "pixels":
        raise RlcarError("CarRacing-v3 has only pixel observations; use --obs pixels (or --env rlcar)")
    return env


def make_env(
    name: str = EnvName.RLCAR,
    obs: str = "sensors",
    num_envs: int | None = None,
    tracks: str = "train",
    num_tracks: int | None = None,
    track_seeds: Sequence[int] | None = None,
    max_steps: int = 1000,
    render_mode: str | None = None,
) -> gym.Env | gym.vector.VectorEnv:
    """A single env (``num_envs=None``) or a vector env with next-step autoreset.

    For CarRacing-v3 the track comes from the reset seed, so ``tracks``/``num_tracks``/``track_seeds``
    only apply to RLCar."""
    env = check_env_request(name, obs)
    require_at_least("max_steps", max_steps, 1)
    if env is EnvName.CARRACING:
        from rlcar_core.envs.carracing import make_carracing

        if num_envs is None:
            return make_carracing(render_mode, max_steps)
        return gym.vector.SyncVectorEnv(
            [lambda: make_carracing(render_mode, max_steps) for _ in range(num_envs)]
        )

    from rlcar_core.envs.registration import ENV_ID

    kwargs = dict(obs=obs, tracks=tracks, num_tracks=num_tracks, track_seeds=track_seeds, max_steps=max_steps)
    if num_envs is None:
        return gym.make(ENV_ID, render_mode=render_mode, **kwargs)
    return gym.make_vec(ENV_ID, num_envs=num_envs, **kwargs)
