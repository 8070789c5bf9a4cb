"""bench/pixel_probe.py: the data alignment it feeds the world model and the obstacle scores."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import pixel_probe  # noqa: E402


def road_frame_with_obstacle() -> tuple[np.ndarray, np.ndarray]:
    frame = np.broadcast_to(pixel_probe.ROAD_RGB, (1, 64, 64, 3)).astype(np.uint8).copy()
    frame[0, 30:34, 30:34] = pixel_probe.OBSTACLE_RGB
    mask = np.zeros((1, 64, 64), bool)
    mask[0, 30:34, 30:34] = True
    return frame, mask


def test_a_perfect_reconstruction_recalls_every_obstacle_pixel():
    frame, _ = road_frame_with_obstacle()
    scores = pixel_probe.summarise([pixel_probe.frame_sums(frame, frame)])
    assert scores["obstacle_recall"] == 1.0
    assert scores["obstacle_pixels_per_frame"] == 16
    assert scores["recon_mse_per_pixel"] == 0.0


def test_a_reconstruction_that_paints_road_over_the_obstacle_recalls_none():
    frame, mask = road_frame_with_obstacle()
    road_only = np.broadcast_to(pixel_probe.ROAD_RGB, frame.shape)
    scores = pixel_probe.summarise([pixel_probe.frame_sums(frame, road_only)])
    assert scores["obstacle_recall"] == 0.0
    expected = np.square((pixel_probe.OBSTACLE_RGB - pixel_probe.ROAD_RGB) / 255.0).sum()
    assert np.isclose(scores["obstacle_mse_per_pixel"], expected)
    assert np.isclose(scores["recon_mse_per_pixel"], expected * mask.sum() / 4096)


def test_episodes_are_aligned_as_the_world_model_reads_them(tmp_path):
    steps = 5
    np.savez(
        tmp_path / "episode_000000.npz",
        obs=np.zeros((steps, 64, 64, 3), np.uint8),
        action=np.arange(3 * (steps - 1), dtype=np.float32).reshape(steps - 1, 3),
        reward=np.arange(1, steps, dtype=np.float32),
        terminated=np.array([False, False, False, True]),
        truncated=np.zeros(steps - 1, bool),
    )
    (episode,) = pixel_probe.load_episodes(tmp_path)
    # obs_t comes with the action that led to it and the reward received on arriving there.
    assert np.array_equal(episode["action"][0], np.zeros(3))
    assert np.array_equal(episode["action"][1], [0.0, 1.0, 2.0])
    assert np.array_equal(episode["reward"], [0.0, 1.0, 2.0, 3.0, 4.0])
    assert np.array_equal(episode["is_first"], [True, False, False, False, False])
    assert np.array_equal(episode["is_terminal"], [False, False, False, False, True])
