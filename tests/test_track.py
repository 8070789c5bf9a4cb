"""Procedural tracks: deterministic, closed, drivable, and train/eval seeds never overlap."""

import numpy as np
import pytest

from rlcar_core.errors import RlcarError
from rlcar_core.sim.track import (
    EVAL_SEED_OFFSET,
    TrackSpec,
    _max_curvature,
    _min_nonlocal_gap,
    evaluation_seeds,
    generate_track,
    training_seeds,
)

SEEDS = [0, 1, 7, 42, EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + 3]


def test_same_seed_same_track():
    a, b = generate_track(5), generate_track(5)
    np.testing.assert_array_equal(a.centreline, b.centreline)
    np.testing.assert_array_equal(a.obstacles, b.obstacles)
    assert not np.array_equal(a.centreline, generate_track(6).centreline)


def test_training_and_evaluation_seeds_never_overlap():
    assert not set(training_seeds(10_000)) & set(evaluation_seeds(10_000))


@pytest.mark.parametrize("seed", SEEDS)
def test_tracks_are_drivable(seed):
    spec = TrackSpec()
    track = generate_track(seed, spec)
    spacing = track.length / spec.num_points
    steps = np.linalg.norm(np.diff(track.centreline, axis=0, append=track.centreline[:1]), axis=1)
    assert steps.max() < 2 * spacing, "the loop must close with evenly spaced points"
    assert _max_curvature(track.centreline, spacing) <= 1.0 / spec.min_turn_radius + 1e-6
    exclude = np.pi * (2 * spec.half_width + spec.min_clearance)
    assert _min_nonlocal_gap(track.centreline, spacing, exclude) >= 2 * spec.half_width + spec.min_clearance
    assert np.abs(track.centreline).max() + spec.half_width < spec.world_half_size


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("radius", [1.3, 2.6, 4.0])
def test_obstacles_sit_on_the_road_and_leave_a_gap(seed, radius):
    track = generate_track(seed, TrackSpec(obstacle_radius=radius))
    for centre, radius in zip(track.obstacles, track.obstacle_radii, strict=True):
        distance_to_centreline = np.linalg.norm(track.centreline - centre, axis=1).min()
        assert distance_to_centreline < track.half_width
        widest_gap = track.half_width + distance_to_centreline - radius
        assert widest_gap > 4.0, "a car (2 m wide) must fit past every obstacle"


def test_bigger_obstacles_grow_away_from_the_gap_a_standard_one_leaves():
    standard, big = (
        generate_track(7),
        generate_track(7, TrackSpec(obstacle_radius=2.6, obstacle_shape="square")),
    )
    np.testing.assert_array_equal(standard.centreline, big.centreline)
    assert big.obstacle_square and not standard.obstacle_square

    def near_edge(track):  # signed distance of each obstacle's near edge past the centre line
        return np.linalg.norm(track.obstacles - standard.obstacles, axis=1), [
            np.linalg.norm(track.centreline - c, axis=1).min() - r
            for c, r in zip(track.obstacles, track.obstacle_radii, strict=True)
        ]

    moved, big_edges = near_edge(big)
    _, standard_edges = near_edge(standard)
    np.testing.assert_allclose(moved, 1.3, atol=1e-4)
    np.testing.assert_allclose(big_edges, standard_edges, atol=0.1)


def test_negative_seed_is_a_user_error():
    with pytest.raises(RlcarError):
        generate_track(-1)
