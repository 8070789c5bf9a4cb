"""bench/curves.py: the cumulative clock across resumed sessions, the summary over seeds, the PNG."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import curves  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def point(env_steps: int, train_seconds: float, progress: float) -> dict:
    return {
        "env_steps": env_steps,
        "train_seconds": train_seconds,
        "wall_seconds": train_seconds + 10.0,
        "progress_mean": progress,
    }


def counters(env_steps: int, train_seconds: float) -> dict:
    """What train-dreamer saves with a checkpoint: session-relative clocks."""
    return {"env_steps": env_steps, "train_seconds": train_seconds, "wall_seconds": train_seconds + 5.0}


def test_a_fresh_session_starts_the_clock_and_the_curve_from_zero():
    results = {"curve": [point(1000, 60.0, 0.1)], "sessions": [{"start_env_steps": 0}]}
    offset = curves.begin_session(results, None)
    assert offset == curves.zero_clock()
    assert results["curve"] == []
    assert len(results["sessions"]) == 1 and results["sessions"][0]["resumed_from"] is None


def test_resumed_sessions_continue_the_clock_of_the_checkpoint_they_resume_from():
    results = {"curve": []}
    first = curves.begin_session(results, None)
    for steps, seconds in ((10_000, 600.0), (20_000, 1200.0), (30_000, 1800.0)):
        results["curve"].append(
            {**point(steps, seconds, 0.2), **curves.cumulative_clock(point(steps, seconds, 0), first)}
        )
    # Killed at 35k steps; the newest checkpoint was saved at 25k steps, 1500 s into the first session.
    second = curves.begin_session(
        results, {"checkpoint": 50, "env_steps": 25_000, "counters": counters(25_000, 1500.0)}
    )
    assert second == {"train_seconds": 1500.0, "wall_seconds": 1505.0}
    assert [p["env_steps"] for p in results["curve"]] == [
        10_000,
        20_000,
    ]  # past the checkpoint: measured again
    assert (
        curves.cumulative_clock({"train_seconds": 100.0, "wall_seconds": 100.0}, second)["train_seconds"]
        == 1600.0
    )
    # The second session saves a checkpoint at 40k steps, 700 s into it, and is killed again.
    third = curves.begin_session(
        results, {"checkpoint": 80, "env_steps": 40_000, "counters": counters(40_000, 700.0)}
    )
    assert third["train_seconds"] == pytest.approx(2200.0)
    assert [s["start_env_steps"] for s in results["sessions"]] == [0, 25_000, 40_000]


def test_a_fallback_to_an_older_checkpoint_uses_the_session_that_wrote_it():
    results = {"curve": []}
    curves.begin_session(results, None)
    curves.begin_session(
        results, {"checkpoint": 50, "env_steps": 25_000, "counters": counters(25_000, 1500.0)}
    )
    # The second session's checkpoints are damaged: the run resumes from 25k again (written by the first).
    again = curves.begin_session(
        results, {"checkpoint": 50, "env_steps": 25_000, "counters": counters(25_000, 1500.0)}
    )
    assert again["train_seconds"] == 1500.0


def test_results_from_before_sessions_existed_resume_with_the_checkpoints_own_clock():
    legacy = {"curve": [point(10_000, 600.0, 0.3), point(20_000, 1200.0, 0.5)]}  # no "sessions" key
    offset = curves.begin_session(
        legacy, {"checkpoint": 50, "env_steps": 20_000, "counters": counters(20_000, 1210.0)}
    )
    assert offset["train_seconds"] == 1210.0
    assert len(legacy["curve"]) == 2 and len(legacy["sessions"]) == 1


def test_unreadable_checkpoint_counters_fall_back_to_the_last_curve_point_before_it():
    results = {"curve": [point(10_000, 600.0, 0.3), point(20_000, 1200.0, 0.5)], "sessions": []}
    offset = curves.begin_session(results, {"checkpoint": 60, "env_steps": 15_000, "counters": None})
    assert offset == {"train_seconds": 600.0, "wall_seconds": 610.0}
    assert [p["env_steps"] for p in results["curve"]] == [10_000]


def three_seeds() -> list[dict]:
    curves_by_seed = {
        0: [point(10_000, 3600.0, 0.5), point(20_000, 7200.0, 0.92)],
        1: [point(10_000, 3000.0, 0.95), point(20_000, 6000.0, 0.97)],
        2: [point(10_000, 3300.0, 0.4)],  # still running: no final rows yet
    }
    finals = {0: {"progress_mean": 0.9}, 1: {"progress_mean": 0.8}, 2: None}
    bests = {0: {"progress_mean": 0.95}, 1: {"progress_mean": 0.85}, 2: None}
    return [
        curves.seed_view(seed, curve, "progress_mean", finals[seed], bests[seed])
        for seed, curve in curves_by_seed.items()
    ]


def test_summary_gives_mean_and_std_across_finished_seeds_and_when_each_reached_the_target():
    views = three_seeds()
    assert views[0]["curve"][1] == {"env_frames": 20_000, "mark": 20_000, "hours": 2.0, "score": 0.92}
    summary = curves.summarize(views, 0.9, {"heuristic": 1.0}, agent="dreamer", env="rlcar")
    assert summary["agent"] == "dreamer" and summary["seeds"] == [0, 1, 2]
    assert summary["finished_seeds"] == [0, 1]
    assert summary["final"] == {"mean": pytest.approx(0.85), "std": pytest.approx(0.05), "seeds": 2}
    assert summary["best"]["mean"] == pytest.approx(0.9)
    assert summary["target_reached_env_frames"] == {"0": 20_000, "1": 10_000, "2": None}
    assert summary["per_seed"]["2"]["final"] is None and len(summary["per_seed"]["2"]["curve"]) == 1
    assert summary["references"] == {"heuristic": 1.0}


def test_summary_of_seeds_without_final_rows_has_no_final_score():
    summary = curves.summarize([curves.seed_view(3, [], "return_mean")], None)
    assert summary["final"] is None and summary["best"] is None
    assert summary["target_reached_env_frames"] == {"3": None}


def test_plot_writes_a_png_with_references_and_target(tmp_path):
    from PIL import Image

    path = curves.plot_curves(
        three_seeds(),
        tmp_path / "plots" / "rlcar-pixels.png",
        title="DreamerV3 on RLCar (pixels)",
        score_label="held-out lap progress",
        references={"heuristic": 1.0, "random": 0.03},
        target=0.9,
    )
    assert path.read_bytes()[:8] == PNG_MAGIC
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 100
    assert [p.name for p in path.parent.iterdir()] == ["rlcar-pixels.png"]  # no temp file left


def test_plot_of_an_empty_curve_still_writes_a_png(tmp_path):
    path = curves.plot_curves([curves.seed_view(0, [], "return_mean")], tmp_path / "empty.png", "t", "return")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_a_stopped_benchmark_is_one_line_and_exit_130(capsys):
    from rlcar_core.loop.outcomes import TrainingInterrupted

    def trainer_stopped():
        raise TrainingInterrupted(
            "interrupted at episode 3 (900 env steps); run the same command again to resume"
        )

    def bare_ctrl_c():
        raise KeyboardInterrupt

    for main in (trainer_stopped, bare_ctrl_c):
        with pytest.raises(SystemExit) as stopped:
            curves.run_resumable(main)
        assert stopped.value.code == 130
        message = capsys.readouterr().err.strip()
        # One line that says once how to go on, whether or not the trainer already said it.
        assert message.count("\n") == 0 and message.count("same command") == 1, message
    assert "episode 3" not in message and "Ctrl-C" in message


def test_compare_curves_marks_a_shift_beyond_two_standard_errors_and_keeps_shared_points_only(tmp_path):
    import compare_curves

    def view(seed, scores, frames=(5000, 10000)):
        curve = [{"env_steps": f, "progress_mean": s} for f, s in zip(frames, scores, strict=True)]
        return curves.seed_view(seed, curve, "progress_mean")

    same = {
        "before": [view(0, [0.1, 0.5]), view(1, [0.2, 0.6])],
        "after": [view(0, [0.15, 0.55]), view(1, [0.1, 0.6])],
    }
    rows = compare_curves.compare(same)
    assert [row["env_frames"] for row in rows] == [5000, 10000]
    assert all(row["within_noise"] for row in rows)
    assert rows[1]["difference"] == pytest.approx(0.025)

    shifted = {
        "before": same["before"],
        "after": [view(0, [0.9, 0.9], frames=(5000, 15000)), view(1, [0.95, 0.9])],
    }
    rows = compare_curves.compare(shifted)
    assert [row["env_frames"] for row in rows] == [5000]  # 10000 is missing from one seed
    assert not rows[0]["within_noise"]

    # train-dreamer evaluates at the first episode end past each mark: seeds line up on the mark.
    def late(seed):
        curve = [{"env_steps": f + 8 * seed, "eval_mark": f, "progress_mean": 0.5} for f in (5000, 10000)]
        return curves.seed_view(seed, curve, "progress_mean")

    rows = compare_curves.compare({"before": [late(0), late(1)], "after": [late(2), late(3)]})
    assert [row["env_frames"] for row in rows] == [5000, 10000]

    png = tmp_path / "cmp.png"
    compare_curves.plot(same, compare_curves.compare(same), png, "t", "progress")
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_compare_curves_refuses_anything_but_two_groups_with_exit_2(monkeypatch, tmp_path, capsys):
    import compare_curves

    monkeypatch.setattr(
        sys, "argv", ["compare_curves.py", "--group", "only", "x.json", "--out", str(tmp_path / "o")]
    )
    with pytest.raises(SystemExit) as stopped:
        compare_curves.main()
    assert stopped.value.code == 2
    assert "exactly two --group" in capsys.readouterr().err


def test_a_jobs_child_gets_the_parents_settings_for_its_one_seed(monkeypatch, tmp_path):
    import dreamer as bench_dreamer

    parent = ["dreamer.py", "--seeds", "0", "1", "--jobs", "2", "--obs", "pixels", "--env-steps", "900"]
    parent += ["--train-ratio", "32", "--set", "model_lr=3e-4", "--root", str(tmp_path), "--fresh"]
    parent += ["--camera", "zoom:obstacle_radius=2", "--prior-laps", "24"]
    monkeypatch.setattr(sys, "argv", parent)
    args = bench_dreamer.parse_args()
    monkeypatch.setattr(sys, "argv", ["dreamer.py", *bench_dreamer.seed_command(args, 1)[2:]])
    child = bench_dreamer.parse_args()
    assert child.seeds == [1] and child.jobs == 1
    names = ("obs", "env_steps", "train_ratio", "overrides", "root", "fresh", "eval_every_steps", "size")
    for name in (*names, "camera", "prior_laps"):
        assert getattr(child, name) == getattr(args, name), name
    # Another camera's row, or one with prior laps, has folders and files of its own: today's row is
    # never resumed by it.
    assert bench_dreamer.seed_folder(child, 1).name == "rlcar-pixels-zoom-obstacle_radius-2-prior24-seed1"
    monkeypatch.setattr(sys, "argv", ["dreamer.py", "--camera", "bogus"])
    with pytest.raises(SystemExit) as stopped:
        bench_dreamer.parse_args()
    assert stopped.value.code == 2
    monkeypatch.setattr(sys, "argv", ["dreamer.py", "--jobs", "0"])
    with pytest.raises(SystemExit) as stopped:
        bench_dreamer.parse_args()
    assert stopped.value.code == 2
    monkeypatch.setattr(sys, "argv", ["dreamer.py", "--prior-laps", "-1"])
    with pytest.raises(SystemExit) as stopped:
        bench_dreamer.parse_args()
    assert stopped.value.code == 2


@pytest.mark.parametrize(
    ("script", "argv", "words"),
    [
        ("worldmodels", ["--generations", "0"], "--generations must be at least 1"),
        ("worldmodels", ["--heuristic-laps", "-1"], "--heuristic-laps must be at least 0"),
        ("worldmodels", ["--camera", "fisheye"], "unknown camera 'fisheye'"),
        ("worldmodels_in_env", ["--popsize", "1"], "--popsize must be at least 2"),
        ("worldmodels_in_env", ["--rollouts", "0"], "--rollouts must be at least 1"),
        ("worldmodels_in_env", ["--max-steps", "0"], "--max-steps must be at least 1"),
        (
            "worldmodels_in_env",
            ["--controller-hidden", "-1"],
            "--controller-hidden must be 0 or more",
        ),
        ("worldmodels_in_env", ["--patience", "-1"], "--patience must be 0 or more"),
    ],
)
def test_bench_worldmodels_refuses_bad_options_with_exit_2_before_any_work(
    monkeypatch, tmp_path, capsys, script, argv, words
):
    bench = importlib.import_module(script)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", "--run-dir", str(tmp_path / "wm"), *argv])
    with pytest.raises(SystemExit) as stopped:
        bench.main()
    assert stopped.value.code == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "wm").exists()


def test_dream_strip_puts_the_asked_steps_side_by_side_and_refuses_missing_ones(
    tmp_path, monkeypatch, capsys
):
    import dream_strip
    import imageio.v3 as iio

    frames = np.stack([np.full((6, 10, 3), step, np.uint8) for step in range(1, 5)])
    video = tmp_path / "dream.gif"
    iio.imwrite(video, frames, extension=".gif")
    strip = dream_strip.dream_strip(video, [2, 4])
    assert strip.shape == (6, 10 + dream_strip.GAP_PIXELS + 10, 3)
    assert strip[0, 0, 0] != strip[0, -1, 0]  # step 2 on the left, step 4 on the right

    out = tmp_path / "strip.png"
    monkeypatch.setattr(sys, "argv", ["dream_strip.py", str(video), "--steps", "0", "9", "-o", str(out)])
    with pytest.raises(SystemExit) as stopped:
        dream_strip.main()
    assert stopped.value.code == 2
    assert "not [0, 9]" in capsys.readouterr().err
    assert not out.exists()


def test_bench_carracing_passes_the_world_models_search_levers_on_and_refuses_bad_ones(monkeypatch, capsys):
    bench_carracing = importlib.import_module("carracing")
    argv = ["carracing.py", "--agent", "worldmodels", "--wm-popsize", "32", "--wm-rollouts", "4"]
    monkeypatch.setattr(sys, "argv", [*argv, "--wm-controller-inputs", "z"])
    settings = bench_carracing.settings_from(bench_carracing.parse_args())
    assert (settings.controller_popsize, settings.controller_rollouts, settings.controller_inputs) == (
        32,
        4,
        "z",
    )
    monkeypatch.setattr(sys, "argv", ["carracing.py"])
    default = bench_carracing.settings_from(bench_carracing.parse_args())
    assert (default.controller_popsize, default.controller_rollouts, default.controller_inputs) == (
        16,
        2,
        "zh",
    )
    for flag, value, words in (
        ("--wm-popsize", "1", "--wm-popsize must be 2 or more"),
        ("--wm-rollouts", "0", "--wm-rollouts must be 1 or more"),
        ("--wm-controller-inputs", "h", "invalid choice"),
    ):
        monkeypatch.setattr(sys, "argv", ["carracing.py", flag, value])
        with pytest.raises(SystemExit) as stopped:
            bench_carracing.parse_args()
        assert stopped.value.code == 2 and words in capsys.readouterr().err


def test_bench_carracing_passes_the_dreamer_size_to_train_dreamer(monkeypatch, capsys):
    bench_carracing = importlib.import_module("carracing")
    monkeypatch.setattr(sys, "argv", ["carracing.py", "--agent", "dreamer", "--dreamer-size", "mid"])
    settings = bench_carracing.settings_from(bench_carracing.parse_args())
    assert bench_carracing.dreamer_options(0, settings, "gymnasium")["size"] == "mid"
    monkeypatch.setattr(sys, "argv", ["carracing.py", "--agent", "dreamer"])
    default = bench_carracing.settings_from(bench_carracing.parse_args())
    assert "size" not in bench_carracing.dreamer_options(0, default, "gymnasium")  # train-dreamer's own
    monkeypatch.setattr(sys, "argv", ["carracing.py", "--dreamer-size", "huge"])
    with pytest.raises(SystemExit) as stopped:
        bench_carracing.parse_args()
    assert stopped.value.code == 2 and "invalid choice" in capsys.readouterr().err
