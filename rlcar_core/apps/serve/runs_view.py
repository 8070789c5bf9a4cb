"""What the dashboard shows: the run listing of ``rlcar runs`` and chart series read from metrics.jsonl.

The listing itself is ``rlcar_core.apps.runs`` (the same one the CLI prints); this module only turns
its rows and a run's metrics records into JSON for the page.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from rlcar_core.apps.serve.paths import relative_name
from rlcar_core.io.runs import RunDir

# Which agent drives from a run of each kind (see rlcar_core.agents.LEARNED_AGENT_LOADERS).
AGENT_FOR_KIND = {"dreamer": "dreamer", "worldmodels": "worldmodel", "worldmodel": "worldmodel"}
BUILTIN_DRIVERS = ("heuristic", "random")
BUILTIN_DRIVER_ENVS = {"heuristic": ("rlcar",), "random": ("rlcar", "carracing")}
LOSS_SUFFIX = "loss"


def _as_dict(row: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    if hasattr(row, "_asdict"):
        return dict(row._asdict())
    return dict(row)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):
        return _json_ready(value.item())
    return value


def list_run_rows(root: Path) -> list[dict[str, Any]]:
    """Every run under ``root`` as ``rlcar runs`` lists it, each named by its path below the root."""
    from rlcar_core.apps.runs import list_runs

    rows = []
    for row in list_runs(root):
        fields = _as_dict(row)
        path = Path(fields.get("path") or fields.get("run_dir") or fields.get("run"))
        if not path.is_absolute():
            path = path if path.exists() else root / path
        try:
            fields["name"] = relative_name(root, path)
        except ValueError:
            continue  # the listing follows no links out of the root, but the page never shows one that did
        fields["path"] = fields["name"]
        fields["checkpoint_summary"] = checkpoint_summary(fields.get("checkpoints") or {})
        rows.append(_json_ready(fields))
    return rows


def drivers(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Who can drive in the live view: the built-in drivers, then each checkpoint of each learned run."""
    # "envs": where each can drive (the heuristic reads RLCar's ray sensors; a learned agent, its run's env).
    choices = [
        {
            "label": name,
            "agent": name,
            "run": None,
            "checkpoint": None,
            "envs": list(BUILTIN_DRIVER_ENVS[name]),
        }
        for name in BUILTIN_DRIVERS
    ]
    for row in rows:
        agent = AGENT_FOR_KIND.get(str(row.get("kind")))
        if agent is None:
            continue
        for checkpoint in _checkpoint_names(row.get("checkpoints") or {}, agent):
            choices.append(
                {
                    "label": f"{row['name']}: {checkpoint}",
                    "agent": agent,
                    "run": row["name"],
                    "checkpoint": checkpoint,
                    "envs": [str(row.get("env") or "rlcar")],
                    "obs": row.get("obs"),  # the latent view lists the pixel agents only
                }
            )
    return choices


# The model whose checkpoints a learned driver loads, for each kind of run.
DRIVING_MODEL = {"dreamer": "dreamer", "worldmodel": "controller"}


def _checkpoint_names(checkpoints: dict[str, Any], agent: str) -> list[str]:
    """``best`` and ``latest`` first, then every ``epN`` of the model the agent drives with."""
    model = checkpoints.get(DRIVING_MODEL.get(agent, agent))
    if not isinstance(model, dict) or not model.get("steps"):
        return []
    named = [name for name in ("best", "latest") if model.get(name)]
    return named + [f"ep{step}" for step in model["steps"]]


def checkpoint_summary(checkpoints: dict[str, Any]) -> str:
    """``dreamer: best ep36, latest ep40 (12 saved)`` for the runs table."""
    parts = []
    for model, found in checkpoints.items():
        if not isinstance(found, dict):
            continue
        named = ", ".join(f"{key} {found[key]}" for key in ("best", "latest") if found.get(key))
        parts.append(f"{model}: {named} ({len(found.get('steps') or [])} saved)")
    return "; ".join(parts)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def metric_series(run: RunDir, since: int = 0) -> dict[str, Any]:
    """Chart points from the run's records ``since`` onwards (the page asks for what it lacks).

    x is env steps (every trainer counts them; World Models stages fall back to their own step).
    """
    evals: dict[str, list] = {"x": [], "progress": [], "return": []}
    episodes: dict[str, list] = {"x": [], "progress": [], "return": []}
    losses: dict[str, Any] = {"x": [], "series": {}}
    count = 0
    for index, record in enumerate(run.iter_metrics()):
        count = index + 1
        if index < since:
            continue
        x = _number(record.get("env_steps"))
        if x is None:
            x = _number(record.get("step"))
        if x is None:
            continue
        kind = record.get("kind")
        if kind == "eval":
            evals["x"].append(x)
            evals["progress"].append(_number(record.get("progress_mean")))
            evals["return"].append(_number(record.get("return_mean")))
        elif kind == "episode":
            episodes["x"].append(x)
            episodes["progress"].append(_number(record.get("progress")))
            episodes["return"].append(_number(record.get("return")))
        names = [k for k in record if k.endswith(LOSS_SUFFIX) and _number(record[k]) is not None]
        if names:
            row = len(losses["x"])
            losses["x"].append(x)
            for name in names:
                column = losses["series"].setdefault(name, [None] * row)
                column.append(_number(record[name]))
            for column in losses["series"].values():
                column.extend([None] * (row + 1 - len(column)))
    return {"count": max(count, since), "eval": evals, "episodes": episodes, "losses": losses}


VIDEO_SUFFIXES = (".mp4", ".gif")
MAX_VIDEOS_LISTED = 100


def videos_on_disk(root: Path, run_names: list[str]) -> list[dict[str, Any]]:
    """The videos under the root (``videos/`` and each run's ``videos/``), newest first: what the
    page lists whether or not this server rendered them (its job history dies with it)."""
    folders = [root / "videos", *(root / name / "videos" for name in run_names)]
    found = []
    for run, folder in zip(["", *run_names], folders, strict=True):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".") or path.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            try:
                name = relative_name(root, path)  # a link that leads out of the root is not listed
                stat = path.stat()
            except (ValueError, OSError):
                continue
            if path.is_file():
                found.append({"file": name, "run": run, "size": stat.st_size, "modified": stat.st_mtime})
    found.sort(key=lambda video: -video["modified"])
    return found[:MAX_VIDEOS_LISTED]
