"""`rlcar runs`: find the run directories, their checkpoints and their best held-out results.

Everything is read as plain files (config.json, metrics.jsonl, the data manifest, orbax's JSON metadata
in each checkpoint step), never through JAX or orbax, so listing a hundred runs takes a moment.

Shipped agents (`pretrained/<agent>-<env>-<obs>/`, see `rlcar_core.apps.pretrained`) are runs too: their
agent.json card stands in for the metrics they do not carry (training frames, the score row).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rlcar_core.apps.pretrained import CARD_FILE, read_card
from rlcar_core.errors import RlcarError
from rlcar_core.io.checkpoint_files import damage_of, read_step_metrics, step_folders
from rlcar_core.io.runs import CONFIG_FILE, LOCK_FILE, METRICS_FILE, RUNS_ROOT, RunDir

RUN_KINDS = ("dreamer", "worldmodels", "play")
# Checkpoint folders by kind; `best` is the highest best_metric except for losses (lower is better).
_MODEL_KIND = {
    "dreamer": "dreamer",
    "vae": "worldmodels",
    "rnn": "worldmodels",
    "mdnrnn": "worldmodels",  # the MDN-RNN's checkpoint folder (worldmodels.storage.RNN_MODEL)
    "controller": "worldmodels",
}
_LOWER_IS_BETTER = {"vae", "rnn"}
NEWEST_SHOWN = 3
_MAX_DEPTH = 3  # how deep under the root runs are looked for (runs/<name> or runs/<group>/<name>)


@dataclass
class ModelCheckpoints:
    steps: list[int]  # intact steps, oldest first
    newest: list[str]  # the newest few, newest first: ["ep40", "ep36"]
    latest: str | None
    best: str | None
    best_metric: float | None
    damaged: dict[str, str] = field(default_factory=dict)  # {"ep12": "missing state/manifest.ocdbt"}


@dataclass
class RunSummary:
    path: str
    kind: str  # dreamer | worldmodels | play | unknown
    env: str | None
    obs: str | None
    episodes: int | None
    env_steps: int | None
    best_progress: float | None  # best held-out progress (0..1 of a lap), from the evaluations logged
    best_progress_checkpoint: str | None  # the checkpoint saved with that evaluation, when known
    checkpoints: dict[str, ModelCheckpoints]
    modified: str  # ISO time of the newest file
    modified_timestamp: float
    in_use_by: str | None  # "pid 1234 (train-dreamer)" while a writer holds the run
    shipped: dict[str, Any] | None = None  # a shipped agent's card (agent.json), else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _find(config: dict[str, Any], key: str, depth: int = 3) -> Any:
    """`key` at the top of config.json or in its sections, nearest first
    (`{"env": ...}`, `{"collect": {"env": ...}}`, `{"dreamer": {"train": {"env": ...}}}`)."""
    if isinstance(config.get(key), str):
        return config[key]
    if depth > 1:
        for section in config.values():
            if isinstance(section, dict) and (found := _find(section, key, depth - 1)) is not None:
                return found
    return None


def _model_checkpoints(model: str, directory: Path) -> ModelCheckpoints | None:
    folders = step_folders(directory)
    if not folders:
        return None
    damaged = {step: reason for step, folder in folders.items() if (reason := damage_of(folder))}
    intact = sorted(step for step in folders if step not in damaged)
    sign = -1.0 if model in _LOWER_IS_BETTER else 1.0
    ranked = [
        (sign * metric, step)
        for step in intact
        if (metric := read_step_metrics(folders[step])["best_metric"]) is not None
    ]
    best = max(ranked)[1] if ranked else None
    return ModelCheckpoints(
        steps=intact,
        newest=[f"ep{step}" for step in reversed(intact[-NEWEST_SHOWN:])],
        latest=f"ep{intact[-1]}" if intact else None,
        best=f"ep{best}" if best is not None else None,
        best_metric=read_step_metrics(folders[best])["best_metric"] if best is not None else None,
        damaged={f"ep{step}": reason for step, reason in sorted(damaged.items())},
    )


def _metrics_summary(run: RunDir) -> dict[str, Any]:
    """Counters from the newest records and the best held-out evaluation in metrics.jsonl."""
    summary: dict[str, Any] = {"episodes": None, "env_steps": None, "best_progress": None, "best_at": None}
    for record in run.iter_metrics():
        if isinstance(record.get("episode"), int):
            summary["episodes"] = max(summary["episodes"] or 0, record["episode"])
        if isinstance(record.get("env_steps"), int):
            summary["env_steps"] = max(summary["env_steps"] or 0, record["env_steps"])
        progress = record.get("progress_mean", record.get("eval/progress_mean"))
        if isinstance(progress, int | float) and math.isfinite(progress):
            if summary["best_progress"] is None or progress > summary["best_progress"]:
                summary["best_progress"] = float(progress)
                summary["best_at"] = record.get("episode")
    return summary


def _newest_mtime(path: Path) -> float:
    """The newest modification time among the run's files, two levels into its sub-folders (enough to
    see new checkpoints and episodes without walking every array file)."""
    newest = path.stat().st_mtime
    for entry in _scan(path):
        newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
        if entry.is_dir(follow_symlinks=False):
            for inner in _scan(Path(entry.path)):
                newest = max(newest, inner.stat(follow_symlinks=False).st_mtime)
    return newest


def _scan(path: Path) -> list[os.DirEntry]:
    try:
        return list(os.scandir(path))
    except OSError:
        return []


def _holder(run: RunDir) -> str | None:
    """Who holds the writer lock now, or None: the lock file names the last holder, and that process
    still being alive means it still writes. (Taking the lock, even shared and for a moment, could make
    a writer starting at that instant fail, so listing never touches it.)"""
    text = (
        (run.path / LOCK_FILE).read_text(errors="replace").strip() if (run.path / LOCK_FILE).is_file() else ""
    )
    match = re.match(r"pid (\d+)", text)
    if not match:
        return None
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return None
    except (PermissionError, OverflowError):
        pass  # alive but someone else's
    return text


def _human_runs(path: Path) -> list[Path]:
    """Recorded `play --manual` runs: `<run>/human/*.npz` (or loose in the run folder)."""
    found = [*path.glob("*.npz"), *(path / "human").glob("*.npz")]
    return sorted(entry for entry in found if not entry.name.startswith("."))


def _kind(path: Path, config: dict[str, Any], models: dict[str, ModelCheckpoints]) -> str:
    kinds = {_MODEL_KIND[model] for model in models}
    if "dreamer" in kinds or "dreamer" in config:
        return "dreamer"
    if kinds or (path / "data" / "manifest.json").is_file() or {"collect", "vae"} & set(config):
        return "worldmodels"
    if _human_runs(path):
        return "play"
    return "unknown"


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (
        (path / CONFIG_FILE).is_file()
        or (path / METRICS_FILE).is_file()
        or (path / "checkpoints").is_dir()
        or (path / CARD_FILE).is_file()
        or (path / "data" / "manifest.json").is_file()
        or bool(_human_runs(path))
    )


def _section(document: Any, *keys: str) -> dict[str, Any]:
    for key in keys:
        document = document.get(key) if isinstance(document, dict) else None
    return document if isinstance(document, dict) else {}


def _card_summary(card: dict[str, Any], kind: str) -> tuple[Any, Any, float | None, str | None]:
    """(episodes, env steps, best progress, its checkpoint) of a shipped agent, from its card: the
    score row's progress when one was given, else the held-out progress the training run measured."""
    episodes = _section(card, "checkpoint_metrics", "dreamer", "metrics").get("episode")
    progress = _section(card, "score").get("progress_mean")
    if progress is None and kind == "dreamer":
        progress = card.get("best_metric")
    if progress is None and kind == "worldmodels":
        progress = _section(card, "checkpoint_metrics", "controller", "metrics").get("eval_progress")
    progress = float(progress) if isinstance(progress, int | float) and math.isfinite(progress) else None
    checkpoint = (
        card.get("checkpoint") if isinstance(card.get("checkpoint"), str) and progress is not None else None
    )
    return episodes, card.get("env_frames"), progress, checkpoint


