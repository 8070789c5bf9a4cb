"""``make_env``: the one way the rest of rlcar creates an environment, RLCar or CarRacing-v3."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode

from rlcar_core.envs.backends import CARRACING_BACKENDS
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


BACKENDS = CARRACING_BACKENDS


def check_backend_request(env: EnvName, backend: str, action_repeat: int) -> None:
    """One clear line when the CarRacing backend or the action repeat does not fit `env`."""
    if backend not in BACKENDS:
        raise RlcarError(f"unknown CarRacing backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    require_at_least("--action-repeat", action_repeat, 1)
    if env is EnvName.CARRACING:
        return
    if backend != "gymnasium":
        raise RlcarError(
            f"--carracing-backend {backend} applies to --env carracing only; "
            "RLCar batches its own JAX simulator"
        )
    if action_repeat != 1:
        raise RlcarError("--action-repeat applies to --env carracing only; RLCar keeps 1")


def make_env(
    name: str = EnvName.RLCAR,
    obs: str = "sensors",
    num_envs: int | None = None,
    tracks: str = "train",
    num_tracks: int | None = None,
    track_seeds: Sequence[int] | None = None,
    max_steps: int = 1000,
    render_mode: str | None = None,
    backend: str = "gymnasium",
    action_repeat: int = 1,
    processes: bool = False,
    autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP,
    camera: Any = None,
) -> gym.Env | gym.vector.VectorEnv:
    """A single env (``num_envs=None``) or a vector env with next-step autoreset.

    ``processes`` (CarRacing-v3, Gymnasium backend) steps each car in its own worker process
    (Gymnasium's ``AsyncVectorEnv``): Box2D and the frame's rendering are single-threaded Python, so
    this is what spreads a vector of cars over the cores. ``autoreset_mode`` DISABLED (CarRacing-v3
    only) leaves finished cars for the caller to reset with ``options={"reset_mask": ...}``.

    For CarRacing-v3 the track comes from the reset seed, so ``tracks``/``num_tracks``/``track_seeds``
    only apply to RLCar. ``backend`` picks who simulates CarRacing-v3's vector envs (Gymnasium, or
    EnvPool's C++ port: same observations and info, other tracks for the same seed); ``action_repeat``
    k > 1 repeats each CarRacing action for k frames and reports them in ``info["frames"]``, while
    ``max_steps`` still counts frames. Both keep their defaults for RLCar. ``camera`` (RLCar only) is a
    `rlcar_core.sim.camera_spec.CameraSpec` or its dict as a run's config.json records it; None is
    today's camera."""
    env = check_env_request(name, obs)
    require_at_least("max_steps", max_steps, 1)
    check_backend_request(env, backend, action_repeat)
    if env is EnvName.CARRACING:
        if camera is not None:
            raise RlcarError("camera settings apply to --env rlcar only; CarRacing-v3 has its own camera")
        return _make_carracing(
            num_envs, max_steps, render_mode, backend, action_repeat, processes, AutoresetMode(autoreset_mode)
        )
    if processes or autoreset_mode != AutoresetMode.NEXT_STEP:
        raise RlcarError("worker processes and other autoreset modes apply to --env carracing only")

    from rlcar_core.envs.registration import ENV_ID

    kwargs = dict(obs=obs, tracks=tracks, num_tracks=num_tracks, track_seeds=track_seeds, max_steps=max_steps)
    if camera is not None:
        kwargs["camera"] = camera
    if num_envs is None:
        return gym.make(ENV_ID, render_mode=render_mode, **kwargs)
    return gym.make_vec(ENV_ID, num_envs=num_envs, **kwargs)


def _carracing_car(render_mode: str | None, max_steps: int, action_repeat: int) -> gym.Env:
    """One CarRacing-v3 car; module-level so a worker process can unpickle its maker."""
    from rlcar_core.envs.action_repeat import ActionRepeat
    from rlcar_core.envs.carracing import make_carracing

    env = make_carracing(render_mode, max_steps)
    return env if action_repeat == 1 else ActionRepeat(env, action_repeat)


def _carracing_worker_car(render_mode: str | None, max_steps: int, action_repeat: int) -> gym.Env:
    """One CarRacing-v3 car in a worker process, deaf to Ctrl-C: a terminal's SIGINT reaches the whole
    process group, and the parent decides how to stop (save, then close its workers). Gymnasium also
    calls this once in the parent, for the spaces: there the parent's own handler must stay."""
    import multiprocessing
    import signal

    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return _carracing_car(render_mode, max_steps, action_repeat)


def _make_carracing(
    num_envs: int | None,
    max_steps: int,
    render_mode: str | None,
    backend: str,
    action_repeat: int,
    processes: bool = False,
    autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP,
) -> gym.Env | gym.vector.VectorEnv:
    from rlcar_core.envs.action_repeat import VectorActionRepeat

    if backend == "envpool" and (processes or autoreset_mode != AutoresetMode.NEXT_STEP):
        raise RlcarError(
            "EnvPool runs its own threads with next-step autoreset; it takes no worker processes"
        )
    if backend == "envpool":
        if num_envs is None or render_mode is not None:
            raise RlcarError(
                "the EnvPool backend makes vector envs without rendering (training); "
                "single cars, rendering and evaluation use --carracing-backend gymnasium"
            )
        from rlcar_core.envs.carracing_envpool import make_carracing_envpool

        pool = make_carracing_envpool(num_envs, max_steps)
        return pool if action_repeat == 1 else VectorActionRepeat(pool, action_repeat)

    one_car = functools.partial(_carracing_car, render_mode, max_steps, action_repeat)
    if num_envs is None:
        return one_car()
    if processes:
        # forkserver, not fork: the parent has JAX's threads running, which a fork would copy mid-lock.
        worker_car = functools.partial(_carracing_worker_car, render_mode, max_steps, action_repeat)
        return gym.vector.AsyncVectorEnv(
            [worker_car] * num_envs, context="forkserver", autoreset_mode=autoreset_mode
        )
    return gym.vector.SyncVectorEnv([one_car] * num_envs, autoreset_mode=autoreset_mode)
