"""Car state and dynamics: a kinematic bicycle whose lateral velocity is held only as far as grip allows."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rlcar_core.sim.params import CarParams

ACTION_LOW = (-1.0, 0.0, 0.0)
ACTION_HIGH = (1.0, 1.0, 1.0)


class CarState(NamedTuple):
    position: jax.Array  # (2,) metres, world frame
    heading: jax.Array  # () radians, counter-clockwise from +x
    velocity: jax.Array  # (2,) m/s, world frame; may point away from the heading when sliding
    steer_angle: jax.Array  # () radians of the front wheels, positive to the right (CarRacing's convention)


def sanitize_action(action: jax.Array) -> jax.Array:
    """Any action, NaN and inf included, becomes a valid [steer, gas, brake]: bad input never propagates."""
    action = jnp.asarray(action, jnp.float32)
    low = jnp.asarray(ACTION_LOW, jnp.float32)
    high = jnp.asarray(ACTION_HIGH, jnp.float32)
    action = jnp.where(jnp.isnan(action), jnp.zeros_like(action), action)
    return jnp.clip(action, low, high)


def body_frame(heading: jax.Array) -> tuple[jax.Array, jax.Array]:
    forward = jnp.stack([jnp.cos(heading), jnp.sin(heading)])
    left = jnp.stack([-jnp.sin(heading), jnp.cos(heading)])
    return forward, left


def car_step(car: CarState, action: jax.Array, on_road: jax.Array, p: CarParams, dt: float) -> CarState:
    """Advance the car by ``dt`` seconds; ``action`` must already be sanitised."""
    steer, gas, brake = action[0], action[1], action[2]
    steer_angle = car.steer_angle + (steer * p.max_steer - car.steer_angle) * jnp.minimum(
        1.0, p.steer_response * dt
    )

    forward, left = body_frame(car.heading)
    speed = jnp.dot(car.velocity, forward)
    slide = jnp.dot(car.velocity, left)

    grip = jnp.where(on_road, p.road_grip, p.grass_grip)
    engine = jnp.where(on_road, 1.0, p.grass_engine) * p.engine_accel
    drag = p.rolling_decel + jnp.where(on_road, 0.0, p.grass_decel)
    accel = gas * engine * jnp.clip(1.0 - speed / p.max_speed, 0.0, 1.0) - drag - brake * p.brake_decel
    # No reverse gear: brakes and drag stop the car, they do not drive it backwards.
    speed = jnp.clip(speed + accel * dt, 0.0, p.max_speed)

    # The body turns as the bicycle geometry asks, up to a little more than grip can follow...
    yaw_rate = -speed * jnp.tan(steer_angle) / p.wheelbase  # right-positive wheels turn clockwise
    max_yaw_rate = p.yaw_grip_margin * grip / jnp.maximum(speed, 1.0)
    heading = car.heading + jnp.clip(yaw_rate, -max_yaw_rate, max_yaw_rate) * dt
    heading = jnp.mod(heading + jnp.pi, 2 * jnp.pi) - jnp.pi

    # ...and the velocity follows the new heading only as far as the tyres' lateral grip allows.
    velocity = speed * forward + slide * left
    new_forward, new_left = body_frame(heading)
    new_speed = jnp.dot(velocity, new_forward)
    new_slide = jnp.dot(velocity, new_left)
    new_slide = new_slide - jnp.clip(new_slide, -grip * dt, grip * dt)
    velocity = jnp.maximum(new_speed, 0.0) * new_forward + new_slide * new_left

    return CarState(car.position + velocity * dt, heading, velocity, steer_angle)
