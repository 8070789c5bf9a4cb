"""Two groups of learning curves side by side: is the second group's curve the first's, within the noise
between seeds? Issue 12 asks that a faster update leaves the DreamerV3 learning curve unchanged; this
reads the per-seed `results.json` of `bench/dreamer.py` runs (any benchmark whose curve points hold
`env_frames`/`env_steps` and the score) made with the code before and after.

At each env-step point both groups share, it prints each group's mean ± std across seeds, the
difference of the means and its standard error (sqrt(s_a^2/n_a + s_b^2/n_b), sample std), and says
whether the difference is within 2 standard errors. It writes the table as JSON and a PNG: each
group's mean with a ±1 std band and its seeds as thin lines.

    python bench/compare_curves.py \\
        --group before runs/check12/before-seed0/results.json runs/check12/before-seed1/results.json ... \\
        --group after runs/check12/after-seed0/results.json ... \\
        --out docs/results/dreamer-speed-equal-curves
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/curves.py, however this is started

import curves  # noqa: E402

from rlcar_core.io.runs import write_json_atomic  # noqa: E402

NOISE_STANDARD_ERRORS = 2.0


def load_group(paths: list[Path], score_key: str) -> list[dict[str, Any]]:
    """One `curves.seed_view` per results file (its frames -> score curve)."""
    views = []
    for path in paths:
        results = json.loads(path.read_text())
        views.append(curves.seed_view(int(results.get("seed", len(views))), results["curve"], score_key))
    return views


def scores_at(views: list[dict[str, Any]], mark: int) -> list[float]:
    return [point["score"] for view in views for point in view["curve"] if point["mark"] == mark]


def group_stats(scores: np.ndarray) -> dict[str, Any]:
    """Mean, sample std (0 for one seed) and the scores of one group at one point."""
    std = float(scores.std(ddof=1)) if len(scores) > 1 else 0.0
    return {"mean": float(scores.mean()), "std": std, "scores": scores.tolist()}


def compare(groups: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A row per scheduled evaluation (env-step mark) that every seed of both groups reached."""
    (name_a, views_a), (name_b, views_b) = groups.items()
    shared = set.intersection(*({p["mark"] for p in view["curve"]} for view in views_a + views_b))
    rows = []
    for frames in sorted(shared):
        a = group_stats(np.asarray(scores_at(views_a, frames)))
        b = group_stats(np.asarray(scores_at(views_b, frames)))
        standard_error = math.sqrt(sum(g["std"] ** 2 / len(g["scores"]) for g in (a, b)))
        difference = b["mean"] - a["mean"]
        rows.append(
            {
                "env_frames": frames,
                name_a: a,
                name_b: b,
                "difference": difference,
                "standard_error": standard_error,
                "within_noise": abs(difference) <= NOISE_STANDARD_ERRORS * standard_error,
            }
        )
    return rows


def plot(
    groups: dict[str, list[dict[str, Any]]], rows: list[dict[str, Any]], path: Path, title: str, label: str
):
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a benchmark machine
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    frames = [row["env_frames"] for row in rows]
    for index, (name, views) in enumerate(groups.items()):
        color = colors[index % len(colors)]
        for view in views:
            axes.plot([p["env_frames"] for p in view["curve"]], [p["score"] for p in view["curve"]],
                      color=color, lw=0.7, alpha=0.45)  # fmt: skip
        mean = np.asarray([row[name]["mean"] for row in rows])
        std = np.asarray([row[name]["std"] for row in rows])
        axes.plot(
            frames, mean, color=color, lw=2, marker="o", ms=4, label=f"{name} (mean of {len(views)} seeds)"
        )
        axes.fill_between(frames, mean - std, mean + std, color=color, alpha=0.15)
    axes.set_xlabel("env frames")
    axes.set_ylabel(label)
    axes.set_xlim(left=0)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    with curves.atomic_path(path) as temp:
        figure.savefig(temp, dpi=110, format="png")
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--group", nargs="+", action="append", required=True, metavar=("NAME", "RESULTS"),
        help="a name, then the results.json of each seed (give exactly two groups)",
    )  # fmt: skip
    parser.add_argument("--score", default="progress_mean", help="the curve points' score key")
    parser.add_argument("--label", default="held-out progress", help="the score's axis label")
    parser.add_argument("--title", default="DreamerV3 learning curve: before and after the faster update")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.png")
    args = parser.parse_args()
    if len(args.group) != 2 or any(len(group) < 2 for group in args.group):
        parser.error("give exactly two --group NAME RESULTS... options, each with at least one results.json")
    groups = {group[0]: load_group([Path(p) for p in group[1:]], args.score) for group in args.group}
    rows = compare(groups)
    if not rows:
        parser.error("the groups' curves share no env-step point")
    names = list(groups)
    print(f"{'env frames':>10} | {names[0]:>15} | {names[1]:>15} | difference ± s.e. | within noise")
    for row in rows:
        cells = [f"{row[name]['mean']:.3f} ± {row[name]['std']:.3f}" for name in names]
        print(
            f"{row['env_frames']:>10} | {cells[0]:>15} | {cells[1]:>15} | "
            f"{row['difference']:+.3f} ± {row['standard_error']:.3f} | {'yes' if row['within_noise'] else 'NO'}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {
        "score": args.score,
        "groups": {name: [view["seed"] for view in views] for name, views in groups.items()},
        "noise_rule": f"|difference| <= {NOISE_STANDARD_ERRORS:g} standard errors",
        "rows": rows,
    }
    write_json_atomic(args.out.with_suffix(".json"), summary)
    plot(groups, rows, args.out.with_suffix(".png"), args.title, args.label)
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
