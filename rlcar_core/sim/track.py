"""Procedural race tracks: closed Perlin-noise loops with obstacles, generated once on the CPU.

A track is a star-shaped loop ``r(theta)`` around the map centre whose radius is modulated by 2-D Perlin
noise sampled on a circle, so the loop closes by construction. Candidates that a car could not drive
(too tight a corner, two stretches of road too close together, road leaving the map) are rejected and
the next attempt for the same seed is tried, so ``generate_track(seed)`` is deterministic.
"""

from __future__ import annotations

import dataclasses

import noise
import numpy as np

from rlcar_core.errors import RlcarError

# Seeds of training tracks are [0, EVAL_SEED_OFFSET); held-out evaluation tracks start here, so the two
# sets can never overlap however many tracks either bank holds.
EVAL_SEED_OFFSET = 1_000_000
OBSTACLE_SHAPES = ("disc", "square")
STANDARD_OBSTACLE_RADIUS = 1.3  # metres: RLCar's obstacles; bigger ones keep its gaps (_place_obstacles)


@dataclasses.dataclass(frozen=True)
class TrackSpec:
    """Shape of the tracks and of the map they are drawn on (metres)."""

    num_points: int = 512  # centre-line samples, evenly spaced by arc length
    base_radius: float = 60.0
    radius_noise: float = 0.35  # relative amplitude of the radius modulation
    noise_frequency: float = 1.0  # radius of the circle walked in noise space: higher = more bends
    noise_octaves: int = 1
    half_width: float = 5.5
    num_obstacles: int = 5
    obstacle_radius: float = STANDARD_OBSTACLE_RADIUS  # metres: half the side of a square obstacle
    obstacle_shape: str = "disc"  # or "square", its sides along and across the road
    obstacle_clear_start: float = 50.0  # no obstacle in the first metres after the start line
    min_turn_radius: float = 13.0  # tightest allowed centre-line radius of curvature
    min_clearance: float = 8.0  # gap between the edges of two non-adjacent stretches of road
    world_half_size: float = 100.0  # the map spans [-h, h]^2
    map_resolution: float = 0.5  # metres per map pixel
    max_attempts: int = 200

    @property
    def map_size(self) -> int:
        return int(round(2 * self.world_half_size / self.map_resolution))

    def __post_init__(self):
        if self.obstacle_shape not in OBSTACLE_SHAPES:
            raise RlcarError(
                f"unknown obstacle shape {self.obstacle_shape!r}; choose one of {', '.join(OBSTACLE_SHAPES)}"
            )
        if not self.obstacle_radius > 0:
            raise RlcarError(f"obstacle_radius must be > 0 metres, got {self.obstacle_radius}")


@dataclasses.dataclass(frozen=True)
class Track:
    """One drivable loop: the centre line runs counter-clockwise and starts at the start line."""

    seed: int
    centreline: np.ndarray  # (N, 2) float32 points, evenly spaced by arc length
    length: float  # lap length in metres
    half_width: float
    obstacles: np.ndarray  # (K, 2) float32 centres, on the road
    obstacle_radii: np.ndarray  # (K,) float32
    obstacle_headings: np.ndarray  # (K,) float32 direction of the road at each obstacle (square sides)
    obstacle_square: bool = False

    @property
    def tangent_angles(self) -> np.ndarray:
        forward = np.roll(self.centreline, -1, axis=0) - self.centreline
        return np.arctan2(forward[:, 1], forward[:, 0]).astype(np.float32)


def _polar_radii(rng: np.random.Generator, spec: TrackSpec, thetas: np.ndarray) -> np.ndarray:
    # Walking a circle in noise space gives a periodic signal, hence a closed loop.
    centre = rng.uniform(-1000.0, 1000.0, size=2)
    base = int(rng.integers(0, 255))
    raw = np.array(
        [
            noise.pnoise2(
                centre[0] + spec.noise_frequency * np.cos(t),
                centre[1] + spec.noise_frequency * np.sin(t),
                octaves=spec.noise_octaves,
                base=base,
            )
            for t in thetas
        ]
    )
    # Perlin output rarely reaches +-0.5; normalise so every track uses the full amplitude.
    raw = raw / max(np.abs(raw).max(), 1e-6) * 0.5
    return spec.base_radius * (1.0 + 2.0 * spec.radius_noise * raw)


def _resample_by_arc_length(points: np.ndarray, num_points: int) -> tuple[np.ndarray, float]:
    closed = np.concatenate([points, points[:1]], axis=0)
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    cumulative = np.concatenate([[0.0], np.cumsum(seg)])
    length = float(cumulative[-1])
    targets = np.linspace(0.0, length, num_points, endpoint=False)
    x = np.interp(targets, cumulative, closed[:, 0])
    y = np.interp(targets, cumulative, closed[:, 1])
    return np.stack([x, y], axis=1), length


