"""--camera: which RLCar camera (and the world it films) a training command records for its run.

JAX-free, like the command configs that declare the option: `rlcar --help` reads them, and the presets
themselves (`rlcar_core.sim.camera_spec.CAMERA_PRESETS`) live below the simulator, which imports JAX.
So the names are repeated here for the help text (tests/test_camera_wiring.py checks they agree), and
every camera is read and checked by `camera_spec.parse_camera` when the command runs.
"""

from __future__ import annotations

from typing import Any

from rlcar_core.envs.names import EnvName
from rlcar_core.errors import RlcarError
from rlcar_core.loop.options import option

CAMERA_NAMES = (
    "today", "flat", "zoom", "big-flat", "zoom-big", "square", "magenta", "r4", "zoom-96", "visible",
)  # fmt: skip
# What a new run films with when --camera is not given. Pixel runs take "visible" (issue 31: the tiny
# world model sees its 15-pixel obstacles, and none of today's 4-pixel ones). Sensor runs keep today's
# world, the one the shipped sensors agent, `make demo` and recorded human runs were measured in, until
# the sensors agent is retrained among the bigger obstacles.
PIXELS_CAMERA, SENSORS_CAMERA = "visible", "today"
UNRECORDED_CAMERA = "today"  # what runs from before --camera filmed with
CAMERA_HELP = (
    f"RLCar's camera preset: {PIXELS_CAMERA} (default from pixels), {SENSORS_CAMERA} (default from "
    f"sensors), {', '.join(name for name in CAMERA_NAMES if name not in (PIXELS_CAMERA, SENSORS_CAMERA))}"
    "; NAME:field=value,... changes its CameraSpec fields. The run keeps it."
)


def camera_option() -> Any:
    """The --camera field of a command config (None: the run's own camera, else today's)."""
    return option(None, CAMERA_HELP)


def check_camera_request(camera: str | None, env: str) -> None:
    """One clear line for a --camera that names no camera, or that is given for CarRacing-v3."""
    if camera is None:
        return
    if not EnvName.parse(env).has_track_bank:
        raise RlcarError("--camera applies to --env rlcar only; CarRacing-v3 has its own camera")
    from rlcar_core.sim.camera_spec import parse_camera  # here: the simulator imports JAX

    parse_camera(camera)


def default_camera(env: str, obs: str | None) -> str | None:
    """The camera a new run records when none was asked for: on RLCar, the pixel camera where the agent
    reads frames and today's where it reads sensors alone; none on CarRacing-v3."""
    if not EnvName.parse(env).has_track_bank:
        return None
    return SENSORS_CAMERA if obs == "sensors" else PIXELS_CAMERA


def unrecorded_camera(env: str) -> str | None:
    """The camera of a run from before cameras were recorded: today's on RLCar, none on CarRacing-v3."""
    return UNRECORDED_CAMERA if EnvName.parse(env).has_track_bank else None
