"""The RLCar environment as pure functions over immutable state (gymnax style).

``RLCar(obs)`` holds only static configuration (which observation to build), so its methods can be
jitted with ``self`` static and vmapped over thousands of cars::

    env = RLCar("pixels")
    params = env.default_params(build_track_bank(training_seeds(32)))
    obs, state = env.reset(key, params)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlcar_core.errors import RlcarError
from rlcar_core.sim.bank import TrackBank
from rlcar_core.sim.camera import CAMERA_SIZE, render_camera
from rlcar_core.sim.car import CarState, body_frame, car_step, sanitize_action
from rlcar_core.sim.geometry import hits_obstacle, locate, off_map, wrap_angle
from rlcar_core.sim.params import RAY_RANGE, EnvParams
from rlcar_core.sim.sensors import cast_rays, obstacle_rays, ray_fan

OBS_KINDS = ("sensors", "pixels", "both")
EXTRA_SENSORS = ("speed", "slide", "heading_error", "lateral_offset", "steer_angle")
MAX_SLIDE = 10.0  # m/s that maps to 1.0 in the slide sensor
MAX_LATERAL = 3.0  # half-widths from the centre line that map to the sensor's bounds


class EnvState(NamedTuple):
    car: CarState
    track_id: jax.Array  # int32 index into the bank
    arc: jax.Array  # metres along the centre line at the last step
    progress: jax.Array  # laps driven forward along the centre line since reset (shortcuts earn nothing)
    time: jax.Array  # int32 steps since reset
    on_road: jax.Array
    crashed: jax.Array
    lap_complete: jax.Array
    done: jax.Array  # the last step ended the episode: the vector env resets on the next step


def sensor_names(params: EnvParams) -> tuple[str, ...]:
    """What each entry of the sensor vector is: road-edge rays, the extras, then obstacle rays."""
    degrees = np.rad2deg(np.asarray(params.ray_angles))
    return (
        tuple(f"ray_{d:+.0f}" for d in degrees) + EXTRA_SENSORS + tuple(f"obstacle_{d:+.0f}" for d in degrees)
    )


EXTRA_LOW = (0.0, -1.0, -1.0, -MAX_LATERAL, -1.0)
EXTRA_HIGH = (1.0, 1.0, 1.0, MAX_LATERAL, 1.0)


def sensor_bounds(num_rays: int, ray_range: float = RAY_RANGE) -> tuple[np.ndarray, np.ndarray]:
    """Rays in metres (0 to ray_range), so that agents see near obstacles at a useful scale (DreamerV3
    symlogs its inputs); the extras normalised. Obstacle rays come last, so code that reads the first
    rays and the extras by position (drivers, renderers) need not know of them."""
    low = np.array([0.0] * num_rays + list(EXTRA_LOW) + [0.0] * num_rays, np.float32)
    high = np.array([ray_range] * num_rays + list(EXTRA_HIGH) + [ray_range] * num_rays, np.float32)
    return low, high


class RLCar:
    """A car on a procedural track; observations are ``sensors``, ``pixels`` or ``both``.
    ``camera_size`` is the side of the camera's square frame in pixels (static: the frame's shape)."""

    def __init__(self, obs: str = "sensors", camera_size: int = CAMERA_SIZE):
        if obs not in OBS_KINDS:
            raise RlcarError(f"unknown observation kind {obs!r}; choose one of {', '.join(OBS_KINDS)}")
        if int(camera_size) < 8:
            raise RlcarError(f"camera_size must be at least 8 pixels, got {camera_size}")
        self.obs_kind = obs
        self.camera_size = int(camera_size)

    def __hash__(self) -> int:
        return hash((RLCar, self.obs_kind, self.camera_size))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RLCar)
            and other.obs_kind == self.obs_kind
            and other.camera_size == self.camera_size
        )

    def __repr__(self) -> str:
        size = "" if self.camera_size == CAMERA_SIZE else f", camera_size={self.camera_size}"
        return f"RLCar(obs={self.obs_kind!r}{size})"

    @staticmethod
    def default_params(bank: TrackBank, **overrides: Any) -> EnvParams:
        return EnvParams(bank=bank, **overrides)

    # -- functional API ---------------------------------------------------------------------------

    def reset(self, key: jax.Array, params: EnvParams, track_id: jax.Array | None = None):
        state = self.reset_state(key, params, track_id)
        return self.observe(state, params), state

    def reset_state(self, key: jax.Array, params: EnvParams, track_id: jax.Array | None = None) -> EnvState:
        bank = params.bank
        key_track, key_offset, key_heading = jax.random.split(key, 3)
        # A negative id asks for a random track, so one trace serves both cases.
        track_id = jnp.asarray(-1 if track_id is None else track_id, jnp.int32)
        random_track = jax.random.randint(key_track, (), 0, bank.num_tracks)
        track_id = jnp.where(track_id < 0, random_track, jnp.minimum(track_id, bank.num_tracks - 1))
        centreline = bank.centreline[track_id]
        direction = centreline[1] - centreline[0]
        road_heading = jnp.arctan2(direction[1], direction[0])
        _, left = body_frame(road_heading)
        offset = jax.random.uniform(key_offset, (), minval=-1.0, maxval=1.0) * params.start_jitter
        heading = (
            road_heading + jax.random.uniform(key_heading, (), minval=-0.1, maxval=0.1) * params.start_jitter
        )
        position = centreline[0] + offset * left
        car = CarState(position, wrap_angle(heading), jnp.zeros(2, jnp.float32), jnp.float32(0.0))
        where = locate(bank, track_id, position)
        false = jnp.bool_(False)
        return EnvState(
            car, track_id, where.arc, jnp.float32(0.0), jnp.int32(0), jnp.bool_(True), false, false, false
        )

    def step(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
        """One step of physics; stepping a finished episode is allowed but meaningless (reset instead)."""
        del key  # the dynamics are deterministic; the key keeps the gymnax signature
        state, reward = self._transition(state, action, params)
        terminated = state.crashed | state.lap_complete
        truncated = (state.time >= params.max_steps) & ~terminated
        state = state._replace(done=terminated | truncated)
        return self.observe(state, params), state, reward, terminated, truncated, self.info(state)

    def step_autoreset(self, key: jax.Array, state: EnvState, action: jax.Array, params: EnvParams):
        """``step``, except that a car whose last step ended its episode is reset instead (Gymnasium's
        next-step autoreset): that call returns the first observation, reward 0 and no termination."""
        key_step, key_reset = jax.random.split(key)
        was_done = state.done
        _, stepped, reward, terminated, truncated, _ = self.step(key_step, state, action, params)
        fresh = self.reset_state(key_reset, params)
        state = jax.tree.map(lambda a, b: jnp.where(was_done, a, b), fresh, stepped)
        reward = jnp.where(was_done, 0.0, reward)
        return (
            self.observe(state, params),
            state,
            reward,
            terminated & ~was_done,
            truncated & ~was_done,
            self.info(state),
        )

    def _transition(
        self, state: EnvState, action: jax.Array, params: EnvParams
    ) -> tuple[EnvState, jax.Array]:
        bank, track_id = params.bank, state.track_id
        car = car_step(state.car, sanitize_action(action), state.on_road, params.car, params.dt)
        where = locate(bank, track_id, car.position)
        length = bank.length[track_id]
        # Count only plausible forward motion so driving across the infield to a later stretch earns nothing.
        max_advance = 1.5 * params.car.max_speed * params.dt
        advance = jnp.clip(
            jnp.mod(where.arc - state.arc + length / 2, length) - length / 2, -max_advance, max_advance
        )
        progress = state.progress + advance / length
        crashed = hits_obstacle(bank, track_id, car.position, params.car.car_radius) | off_map(
            bank, car.position, params.car.car_radius
        )
        lap_complete = progress >= 1.0
        reward = (
            params.progress_reward * advance / length - params.time_penalty - params.crash_penalty * crashed
        )
        new_state = EnvState(
            car=car,
            track_id=track_id,
            arc=where.arc,
            progress=progress,
            time=state.time + 1,
            on_road=jnp.abs(where.lateral) <= bank.half_width[track_id],
            crashed=crashed,
            lap_complete=lap_complete,
            done=state.done,
        )
        return new_state, reward.astype(jnp.float32)

    # -- observations -----------------------------------------------------------------------------

    def observe(self, state: EnvState, params: EnvParams):
        if self.obs_kind == "sensors":
            return self.sensors(state, params)
        if self.obs_kind == "pixels":
            return self.pixels(state, params, self.camera_size)
        return {
            "sensors": self.sensors(state, params),
            "pixels": self.pixels(state, params, self.camera_size),
        }

    @staticmethod
    def sensors(state: EnvState, params: EnvParams) -> jax.Array:
        bank, car = params.bank, state.car
        fan = ray_fan(car.position, car.heading, params.ray_angles, params.ray_range)
        rays = cast_rays(bank, state.track_id, fan)
        where = locate(bank, state.track_id, car.position)
        forward, left = body_frame(car.heading)
        extras = jnp.stack(
            [
                jnp.dot(car.velocity, forward) / params.car.max_speed,
                jnp.clip(jnp.dot(car.velocity, left) / MAX_SLIDE, -1.0, 1.0),
                wrap_angle(car.heading - where.road_heading) / jnp.pi,
                jnp.clip(where.lateral / bank.half_width[state.track_id], -MAX_LATERAL, MAX_LATERAL),
                car.steer_angle / params.car.max_steer,
            ]
        )
        obstacles = obstacle_rays(bank, state.track_id, fan, rays)
        # Rays are within [0, ray_range] by construction; only the extras need clipping to their bounds.
        extras = jnp.clip(extras, jnp.asarray(EXTRA_LOW), jnp.asarray(EXTRA_HIGH))
        return jnp.concatenate([rays, extras, obstacles]).astype(jnp.float32)

    @staticmethod
    def pixels(state: EnvState, params: EnvParams, size: int = CAMERA_SIZE) -> jax.Array:
        car = state.car
        return render_camera(
            params.bank,
            state.track_id,
            car.position,
            car.heading,
            params.camera_resolution,
            params.camera_forward_rows,
            size,
        )

    @staticmethod
    def info(state: EnvState) -> dict[str, jax.Array]:
        return {
            "progress": jnp.clip(state.progress, 0.0, 1.0),
            "lap_complete": state.lap_complete,
            "crashed": state.crashed,
            "on_road": state.on_road,
            "speed": jnp.linalg.norm(state.car.velocity),
            "track_id": state.track_id,
            "time": state.time,
        }


def observation_shape(
    obs_kind: str, num_rays: int, camera_size: int = CAMERA_SIZE
) -> dict[str, tuple[int, ...]]:
    shapes = {"sensors": (2 * num_rays + len(EXTRA_SENSORS),), "pixels": (camera_size, camera_size, 3)}
    return shapes if obs_kind == "both" else {obs_kind: shapes[obs_kind]}
