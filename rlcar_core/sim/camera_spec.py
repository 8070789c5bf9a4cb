"""What the pixel camera shows, in one place: the camera's geometry and how the world it films looks.

The camera is an honest top-down camera: it draws things where they are and as large as they are. So the
settings that change what it shows are of two kinds:

- the camera itself: frame size, metres per pixel (field of view = size x metres per pixel, square) and
  how many of the rows lie ahead of the car;
- the world: the obstacles' size and shape (bigger obstacles are bigger for collisions and the ray
  sensors too), their colour, the dark rim inside their edge, and the grass's checker pattern.

`CameraSpec()` is today's camera, the one every agent before issue 31 was trained on. A run's
`config.json` records its spec under the key "camera" (`to_dict`); `from_run_config` reads it back and
gives today's camera to a run that recorded none. New pixel runs film with the "visible" preset
(`rlcar_core.envs.camera_option.default_camera`).

`CAMERA_PRESETS` names the cameras worth trying (issue 31's levers); `parse_camera` reads the
`NAME[:field=value,...]` that the training commands' --camera and bench/pixel_probe.py take.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from rlcar_core.errors import RlcarError
from rlcar_core.sim.bank import PALETTE, Paint, packed_rgb, unpack_colour
from rlcar_core.sim.camera import CAMERA_SIZE
from rlcar_core.sim.track import OBSTACLE_SHAPES, TrackSpec

CONFIG_KEY = "camera"  # where a run's config.json records its camera
TODAY_OBSTACLE_RGB = tuple(int(c) for c in unpack_colour(PALETTE["obstacle"]))  # (240, 150, 20)
ROAD_RGB = tuple(int(c) for c in unpack_colour(PALETTE["road"]))


@dataclasses.dataclass(frozen=True)
class CameraSpec:
    size: int = CAMERA_SIZE  # pixels per side of the square frame (64; CarRacing's 96 also works)
    metres_per_pixel: float = 0.6
    rows_ahead: int = 48  # rows of the frame that lie ahead of the car (the rest behind it)
    obstacle_radius: float = 1.3  # metres in the world: a disc's radius, half a square's side
    obstacle_shape: str = "disc"  # or "square" (sides along and across the road)
    obstacle_rgb: tuple[int, int, int] = TODAY_OBSTACLE_RGB
    obstacle_rim: float = 0.35  # metres of dark rim inside each obstacle's edge; 0 for none
    grass_checker: bool = True  # False: the grass is one colour (texture that carries no information)
    num_obstacles: int = 5  # per track

    def __post_init__(self):
        object.__setattr__(self, "obstacle_rgb", tuple(int(c) for c in self.obstacle_rgb))
        if int(self.size) != self.size or self.size < 8:
            raise RlcarError(f"camera size must be a whole number of pixels >= 8, got {self.size}")
        if not 0 <= self.rows_ahead <= self.size:
            raise RlcarError(f"camera rows_ahead must be in 0..{self.size}, got {self.rows_ahead}")
        if not self.metres_per_pixel > 0:
            raise RlcarError(f"camera metres_per_pixel must be > 0, got {self.metres_per_pixel}")
        if not self.obstacle_radius > 0:
            raise RlcarError(f"obstacle_radius must be > 0 metres, got {self.obstacle_radius}")
        if self.obstacle_shape not in OBSTACLE_SHAPES:
            raise RlcarError(
                f"unknown obstacle shape {self.obstacle_shape!r}; choose one of {', '.join(OBSTACLE_SHAPES)}"
            )
        if len(self.obstacle_rgb) != 3 or not all(0 <= c <= 255 for c in self.obstacle_rgb):
            raise RlcarError(f"obstacle_rgb must be three values in 0..255, got {self.obstacle_rgb}")
        if self.obstacle_rim < 0:
            raise RlcarError(f"obstacle_rim must be >= 0 metres, got {self.obstacle_rim}")
        if self.num_obstacles < 0:
            raise RlcarError(f"num_obstacles must be >= 0, got {self.num_obstacles}")

    # -- where each setting goes ----------------------------------------------------------------

    @property
    def field_of_view(self) -> float:
        """Metres of world across the frame (and along it: the frame is square)."""
        return self.size * self.metres_per_pixel

    @property
    def obstacle_pixels_across(self) -> float:
        """How many camera pixels an obstacle spans."""
        return 2 * self.obstacle_radius / self.metres_per_pixel

    def track_spec(self, base: TrackSpec = TrackSpec()) -> TrackSpec:
        """`base` with this spec's obstacles (size, shape, count)."""
        return dataclasses.replace(
            base,
            obstacle_radius=float(self.obstacle_radius),
            obstacle_shape=self.obstacle_shape,
            num_obstacles=int(self.num_obstacles),
        )

    def paint(self) -> Paint:
        return Paint(
            obstacle=packed_rgb(self.obstacle_rgb),
            obstacle_rim=float(self.obstacle_rim),
            grass_checker=bool(self.grass_checker),
        )

    def env_overrides(self) -> dict[str, Any]:
        """`EnvParams` fields (the frame size goes to `RLCar(camera_size=...)`)."""
        return {
            "camera_resolution": float(self.metres_per_pixel),
            "camera_forward_rows": int(self.rows_ahead),
        }

    # -- runs -----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "obstacle_rgb": list(self.obstacle_rgb)}

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any] | None) -> CameraSpec:
        """A spec from `to_dict`'s fields; missing ones keep today's values, unknown ones are an error."""
        fields = dict(fields or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise RlcarError(
                f"unknown camera setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**fields)

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any] | None) -> CameraSpec:
        """The camera a run's config.json recorded; today's camera when it recorded none."""
        return cls.from_dict((config or {}).get(CONFIG_KEY))

    def with_overrides(self, text: str) -> CameraSpec:
        """This spec with `field=value,...` changed (values as JSON, or bare words; rgb as r/g/b)."""
        fields = self.to_dict()
        for item in (part for part in text.split(",") if part.strip()):
            name, sep, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not sep or name not in fields:
                raise RlcarError(
                    f"bad camera override {item!r}: expected field=value, field one of {', '.join(fields)}"
                )
            fields[name] = _parse_value(name, value)
        return self.from_dict(fields)


