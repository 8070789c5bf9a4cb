"""A hand-written driver that reads the ray sensors: the proof that tracks are drivable, and the
baseline every learned agent has to beat.

It plans in the car's frame: for each candidate heading, the free length of a corridor as wide as the
car (plus a margin) is limited by every ray hit that falls inside it. It steers toward the heading with
the longest corridor, mildly preferring straight ahead, and picks a speed it can still brake from
before the end of that corridor.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlcar_core.sim.params import DEFAULT_RAY_ANGLES_DEG, RAY_RANGE


class HeuristicParams(NamedTuple):
    corridor_half_width: float = 2.2  # metres: the car's half-width plus a safety margin
    max_turn: float = 50.0  # degrees either side searched for a corridor
    num_candidates: int = 41
    turn_cost: float = 6.0  # metres of corridor traded for one radian of turning
    choice_temperature: float = 1.0  # metres: softens the choice so the steering does not chatter
    steer_gain: float = 3.0
    cruise_speed: float = 24.0  # m/s on open road
    min_speed: float = 6.0
    braking: float = 3.5  # m/s^2 assumed when choosing a safe speed for the corridor ahead
    margin: float = 5.0  # metres kept clear at the end of the corridor
    throttle_gain: float = 0.5
    brake_gain: float = 0.3


def heuristic_action(
    sensors: jax.Array,
    params: HeuristicParams = HeuristicParams(),
    ray_angles_deg=DEFAULT_RAY_ANGLES_DEG,
    ray_range: float = RAY_RANGE,
    max_speed: float = 30.0,
    max_steer: float = 0.5,
) -> jax.Array:
    """[steer, gas, brake] for one sensor vector (vmap it for a batch)."""
    num_rays = len(ray_angles_deg)
    ray_angles = jnp.deg2rad(jnp.asarray(ray_angles_deg, jnp.float32))
    distances = sensors[:num_rays]
    speed = sensors[num_rays] * max_speed

    # Ray end points in the car's frame (x ahead, y to the left); rays at full range hit nothing.
    hit = distances < ray_range - 1e-3
    hit_x, hit_y = distances * jnp.cos(ray_angles), distances * jnp.sin(ray_angles)

    candidates = jnp.deg2rad(jnp.linspace(-params.max_turn, params.max_turn, params.num_candidates))
    cos_c, sin_c = jnp.cos(candidates)[:, None], jnp.sin(candidates)[:, None]
    along = hit_x[None] * cos_c + hit_y[None] * sin_c
    across = -hit_x[None] * sin_c + hit_y[None] * cos_c
    blocks = hit[None] & (along > 0.0) & (jnp.abs(across) < params.corridor_half_width)
    free = jnp.min(jnp.where(blocks, along, ray_range), axis=1)

    score = free - params.turn_cost * jnp.abs(candidates)
    weights = jax.nn.softmax((score - score.max()) / params.choice_temperature)
    target = jnp.sum(weights * candidates)  # counter-clockwise positive: left
    # Steering right is positive (CarRacing's convention), so a target on the left needs a negative command.
    steer = jnp.clip(-params.steer_gain * target / max_steer, -1.0, 1.0)

    clear = jnp.sum(weights * free)
    safe_speed = jnp.sqrt(2.0 * params.braking * jnp.maximum(clear - params.margin, 0.0))
    target_speed = jnp.clip(safe_speed, params.min_speed, params.cruise_speed)
    gas = jnp.clip((target_speed - speed) * params.throttle_gain, 0.0, 1.0)
    brake = jnp.clip((speed - target_speed) * params.brake_gain, 0.0, 1.0)
    return jnp.stack([steer, gas, brake])