def summarize_run(path: str | os.PathLike) -> RunSummary:
    """Everything `rlcar runs` shows about one run directory."""
    path = Path(path)
    run = RunDir(path)
    config = _read_json(run.config_path)
    config = config if isinstance(config, dict) else {}
    models = {}
    checkpoints_root = path / "checkpoints"
    for entry in sorted(_scan(checkpoints_root), key=lambda entry: entry.name):
        if entry.is_dir() and entry.name in _MODEL_KIND:
            if (found := _model_checkpoints(entry.name, Path(entry.path))) is not None:
                models[entry.name] = found
    kind = _kind(path, config, models)
    metrics = _metrics_summary(run)
    episodes, env_steps = metrics["episodes"], metrics["env_steps"]
    manifest = _read_json(path / "data" / "manifest.json")
    if isinstance(manifest, dict) and kind == "worldmodels":
        episodes = manifest.get("num_episodes", episodes)
        env_steps = manifest.get("total_steps", env_steps)
    if kind == "play":
        episodes = len(_human_runs(path))
    best_progress, best_checkpoint = metrics["best_progress"], None
    if metrics["best_at"] is not None and any(metrics["best_at"] in found.steps for found in models.values()):
        best_checkpoint = f"ep{metrics['best_at']}"
    elif kind == "dreamer" and "dreamer" in models and models["dreamer"].best is not None:
        # The DreamerV3 trainer ranks its checkpoints by held-out progress itself.
        best_checkpoint = models["dreamer"].best
        if best_progress is None:
            best_progress = models["dreamer"].best_metric
    card = read_card(path)
    if card is not None:
        # A shipped agent carries no metrics.jsonl: its card says how it was trained and how it scores.
        episodes, env_steps, best_progress, best_checkpoint = _card_summary(card, kind)
    modified = _newest_mtime(path)
    return RunSummary(
        path=str(path),
        kind=kind,
        env=_find(card or {}, "env", depth=1) or _find(config, "env"),
        obs=_find(card or {}, "obs", depth=1) or _find(config, "obs"),
        episodes=episodes if isinstance(episodes, int) else None,
        env_steps=env_steps if isinstance(env_steps, int) else None,
        best_progress=best_progress,
        best_progress_checkpoint=best_checkpoint,
        checkpoints=models,
        modified=datetime.fromtimestamp(modified).isoformat(timespec="seconds"),
        modified_timestamp=modified,
        in_use_by=_holder(run),
        shipped=card,
    )