def _parse_value(name: str, value: str) -> Any:
    if name == "obstacle_rgb":
        return [int(c) for c in value.split("/")]
    if name == "obstacle_shape":
        return value
    if name == "grass_checker":
        if value.lower() not in ("true", "false", "1", "0", "on", "off"):
            raise RlcarError(f"grass_checker is on or off, got {value!r}")
        return value.lower() in ("true", "1", "on")
    try:
        number = float(value)
    except ValueError:
        raise RlcarError(f"camera setting {name} needs a number, got {value!r}") from None
    return int(number) if name in ("size", "rows_ahead", "num_obstacles") else number


# The named cameras (issue 31's levers). Each changes what the honest camera films: the camera's
# geometry, or the world itself (bigger obstacles are bigger for collisions and rays too).
# rlcar_core.envs.camera_option.CAMERA_NAMES repeats the names for `rlcar --help`, which cannot import
# this module without JAX.
_FLAT = dict(grass_checker=False, obstacle_rim=0.0)  # no texture without information, no dark rim
CAMERA_PRESETS: Mapping[str, CameraSpec] = MappingProxyType(
    {
        "today": CameraSpec(),  # the camera (and world) of every agent before issue 31, and of sensor runs
        "flat": CameraSpec(**_FLAT),  # today's geometry; plain grass, obstacles one solid colour
        "zoom": CameraSpec(metres_per_pixel=0.35, rows_ahead=56, **_FLAT),  # 7.4 px across, 19.6 m ahead
        "big-flat": CameraSpec(obstacle_radius=2.6, **_FLAT),  # 8.7 px across at today's 0.6 m a pixel
        "zoom-big": CameraSpec(metres_per_pixel=0.4, rows_ahead=56, obstacle_radius=2.2, **_FLAT),  # 11 px
        "square": CameraSpec(
            metres_per_pixel=0.45, rows_ahead=56, obstacle_radius=2.0, obstacle_shape="square", **_FLAT
        ),
        "magenta": CameraSpec(obstacle_rgb=(230, 30, 230), **_FLAT),  # contrast with road and grass alike
        "r4": CameraSpec(obstacle_radius=4.0),  # the control of docs/results.md: 74 % recalled at 3,000
        "zoom-96": CameraSpec(size=96, metres_per_pixel=0.3, rows_ahead=80, **_FLAT),  # CarRacing's size
        # The pixel runs' default since issue 31: obstacles 15 px across, which the tiny world model
        # draws (78 % of their pixels in bench/pixel_probe.py's sweep; today's 4 px: none).
        "visible": CameraSpec(metres_per_pixel=0.4, rows_ahead=56, obstacle_radius=3.0, **_FLAT),
    }
)


def camera_preset(name: str) -> CameraSpec:
    """The preset called `name`; one clear line for any other name."""
    if name not in CAMERA_PRESETS:
        raise RlcarError(f"unknown camera {name!r}; choose one of {', '.join(CAMERA_PRESETS)}")
    return CAMERA_PRESETS[name]


def parse_camera(text: str) -> CameraSpec:
    """`NAME[:field=value,...]`: a preset, with those fields changed (see `CameraSpec.with_overrides`)."""
    name, _, fields = text.partition(":")
    return camera_preset(name.strip()).with_overrides(fields)
