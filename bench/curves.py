"""Learning curves of the learning benchmarks (bench/dreamer.py, bench/carracing.py): one seed's clock
across resumed sessions, the summary over seeds, and the PNG.

A seed's results.json holds a `curve` (one point per evaluation: `env_steps`, `env_frames`,
`train_seconds`, `wall_seconds` and the scores) and a list of `sessions`. A benchmark cut off and rerun
continues from the run's newest checkpoint, but the trainer's clocks restart at zero in every session.
Each session therefore stores an `offset`: the cumulative clock at the checkpoint it resumed from, which
is the offset of the session that wrote that checkpoint plus the checkpoint's own (session-relative)
counters. The curve's time axis is then cumulative and counts what an uninterrupted run would have
spent: the work done after the resumed checkpoint and lost to the kill is not counted. Files written
before sessions existed are one session with a zero offset.

    offset = begin_session(results, resumed)        # at the trainer's "start" record
    point = {**record_scores, **cumulative_clock(record, offset)}

`seed_view` reduces a seed's results to what the plot and the summary read; `summarize` gives the
final and best scores as mean ± std across seeds and the env frames at which each seed first reached
the target; `plot_curves` draws score against env frames and against hours, one line per seed.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlcar_core.io.atomic import atomic_path, write_json_atomic

CLOCK_KEYS = ("train_seconds", "wall_seconds")
# The curve's time axis: collection and training together; evaluations are not counted.
TIME_KEY = "train_seconds"
STOPPED_EXIT_CODE = 130  # a benchmark stopped by Ctrl-C, saved and ready to resume


def zero_clock() -> dict[str, float]:
    return {key: 0.0 for key in CLOCK_KEYS}


def clock_at_checkpoint(sessions: Sequence[dict[str, Any]], counters: dict[str, Any]) -> dict[str, float]:
    """The cumulative clock at a checkpoint whose saved counters (`env_steps` and session-relative
    `train_seconds`/`wall_seconds`) are `counters`.

    The checkpoint was written by the last session that started before its env steps (a session that
    resumed from it started exactly at them)."""
    writer = zero_clock()
    for session in sessions:
        if session["start_env_steps"] < counters["env_steps"]:
            writer = session["offset"]
    return {key: float(writer[key]) + float(counters.get(key, 0.0)) for key in CLOCK_KEYS}


def _clock_from_curve(curve: Sequence[dict[str, Any]], env_steps: int) -> dict[str, float]:
    """A lower bound when the checkpoint's counters are unreadable: the clock of the last curve point
    at or before the checkpoint."""
    before = [point for point in curve if point["env_steps"] <= env_steps]
    if not before:
        return zero_clock()
    return {key: float(before[-1].get(key, 0.0)) for key in CLOCK_KEYS}


def begin_session(results: dict[str, Any], resumed: dict[str, Any] | None) -> dict[str, float]:
    """Record a new training session in `results` (in place) and return its clock offset.

    `resumed`: None when the trainer starts from nothing (any earlier curve is dropped: it described
    a run that no longer exists); else `{"checkpoint": step, "env_steps": n, "counters": saved counters
    or None}` for the checkpoint it continues from. Curve points past that checkpoint are dropped:
    they are measured again."""
    if resumed is None:
        results["curve"], results["sessions"] = [], []
        offset = zero_clock()
        start_env_steps, checkpoint = 0, None
    else:
        sessions = results.setdefault("sessions", [])
        start_env_steps, checkpoint = int(resumed["env_steps"]), resumed["checkpoint"]
        counters = resumed.get("counters")
        if counters and "env_steps" in counters:
            offset = clock_at_checkpoint(sessions, counters)
        else:
            offset = _clock_from_curve(results.get("curve", []), start_env_steps)
        results["curve"] = [p for p in results.get("curve", []) if p["env_steps"] <= start_env_steps]
    results["sessions"].append(
        {
            "start_env_steps": start_env_steps,
            "resumed_from": checkpoint,
            "offset": offset,
            "started_unix": time.time(),
        }
    )
    return offset


def cumulative_clock(record: dict[str, Any], offset: dict[str, float]) -> dict[str, float]:
    """A trainer record's session-relative clock made cumulative."""
    return {key: float(record[key]) + float(offset[key]) for key in CLOCK_KEYS}


# -- across seeds ----------------------------------------------------------------------------------


