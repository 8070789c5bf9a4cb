"""The camera's settings (CameraSpec): today's camera unchanged bit for bit, each lever changes what the
camera shows as intended, the world stays honest (collisions and rays match the drawing), and runs that
recorded no camera get today's."""

import hashlib
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcar_core.errors import RlcarError
from rlcar_core.sim.bank import PALETTE, build_track_bank
from rlcar_core.sim.camera_spec import CameraSpec
from rlcar_core.sim.car import CarState
from rlcar_core.sim.env import EnvState, RLCar
from rlcar_core.sim.geometry import hits_obstacle
from rlcar_core.sim.sensors import obstacle_rays, ray_fan

ROOT = Path(__file__).resolve().parents[1]
# sha256 of track 3's colour map as the camera code before CameraSpec drew it (today's camera).
TODAY_TRACK_3 = "af0a72e34c641cd0fda8d5b3033f6ccd55be3e93f305e7ade89b22a32d2d133e"
# Square obstacles of 2.2 m half side, plain grass, no rim, 0.4 m a pixel: levers pulled together.
BOLD = CameraSpec(
    metres_per_pixel=0.4,
    rows_ahead=56,
    obstacle_radius=2.2,
    obstacle_shape="square",
    obstacle_rim=0.0,
    grass_checker=False,
)


def bank_for(spec: CameraSpec):
    return build_track_bank([3], spec.track_spec(), spec.paint())


@pytest.fixture(scope="module")
def today_bank():
    return bank_for(CameraSpec())


@pytest.fixture(scope="module")
def bold_bank():
    return bank_for(BOLD)


def test_the_default_camera_paints_todays_world_bit_for_bit(today_bank):
    assert hashlib.sha256(np.asarray(today_bank.colour[0]).tobytes()).hexdigest() == TODAY_TRACK_3
    spec = CameraSpec()
    assert spec.env_overrides() == {"camera_resolution": 0.6, "camera_forward_rows": 48}
    assert RLCar("pixels", camera_size=spec.size) == RLCar("pixels")


def car_before_obstacle(bank, metres: float) -> EnvState:
    """A car on the road `metres` before the first obstacle, facing it."""
    centre, heading = np.asarray(bank.obstacles[0, 0]), float(bank.obstacle_headings[0, 0])
    position = centre - metres * np.array([np.cos(heading), np.sin(heading)])
    car = CarState(jnp.asarray(position, jnp.float32), jnp.float32(heading), jnp.zeros(2), jnp.float32(0.0))
    false = jnp.bool_(False)
    return EnvState(
        car, jnp.int32(0), jnp.float32(0), jnp.float32(0), jnp.int32(0), jnp.bool_(True), false, false, false
    )


def obstacle_pixels(frame, rgb) -> int:
    return int(np.all(np.asarray(frame) == np.asarray(rgb, np.uint8), axis=-1).sum())


def test_bold_levers_draw_big_square_obstacles_on_plain_grass(today_bank, bold_bank):
    obstacle = tuple(int(c) for c in jax.lax.bitcast_convert_type(PALETTE["obstacle"], jnp.uint8)[:3])
    today = RLCar.pixels(car_before_obstacle(today_bank, 8.0), RLCar.default_params(today_bank))
    bold = RLCar.pixels(
        car_before_obstacle(bold_bank, 8.0), RLCar.default_params(bold_bank, **BOLD.env_overrides())
    )
    # A 4.4 m square at 0.4 m a pixel is 11 x 11 pixels; today's 2.6 m disc at 0.6 m is about 4 across.
    assert obstacle_pixels(bold, obstacle) >= 100
    assert obstacle_pixels(today, obstacle) <= 20
    # The checker off, the grass is one colour: the map holds no light grass.
    colour = np.asarray(bold_bank.colour)
    assert not np.any(colour == PALETTE["grass_light"]) and np.any(colour == PALETTE["grass"])
    assert np.any(np.asarray(today_bank.colour) == PALETTE["grass_light"])
    # Squares fill their square: (4.4 m / 0.5 m a map pixel)^2 per obstacle, not a disc's pi/4 of it.
    per_obstacle = np.sum(colour == np.uint32(BOLD.paint().obstacle)) / bold_bank.obstacles.shape[1]
    assert abs(per_obstacle - (4.4 / 0.5) ** 2) < 0.15 * (4.4 / 0.5) ** 2