def find_run_dirs(root: str | os.PathLike = RUNS_ROOT) -> list[Path]:
    """Run directories at or under `root` (up to a few levels), sorted by path."""
    root = Path(root)
    if not root.exists():
        return []
    if not root.is_dir():
        raise RlcarError(f"--root {root} is a file, not a folder of runs")
    found, frontier = [], [(root, 0)]
    while frontier:
        folder, depth = frontier.pop()
        if is_run_dir(folder):
            found.append(folder)
            continue  # a run's own sub-folders (data, checkpoints) are not runs
        if depth < _MAX_DEPTH:
            frontier += [
                (Path(entry.path), depth + 1)
                for entry in _scan(folder)
                if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(".")
            ]
    return sorted(found)


def list_runs(root: str | os.PathLike = RUNS_ROOT, kind: str | None = None) -> list[RunSummary]:
    """Every run under `root` (optionally only one kind), newest first."""
    if kind is not None and kind not in RUN_KINDS:
        raise RlcarError(f"unknown run kind {kind!r}; choose one of {', '.join(RUN_KINDS)}")
    runs = [summarize_run(path) for path in find_run_dirs(root)]
    runs = [run for run in runs if kind is None or run.kind == kind]
    return sorted(runs, key=lambda run: run.modified_timestamp, reverse=True)


def most_recent_trained_run(root: str | os.PathLike = RUNS_ROOT) -> Path | None:
    """The DreamerV3 or World Models run whose newest intact checkpoint is the most recent, or None.
    `rlcar dream` uses it when no --run-dir is given."""
    newest: tuple[float, Path] | None = None
    for path in find_run_dirs(root):
        for entry in _scan(path / "checkpoints"):
            if entry.name not in _MODEL_KIND or not entry.is_dir():
                continue
            for folder in step_folders(entry.path).values():
                if damage_of(folder) is None:
                    stamp = folder.stat().st_mtime
                    if newest is None or stamp > newest[0]:
                        newest = (stamp, path)
    return newest[1] if newest else None
