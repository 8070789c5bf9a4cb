"""The track bank: every track of an environment rasterised once into arrays that jitted code indexes.

Per track the bank holds a packed colour map (what the camera sees), a free-space distance map (metres
to the nearest road edge, obstacle or map border; negative off the road, what the rays march through),
a nearest-centre-line-index map (where along the lap a point is) and the track's vector geometry.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rlcar_core.sim.track import Track, TrackSpec, generate_track

KERB_WIDTH = 0.8
COARSE_CELL = 8  # map pixels per coarse cell side in the nearest-point search
COARSE_CANDIDATES = 48
GRASS_TILE = 6.0  # metres: the checkered grass gives the camera a sense of motion off the road


def _rgb(r: int, g: int, b: int) -> np.uint32:
    return np.uint32(r | (g << 8) | (b << 16) | (255 << 24))


PALETTE = {
    "grass": _rgb(96, 186, 84),
    "grass_light": _rgb(110, 204, 96),
    "road": _rgb(104, 104, 108),
    "kerb_red": _rgb(204, 40, 40),
    "kerb_white": _rgb(236, 236, 236),
    "start_dark": _rgb(20, 20, 20),
    "start_light": _rgb(245, 245, 245),
    "obstacle": _rgb(240, 150, 20),
    "obstacle_rim": _rgb(60, 40, 20),
    "outside": _rgb(0, 0, 0),
}


class TrackBank(NamedTuple):
    """Arrays for T tracks on G x G maps with N centre-line points and K obstacles each."""

    colour: jax.Array  # (T, G, G) uint32, RGBA packed little-endian: bytes are R, G, B, A
    free_space: jax.Array  # (T, G, G) float16, signed distance to the nearest non-drivable point
    nearest_index: jax.Array  # (T, G, G) int16, index of the closest centre-line point
    centreline: jax.Array  # (T, N, 2) float32
    length: jax.Array  # (T,) float32 lap length in metres
    half_width: jax.Array  # (T,) float32
    obstacles: jax.Array  # (T, K, 2) float32
    obstacle_radii: jax.Array  # (T, K) float32: a disc's radius, or half a square's side
    obstacle_headings: jax.Array  # (T, K) float32: the direction of a square's sides along the road
    obstacle_square: jax.Array  # () bool: the obstacles are squares, not discs
    seeds: jax.Array  # (T,) int32
    world_half_size: jax.Array  # () float32
    map_resolution: jax.Array  # () float32

    @property
    def num_tracks(self) -> int:
        return self.colour.shape[0]

    @property
    def map_size(self) -> int:
        return self.colour.shape[1]


def _segment_projection(points, centreline, index):
    """Distance from ``points`` to the closest of the two segments around centre-line point ``index``."""
    n = centreline.shape[0]
    best_dist = jnp.full(points.shape[:-1], jnp.inf)
    for start in (index - 1, index):
        a = centreline[start % n]
        b = centreline[(start + 1) % n]
        ab = b - a
        t = jnp.clip(jnp.sum((points - a) * ab, -1) / jnp.maximum(jnp.sum(ab * ab, -1), 1e-9), 0.0, 1.0)
        dist = jnp.linalg.norm(points - (a + t[..., None] * ab), axis=-1)
        best_dist = jnp.minimum(best_dist, dist)
    return best_dist


def _nearest_centreline_index(pixel_centres, centreline):
    """Index of the closest centre-line point for every pixel, searched coarse-to-fine.

    For a pixel p in a coarse cell with centre c and half-diagonal h, its nearest point q* satisfies
    |c - q*| <= |c - q_c| + 2h, so taking each cell's nearest candidates covers q* wherever few points
    lie that close, i.e. everywhere near the road. Far out on the grass the result may be approximate,
    which nothing depends on.
    """
    size = pixel_centres.shape[0]
    cells = size // COARSE_CELL
    blocks = pixel_centres.reshape(cells, COARSE_CELL, cells, COARSE_CELL, 2).transpose(0, 2, 1, 3, 4)
    cell_centres = blocks.mean(axis=(2, 3)).reshape(-1, 2)
    cell_d2 = jnp.sum((cell_centres[:, None, :] - centreline[None]) ** 2, -1)
    _, candidates = jax.lax.top_k(-cell_d2, COARSE_CANDIDATES)  # (cells^2, C)
    points = blocks.reshape(cells * cells, COARSE_CELL * COARSE_CELL, 2)
    d2 = jnp.sum((points[:, :, None, :] - centreline[candidates][:, None, :, :]) ** 2, -1)
    best = jnp.take_along_axis(candidates[:, None, :], jnp.argmin(d2, axis=-1)[..., None], axis=-1)[..., 0]
    best = best.reshape(cells, cells, COARSE_CELL, COARSE_CELL).transpose(0, 2, 1, 3)
    return best.reshape(size, size)


class Paint(NamedTuple):
    """How the colour map paints the world: what the camera (and `rlcar play`) sees. Geometry (where the
    obstacles are and how large) is the track's; this only picks colours and texture."""

    obstacle: int = int(PALETTE["obstacle"])  # packed RGBA
    obstacle_rim: float = 0.35  # metres of darker rim inside each obstacle's edge (0: none)
    grass_checker: bool = True  # the checkered grass; False paints it one colour


def packed_rgb(rgb: Sequence[int]) -> int:
    r, g, b = (int(c) for c in rgb)
    return int(_rgb(r, g, b))