def seed_view(
    seed: int,
    curve: Sequence[dict[str, Any]],
    score_key: str,
    final: dict[str, Any] | None = None,
    best: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What the summary and the plot read of one seed: its curve as (env frames, mark, hours, score), and
    the final and best evaluations (dicts holding `score_key`, or None while the seed is running)."""
    points = [
        {
            "env_frames": frames,
            # The scheduled mark a step-scheduled evaluation stands for (train-dreamer evaluates at the
            # first episode end past it, a little later in every seed): seeds line up on it.
            "mark": int(point.get("eval_mark") or frames),
            "hours": float(point.get(TIME_KEY, 0.0)) / 3600.0,
            "score": float(point[score_key]),
        }
        for point in curve
        if point.get(score_key) is not None
        for frames in [int(point["env_frames"] if "env_frames" in point else point["env_steps"])]
    ]
    return {
        "seed": seed,
        "curve": points,
        "final": None if final is None else float(final[score_key]),
        "best": None if best is None else float(best[score_key]),
    }


def mean_std(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "seeds": len(values)}


def first_reaching(curve: Sequence[dict[str, Any]], target: float) -> int | None:
    """The env frames of the first curve point at or above `target` (None if never)."""
    for point in curve:
        if point["score"] >= target:
            return point["env_frames"]
    return None


def summarize(
    views: Sequence[dict[str, Any]],
    target: float | None,
    references: dict[str, float] | None = None,
    **about: Any,
) -> dict[str, Any]:
    """Final and best score as mean ± std (population std) across the seeds that have them, the env
    frames at which each seed first reached `target`, the references and the single-seed curves.
    `about` (agent, env, obs, score...) is copied in as is."""
    finals = [view["final"] for view in views if view["final"] is not None]
    bests = [view["best"] for view in views if view["best"] is not None]
    return {
        **about,
        "seeds": [view["seed"] for view in views],
        "finished_seeds": [view["seed"] for view in views if view["final"] is not None],
        "final": mean_std(finals),
        "best": mean_std(bests),
        "target": target,
        "target_reached_env_frames": {
            str(view["seed"]): None if target is None else first_reaching(view["curve"], target)
            for view in views
        },
        "references": dict(references or {}),
        "per_seed": {
            str(view["seed"]): {"final": view["final"], "best": view["best"], "curve": view["curve"]}
            for view in views
        },
    }


# -- the picture -----------------------------------------------------------------------------------


def write_summary(
    views: Sequence[dict[str, Any]],
    summary_path: Path,
    png_path: Path,
    *,
    target: float | None,
    references: dict[str, float],
    title: str,
    score_label: str,
    about: dict[str, Any],
    score_format: str = ".3f",
) -> dict[str, Any]:
    """`summarize` written to `summary_path` (atomically), `plot_curves` to `png_path`, and the final
    and best rows printed; returns the summary."""
    summary = summarize(views, target, references, **about)
    write_json_atomic(summary_path, summary)
    plot_curves(views, png_path, title=title, score_label=score_label, references=references, target=target)
    for name in ("final", "best"):
        row = summary[name]
        if row is not None:
            print(
                f"{name:>5}: {about.get('score', 'score')} {row['mean']:{score_format}} ± "
                f"{row['std']:{score_format}} over {row['seeds']} seed(s)"
            )
    print(f"wrote {summary_path} and {png_path}")
    return summary


def plot_curves(
    views: Sequence[dict[str, Any]],
    path: str | Path,
    title: str,
    score_label: str,
    references: dict[str, float] | None = None,
    target: float | None = None,
) -> Path:
    """Two panels, score against env frames and against hours of collection and training, one line
    per seed; references as dashed and the target as a dotted horizontal line. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a benchmark machine
    import matplotlib.pyplot as plt

    figure, (by_frames, by_hours) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, view in enumerate(views):
        curve = view["curve"]
        color = colors[index % len(colors)]
        label = f"seed {view['seed']}"
        scores = [p["score"] for p in curve]
        style = {"marker": "o", "ms": 3, "color": color, "label": label}
        by_frames.plot([p["env_frames"] for p in curve], scores, **style)
        by_hours.plot([p["hours"] for p in curve], scores, **style)
    gray_levels = ("0.35", "0.6", "0.8")
    for axes in (by_frames, by_hours):
        for index, (name, value) in enumerate(sorted((references or {}).items())):
            if value is not None and math.isfinite(value):
                axes.axhline(value, ls="--", lw=1, color=gray_levels[index % 3], label=name)
        if target is not None:
            axes.axhline(target, ls=":", lw=1.5, color="crimson", label=f"target {target:g}")
        axes.grid(alpha=0.3)
        axes.set_xlim(left=0)
    by_frames.set_xlabel("env frames")
    by_hours.set_xlabel("hours of collection + training (evaluations not counted)")
    by_frames.set_ylabel(score_label)
    by_hours.legend(loc="best", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temp:
        figure.savefig(temp, dpi=110, format="png")
    plt.close(figure)
    return path


def run_resumable(main: Callable[[], None]) -> None:
    """Runs a benchmark's `main`; Ctrl-C (the trainer saved first) is one line and exit 130, since
    rerunning the same command resumes."""
    try:
        main()
    except KeyboardInterrupt as error:
        # A trainer's interruption already says how to resume; a bare Ctrl-C says nothing.
        print(f"stopped: {str(error) or 'Ctrl-C; rerun the same command to continue'}", file=sys.stderr)
        sys.exit(STOPPED_EXIT_CODE)