def test_square_obstacles_are_square_for_collisions_and_rays_too(bold_bank):
    centre, heading = np.asarray(bold_bank.obstacles[0, 0]), float(bold_bank.obstacle_headings[0, 0])
    along, across = (
        np.array([np.cos(heading), np.sin(heading)]),
        np.array([-np.sin(heading), np.cos(heading)]),
    )
    corner = centre + (2.2 + 0.8) * (along + across)  # outside the disc of radius 2.2 + 1.2 around it
    assert bool(hits_obstacle(bold_bank, jnp.int32(0), jnp.asarray(corner, jnp.float32), 1.2))
    far = centre + 5.0 * (along + across)
    assert not bool(hits_obstacle(bold_bank, jnp.int32(0), jnp.asarray(far, jnp.float32), 1.2))
    # A ray along the road from 10 m before the square meets its near side at 10 - 2.2 m.
    origin = jnp.asarray(centre - 10.0 * along, jnp.float32)
    fan = ray_fan(origin, jnp.float32(heading), jnp.zeros(1), 40.0)
    distance = obstacle_rays(bold_bank, jnp.int32(0), fan, jnp.full(1, 40.0))
    assert abs(float(distance[0]) - 7.8) < 1e-3


def test_a_bigger_frame_has_the_shape_it_says():
    env = RLCar("pixels", camera_size=96)
    assert env != RLCar("pixels") and "96" in repr(env)
    from rlcar_core.sim.env import observation_shape

    assert observation_shape("pixels", 13, 96)["pixels"] == (96, 96, 3)


# The RLCar pixel agents were retrained on the visible camera and record it (test_camera_wiring.py).
@pytest.mark.parametrize("run", ["dreamer-rlcar-sensors"])
def test_shipped_runs_that_recorded_no_camera_get_todays(run):
    config = json.loads((ROOT / "pretrained" / run / "config.json").read_text())
    assert CameraSpec.from_run_config(config) == CameraSpec()


def test_camera_settings_round_trip_through_a_run_config_and_bad_ones_are_refused():
    spec = CameraSpec(size=96, obstacle_rgb=(230, 30, 230), grass_checker=False)
    stored = json.loads(json.dumps({"camera": spec.to_dict()}))
    assert CameraSpec.from_run_config(stored) == spec
    assert CameraSpec.from_run_config({"camera": {"metres_per_pixel": 0.4}}) == CameraSpec(
        metres_per_pixel=0.4
    )
    assert CameraSpec().with_overrides("obstacle_rgb=1/2/3,grass_checker=off,size=96") == CameraSpec(
        obstacle_rgb=(1, 2, 3), grass_checker=False, size=96
    )
    for bad in ({"zoom": 2}, {"obstacle_shape": "star"}, {"rows_ahead": 65}, {"obstacle_radius": 0}):
        with pytest.raises(RlcarError):
            CameraSpec.from_dict(bad)


def test_make_env_takes_a_camera_as_a_spec_or_a_run_configs_dict():
    from rlcar_core.envs import make_env

    env = make_env("rlcar", obs="pixels", track_seeds=[3], camera={"size": 32, "rows_ahead": 24})
    obs, _ = env.reset(seed=0)
    assert obs.shape == (32, 32, 3) and env.observation_space.shape == (32, 32, 3)
    assert env.unwrapped.camera == CameraSpec(size=32, rows_ahead=24)
    env.close()
    with pytest.raises(RlcarError, match="rlcar only"):
        make_env("carracing", obs="pixels", camera=CameraSpec())
