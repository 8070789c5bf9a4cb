"""bench/pixel_probe.py: the data alignment it feeds the world model and the obstacle scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rlcar_core.io.data.episodes import DatasetError

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


def test_pictures_show_each_episode_at_its_most_obstacles(tmp_path):
    frame, _ = road_frame_with_obstacle()
    road = np.broadcast_to(pixel_probe.ROAD_RGB, frame.shape).astype(np.uint8)
    episode = np.concatenate([road, frame, road])
    real, decoded = pixel_probe.showcase(episode, episode[::-1])
    assert np.array_equal(real, frame[0]) and np.array_equal(decoded, frame[0])
    picture = tmp_path / "pictures" / "tiny@3000.png"
    pixel_probe.save_pictures(picture, [(real, decoded), (real, road[0])], zoom=2)
    import imageio.v2 as imageio

    image = imageio.imread(picture)
    # Two rows (real, rebuilt) of 128-pixel frames, with a label strip on their left.
    assert image.shape[0] == 2 * 128 and image.shape[1] > 8 * 128


@pytest.mark.parametrize("spec", ["0", "16:recon_focus=1"])
def test_the_autoencoder_control_rebuilds_frames_as_pixels(spec):
    import argparse

    frames = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    args = argparse.Namespace(seed=0, batch_size=2, batch_length=2, updates=2)
    decode = pixel_probe.train_autoencoder(spec, [{"obs": frames}], args)
    rebuilt = np.asarray(decode(frames[:3]))
    assert rebuilt.shape == (3, 64, 64, 3)
    assert rebuilt.min() >= 0 and rebuilt.max() <= 255 and np.array_equal(rebuilt, np.round(rebuilt))


def test_episodes_are_aligned_as_the_world_model_reads_them(tmp_path):
    steps = 5
    np.savez(
        tmp_path / "episode_000000.npz",
        obs=np.zeros((steps, 64, 64, 3), np.uint8),
        action=np.array([[0.5, 0.0, 1.0], [-0.5, 1.0, 0.0], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]], np.float32),
        reward=np.arange(1, steps, dtype=np.float32),
        terminated=np.array([False, False, False, True]),
        truncated=np.zeros(steps - 1, bool),
    )
    (episode,) = pixel_probe.load_episodes(tmp_path)
    # obs_t comes with the action that led to it (in the actor's space: pedals from [0, 1] to [-1, 1])
    # and the reward received on arriving there, as train-dreamer replays it.
    assert np.array_equal(episode["action"][0], np.zeros(3))
    assert np.array_equal(episode["action"][1], [0.5, -1.0, 1.0])
    assert np.array_equal(episode["action"][2], [-0.5, 1.0, -1.0])
    assert np.array_equal(episode["reward"], [0.0, 1.0, 2.0, 3.0, 4.0])
    assert np.array_equal(episode["is_first"], [True, False, False, False, False])
    assert np.array_equal(episode["is_terminal"], [False, False, False, False, True])


def test_a_missing_or_damaged_dataset_is_one_line_and_exit_code_2(tmp_path):
    script = Path(__file__).resolve().parents[1] / "bench" / "pixel_probe.py"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    empty = subprocess.run(
        [sys.executable, str(script), "--data", str(tmp_path), "--out", str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert empty.returncode == 2
    assert (
        empty.stderr.strip() == f"error: no episodes under {tmp_path}: run rlcar collect first (see --help)"
    )
    (tmp_path / "episode_000000.npz").write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match="damaged"):
        pixel_probe.load_episodes(tmp_path)


@pytest.mark.parametrize("radius", [[], ["abc"], ["-1"]])
def test_collect_obstacle_radius_refuses_a_missing_or_bad_radius(radius):
    script = Path(__file__).resolve().parents[1] / "bench" / "collect_obstacle_radius.py"
    result = subprocess.run([sys.executable, str(script), *radius], capture_output=True, text=True)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: the first argument is the obstacle radius in metres, a positive number"
    )


def test_a_camera_sweep_writes_one_row_per_camera(tmp_path, capsys, monkeypatch):
    """A sweep in miniature: two cameras (one a 16-pixel frame of square obstacles), 3 short episodes
    on one track each; each writes its own JSON and a row of the table. The world model is stood in
    for by a perfect one (the training and scoring code is the probe's own, tested above), so the
    smoke takes seconds."""
    import argparse

    frames_seen = []

    def perfect_model(config, episodes, args):
        frames_seen.append(episodes[0]["obs"].shape[1:])
        assert config.obs_shape == episodes[0]["obs"].shape[1:]
        return None, [{"wm/loss": 0.0}]

    def perfect_scores(config, params, episodes, seed, obstacle_rgb):
        parts = [pixel_probe.frame_sums(e["obs"], e["obs"], obstacle_rgb) for e in episodes]
        return pixel_probe.summarise(parts), [pixel_probe.showcase(e["obs"], e["obs"]) for e in episodes]

    monkeypatch.setattr(pixel_probe, "train_world_model", perfect_model)
    monkeypatch.setattr(pixel_probe, "dreamer_scores", perfect_scores)

    args = argparse.Namespace(
        variant=["tiny"],
        episodes=3,
        heldout_episodes=1,
        num_envs=3,
        num_tracks=1,
        max_steps=12,
        updates=2,
        batch_size=2,
        batch_length=4,
        seed=0,
        out_dir=tmp_path / "sweep",
        pictures=None,
    )
    cameras = [pixel_probe.parse_camera("today"), pixel_probe.parse_camera("square:size=16,rows_ahead=12")]
    assert cameras[1][1].obstacle_shape == "square" and cameras[1][1].size == 16
    pixel_probe.camera_sweep(args, cameras)
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert set(sweep["rows"]) == {"today [tiny]@2", "square:size=16,rows_ahead=12 [tiny]@2"}
    for row in sweep["rows"].values():
        assert row["collect"]["episodes"] == 3 and 0.0 <= row["obstacle_recall"] <= 1.0
        assert row["camera_facts"]["obstacle_pixels_across"] > 0
    assert len(list((tmp_path / "sweep").glob("*.json"))) == 3
    assert frames_seen == [(64, 64, 3), (16, 16, 3)]
    table = capsys.readouterr().out.splitlines()[-3:]
    assert table[0].split()[:2] == ["camera", "px/obstacle"] and "today [tiny]" in table[1]


def test_an_unknown_camera_is_one_line_and_exit_code_2(tmp_path):
    script = Path(__file__).resolve().parents[1] / "bench" / "pixel_probe.py"
    result = subprocess.run(
        [sys.executable, str(script), "--camera", "fisheye", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: unknown camera 'fisheye'")


def test_a_96_pixel_camera_gets_a_cnn_that_fits_it():
    assert pixel_probe.variant_config("tiny", 96).cnn_min_resolution == 6
    assert pixel_probe.variant_config("tiny", 64).obs_shape == (64, 64, 3)


def test_laps_on_explicit_track_seeds_are_other_tracks_than_the_training_banks():
    """--heldout-tracks scores on tracks no training drove: the laps there differ from a training
    track's, which the deterministic heuristic drives the same way every time."""
    from rlcar_core.sim.camera_spec import parse_camera

    camera = parse_camera("zoom:size=16,rows_ahead=12")
    seeds = [pixel_probe.HELDOUT_TRACK_SEED, pixel_probe.HELDOUT_TRACK_SEED + 1]
    heldout = pixel_probe.collect_laps(camera, 2, 2, 30, seed=0, track_seeds=seeds)
    training = pixel_probe.collect_laps(camera, 2, 2, 30, seed=0, num_tracks=2)
    assert [lap["obs"].shape[1:] for lap in heldout] == [(16, 16, 3)] * 2
    assert all(lap["is_first"][0] for lap in heldout)
    assert not any(np.array_equal(a["obs"][:5], b["obs"][:5]) for a in heldout for b in training)