def _max_curvature(points: np.ndarray, spacing: float, baseline: float = 4.0) -> float:
    """Largest curvature of the circle through points ``baseline`` metres apart: what a car must turn."""
    k = max(1, int(round(baseline / spacing)))
    a, b, c = np.roll(points, k, axis=0), points, np.roll(points, -k, axis=0)
    ab, bc, ca = (np.linalg.norm(u - v, axis=1) for u, v in ((a, b), (b, c), (c, a)))
    twice_area = np.abs((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))
    return float(np.max(2.0 * twice_area / np.maximum(ab * bc * ca, 1e-9)))


def _min_nonlocal_gap(points: np.ndarray, spacing: float, exclude_arc: float) -> float:
    """Smallest distance between centre-line points that are far apart along the loop."""
    n = len(points)
    diff = points[:, None, :] - points[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))
    index_gap = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    arc_gap = np.minimum(index_gap, n - index_gap) * spacing
    return float(dist[arc_gap > exclude_arc].min(initial=np.inf))


def _place_obstacles(rng: np.random.Generator, spec: TrackSpec, centreline: np.ndarray, length: float):
    n = len(centreline)
    spacing = length / n
    usable = length - spec.obstacle_clear_start - 20.0
    # Evenly spread slots with jitter keep obstacles apart so the car always has room to recover.
    slots = spec.obstacle_clear_start + (
        np.arange(spec.num_obstacles) + rng.uniform(0.2, 0.8, spec.num_obstacles)
    ) * (usable / max(spec.num_obstacles, 1))
    idx = (slots / spacing).astype(int) % n
    forward = np.roll(centreline, -1, axis=0)[idx] - centreline[idx]
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    left = np.stack([-forward[:, 1], forward[:, 0]], axis=1)
    # Each obstacle blocks the racing line on one side, so a car has to steer around it, while the gap on
    # the other side stays several car widths wide.
    side = rng.choice([-1.0, 1.0], size=spec.num_obstacles)
    # An obstacle bigger than the standard one grows away from the gap it leaves: its near edge and the
    # gap stay where a standard one's would be (the same rng draws), its far side covers more road.
    grow = max(spec.obstacle_radius - STANDARD_OBSTACLE_RADIUS, 0.0)
    offset = side * (rng.uniform(0.5, 2.5, spec.num_obstacles) + grow)
    centres = centreline[idx] + left * offset[:, None]
    radii = np.full(spec.num_obstacles, spec.obstacle_radius)
    headings = np.arctan2(forward[:, 1], forward[:, 0])
    return centres.astype(np.float32), radii.astype(np.float32), headings.astype(np.float32)


def _candidate(rng: np.random.Generator, spec: TrackSpec) -> tuple[np.ndarray, float] | None:
    thetas = np.linspace(0.0, 2 * np.pi, 720, endpoint=False)
    radii = _polar_radii(rng, spec, thetas)
    outer_limit = spec.world_half_size - spec.half_width - 6.0
    if radii.min() < 2.5 * spec.half_width + spec.min_clearance or radii.max() > outer_limit:
        return None
    # Rotate so the start line is somewhere random on the loop, not always on the +x axis.
    phase = rng.uniform(0.0, 2 * np.pi)
    dense = np.stack([radii * np.cos(thetas + phase), radii * np.sin(thetas + phase)], axis=1)
    centreline, length = _resample_by_arc_length(dense, spec.num_points)
    spacing = length / spec.num_points
    if _max_curvature(centreline, spacing) > 1.0 / spec.min_turn_radius:
        return None
    exclude = np.pi * (spec.half_width * 2 + spec.min_clearance)
    if _min_nonlocal_gap(centreline, spacing, exclude) < 2 * spec.half_width + spec.min_clearance:
        return None
    return centreline.astype(np.float32), length


def generate_track(seed: int, spec: TrackSpec = TrackSpec()) -> Track:
    """Build the drivable track for ``seed``; the same seed always gives the same track."""
    if seed < 0:
        raise RlcarError(f"track seed must be >= 0, got {seed}")
    for attempt in range(spec.max_attempts):
        rng = np.random.default_rng([seed, attempt])
        candidate = _candidate(rng, spec)
        if candidate is None:
            continue
        centreline, length = candidate
        obstacles, radii, headings = _place_obstacles(rng, spec, centreline, length)
        return Track(
            seed,
            centreline,
            length,
            spec.half_width,
            obstacles,
            radii,
            headings,
            spec.obstacle_shape == "square",
        )
    raise RlcarError(
        f"no drivable track found for seed {seed} in {spec.max_attempts} attempts; loosen TrackSpec"
    )


def training_seeds(count: int, start: int = 0) -> list[int]:
    return list(range(start, start + count))


def evaluation_seeds(count: int, start: int = 0) -> list[int]:
    return list(range(EVAL_SEED_OFFSET + start, EVAL_SEED_OFFSET + start + count))