def obstacle_distance(points, obstacles, radii, headings, square):
    """Signed distance (..., K) from `points` (..., 2) to each obstacle's edge, negative inside: discs,
    or (`square`) squares whose sides run along and across the road at the obstacle."""
    offset = points[..., None, :] - obstacles
    disc = jnp.linalg.norm(offset, axis=-1) - radii
    cos, sin = jnp.cos(headings), jnp.sin(headings)
    along = jnp.abs(offset[..., 0] * cos + offset[..., 1] * sin) - radii
    across = jnp.abs(-offset[..., 0] * sin + offset[..., 1] * cos) - radii
    outside = jnp.sqrt(jnp.square(jnp.maximum(along, 0.0)) + jnp.square(jnp.maximum(across, 0.0)))
    box = outside + jnp.minimum(jnp.maximum(along, across), 0.0)
    return jnp.where(square, box, disc)


@functools.partial(jax.jit, static_argnames="paint")
def _rasterise(
    centreline,
    half_width,
    obstacles,
    obstacle_radii,
    obstacle_headings,
    square,
    pixel_centres,
    half_size,
    paint,
):
    """Rasterise one track onto the map grid."""
    index = _nearest_centreline_index(pixel_centres, centreline)
    centre_dist = _segment_projection(pixel_centres, centreline, index)
    to_obstacle = obstacle_distance(pixel_centres, obstacles, obstacle_radii, obstacle_headings, square)
    obstacle_dist = jnp.min(to_obstacle, axis=-1, initial=jnp.inf)
    border_dist = half_size - jnp.max(jnp.abs(pixel_centres), axis=-1)
    free_space = jnp.minimum(jnp.minimum(half_width - centre_dist, obstacle_dist), border_dist)

    x, y = pixel_centres[..., 0], pixel_centres[..., 1]
    checker = ((jnp.floor(x / GRASS_TILE) + jnp.floor(y / GRASS_TILE)) % 2).astype(bool) & paint.grass_checker
    colour = jnp.where(checker, PALETTE["grass_light"], PALETTE["grass"]).astype(jnp.uint32)
    on_road = centre_dist <= half_width
    colour = jnp.where(on_road, PALETTE["road"], colour)
    kerb = on_road & (centre_dist > half_width - KERB_WIDTH)
    kerb_red = ((index // 3) % 2).astype(bool)
    colour = jnp.where(kerb, jnp.where(kerb_red, PALETTE["kerb_red"], PALETTE["kerb_white"]), colour)
    # A chequered start line two centre-line points deep.
    start = on_road & (index <= 1)
    start_check = ((jnp.floor(x / 1.0) + jnp.floor(y / 1.0)) % 2).astype(bool)
    colour = jnp.where(start, jnp.where(start_check, PALETTE["start_light"], PALETTE["start_dark"]), colour)
    colour = jnp.where(obstacle_dist < 0.0, jnp.uint32(paint.obstacle), colour)
    rim = (obstacle_dist < 0.0) & (obstacle_dist > -paint.obstacle_rim)
    colour = jnp.where(rim, PALETTE["obstacle_rim"], colour)
    colour = jnp.where(border_dist < 0.5, PALETTE["outside"], colour)
    return colour.astype(jnp.uint32), free_space.astype(jnp.float16), index.astype(jnp.int16)


def pixel_centres(spec: TrackSpec) -> np.ndarray:
    """World coordinates of every map pixel: row i is y, column j is x (y grows with the row)."""
    coords = (np.arange(spec.map_size) + 0.5) * spec.map_resolution - spec.world_half_size
    xs, ys = np.meshgrid(coords, coords)
    return np.stack([xs, ys], axis=-1).astype(np.float32)


def build_track_bank(
    tracks_or_seeds: Sequence[int] | Sequence[Track], spec: TrackSpec = TrackSpec(), paint: Paint = Paint()
) -> TrackBank:
    """Generate (if given seeds) and rasterise tracks into one bank, painted as `paint` says."""
    tracks = [t if isinstance(t, Track) else generate_track(int(t), spec) for t in tracks_or_seeds]
    if not tracks:
        raise ValueError("a track bank needs at least one track")
    if len({t.obstacle_square for t in tracks}) > 1:
        raise ValueError("a track bank holds one obstacle shape; these tracks mix discs and squares")
    centres = jnp.asarray(pixel_centres(spec))
    maps = [
        _rasterise(
            jnp.asarray(t.centreline),
            jnp.float32(t.half_width),
            jnp.asarray(t.obstacles),
            jnp.asarray(t.obstacle_radii),
            jnp.asarray(t.obstacle_headings),
            jnp.bool_(t.obstacle_square),
            centres,
            jnp.float32(spec.world_half_size),
            paint,
        )
        for t in tracks
    ]
    colour, free_space, nearest = (jnp.stack(parts) for parts in zip(*maps, strict=True))
    return TrackBank(
        colour=colour,
        free_space=free_space,
        nearest_index=nearest,
        centreline=jnp.asarray(np.stack([t.centreline for t in tracks])),
        length=jnp.asarray([t.length for t in tracks], jnp.float32),
        half_width=jnp.asarray([t.half_width for t in tracks], jnp.float32),
        obstacles=jnp.asarray(np.stack([t.obstacles for t in tracks])),
        obstacle_radii=jnp.asarray(np.stack([t.obstacle_radii for t in tracks])),
        obstacle_headings=jnp.asarray(np.stack([t.obstacle_headings for t in tracks])),
        obstacle_square=jnp.bool_(tracks[0].obstacle_square),
        seeds=jnp.asarray([t.seed for t in tracks], jnp.int32),
        world_half_size=jnp.float32(spec.world_half_size),
        map_resolution=jnp.float32(spec.map_resolution),
    )


def unpack_colour(packed: jax.Array) -> jax.Array:
    """uint32 RGBA words -> uint8 RGB triples (drops alpha)."""
    return jax.lax.bitcast_convert_type(packed, jnp.uint8)[..., :3]
