"""Pretrained agents that ship with the project: one checkpoint of a trained run, copied into a small
run directory (`pretrained/<agent>-<env>-<obs>/`, kept in git) that eval, play, dream and export-video
read as it is, with no training.

A shipped directory::

    <dest>/config.json                     the source run's config.json, byte for byte
    <dest>/agent.json                      the card (`CARD_FILE`): source run, checkpoint steps, env/obs,
                                           training env frames and wall time, score row, notes
    <dest>/checkpoints/dreamer/<step>/     DreamerV3: exactly one orbax step
    <dest>/checkpoints/{vae,mdnrnn,controller}/<step>/
                                           World Models: the controller step and exactly the VAE and
                                           MDN-RNN steps it was trained on (the steps keep their numbers,
                                           so the controller's recorded `vae_step`/`rnn_step` still hold)

Each step is written through `CheckpointStore.save` (not copied as files), which is where it is slimmed:

- **Optimiser state zeroed** (Adam's moments of every model) and, for DreamerV3, the **slow critic**:
  acting, dreaming and the world model read only the parameters. They are zeroed rather than removed
  so the tree keeps its structure and every loader restores it unchanged into the same abstract state;
  orbax compresses the zeros to almost nothing. A shipped agent is for eval/play/dream/export-video:
  training resumed from it would restart Adam from zero moments (and DreamerV3 has no replay buffer
  there), so train from the source run instead.
- Left out altogether: metrics.jsonl, TensorBoard events, rollout data, the DreamerV3 replay buffer,
  latents, videos, every other checkpoint step.
- Optionally (`float16=True`) floating-point arrays are stored as float16, halving the size; orbax
  casts them back to float32 on restore, so loaders see the usual dtypes. The agent then acts with its
  parameters rounded to float16: re-run `rlcar eval` on the shipped directory for its score.

`best` and `latest` both name the single step: its `best_metric` is kept, or set to 0.0 when the source
step was never ranked (the card's `best_metric` stays null then).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from rlcar_core.errors import RlcarError
from rlcar_core.io.runs import CONFIG_FILE, METRICS_FILE, RunDir

CARD_FILE = "agent.json"
CARD_FORMAT = "rlcar-pretrained-v1"
PRETRAINED_ROOT = Path("pretrained")
MAX_SHIPPED_BYTES = 10 * 1024 * 1024
# The summary fields of an `rlcar eval --json` document kept as a card's score row (not per_episode).
SCORE_FIELDS = (
    "env",
    "agent",
    "checkpoint",
    "seed",
    "first_track",
    "actions",
    "episodes",
    "return_mean",
    "return_std",
    "progress_mean",
    "progress_std",
    "lap_rate",
    "crash_rate",
    "lap_time_mean",
    "steps_mean",
)


class ShippedPart(NamedTuple):
    """One model's checkpoint, restored and slimmed, ready to save into the shipped directory."""

    model: str  # the checkpoint folder's name: dreamer, vae, mdnrnn, controller
    step: int
    state: Any
    config: dict[str, Any]  # the config item saved with the checkpoint
    record: dict[str, Any]  # {"best_metric": float | None, "metrics": dict} saved with it
    best_mode: str


class TrainedAgent(NamedTuple):
    agent: str  # the --agent name that drives it: dreamer | worldmodel
    kind: str  # the run kind: dreamer | worldmodels
    env: str
    obs: str
    step: int  # the agent's own checkpoint (DreamerV3's, or the controller's)
    parts: list[ShippedPart]
    env_frames: int | None
    wall_seconds: float | None
    stripped: list[str]


# -- reading cards (no JAX) ------------------------------------------------------------------------


def read_card(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The agent.json card of a shipped directory, or None when there is none (or it is unreadable)."""
    try:
        card = json.loads((Path(run_dir) / CARD_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


def is_shipped(run_dir: str | os.PathLike) -> bool:
    return read_card(run_dir) is not None


def default_destination(agent: str, env: str, obs: str, root: str | os.PathLike = PRETRAINED_ROOT) -> Path:
    """Where a shipped agent goes by convention: `pretrained/<agent>-<env>-<obs>`."""
    return Path(root) / f"{agent}-{env}-{obs}"


def score_row(document: Any) -> dict[str, Any]:
    """The card's score row from an `rlcar eval --json` document (or any dict of such fields): its
    summary numbers only, the per-episode list left out."""
    if not isinstance(document, dict):
        raise RlcarError("a score must be a JSON object, e.g. the output of `rlcar eval --json`")
    if "agents" in document:
        raise RlcarError("the score compares several agents; evaluate the shipped agent alone (one --agent)")
    row = {name: document[name] for name in SCORE_FIELDS if name in document}
    if not row:
        raise RlcarError(
            f"the score has none of the fields of `rlcar eval --json` ({', '.join(SCORE_FIELDS)})"
        )
    return row


def load_score(path: str | os.PathLike) -> dict[str, Any]:
    """The `rlcar eval --json` document in a file, checked to hold a score row (see `score_row`). It is
    returned whole: `ship_agent` checks its `agent`, `run_dir` and `checkpoint` against what it ships."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise RlcarError(f"no score file at {path}") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise RlcarError(f"{path} is not a JSON file") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise RlcarError(f"{path} is not valid JSON: {error}") from None
    score_row(document)
    return document


def _same_folder(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    try:
        return Path(first).resolve() == Path(second).resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare the paths as written
        return Path(first).absolute() == Path(second).absolute()


def check_score_matches(document: dict[str, Any], trained: TrainedAgent, source: Path) -> None:
    """Refuse a score that was not measured on the agent being shipped: `rlcar eval --json` output of
    another agent (e.g. the heuristic), another run, or another checkpoint of this run. The score may
    also come from a shipped copy of this very checkpoint (e.g. to score its float16 weights)."""
    shipped = f"the {trained.agent} agent at ep{trained.step} of {source}"
    hint = f"score it with `rlcar eval --run-dir {source} --checkpoint ep{trained.step} --json`"
    agent, run_dir, checkpoint = document.get("agent"), document.get("run_dir"), document.get("checkpoint")
    if agent != trained.agent:
        measured = f"of agent {agent}" if isinstance(agent, str) else "of no named agent"
        raise RlcarError(f"the score is {measured}, not {shipped}; {hint}")
    if not isinstance(run_dir, str) or not run_dir:
        raise RlcarError(f"the score names no run, so it may not be {shipped}; {hint}")
    card = read_card(run_dir)
    if card is not None and not _same_folder(run_dir, source):
        # A shipped copy: it must be this run's checkpoint, whatever name the evaluation used.
        if not (
            card.get("agent") == trained.agent
            and isinstance(card.get("source_run"), str)
            and _same_folder(card["source_run"], source)
            and card.get("checkpoint") == f"ep{trained.step}"
        ):
            raise RlcarError(f"the score was measured on the shipped agent {run_dir}, not {shipped}; {hint}")
        return
    if not _same_folder(run_dir, source):
        raise RlcarError(f"the score was measured on the run {run_dir}, not {shipped}; {hint}")
    if not isinstance(checkpoint, str | int) or isinstance(checkpoint, bool) or checkpoint == "":
        raise RlcarError(f"the score names no checkpoint, so it may not be {shipped}; {hint}")
    step = _score_step(checkpoint, trained, source)
    if step is None:
        raise RlcarError(
            f"the score was measured on checkpoint {checkpoint}, which {source} no longer holds, "
            f"not on {shipped}; {hint}"
        )
    if step != trained.step:
        measured = f"ep{step}" if str(checkpoint) == f"ep{step}" else f"{checkpoint} (now ep{step})"
        raise RlcarError(f"the score was measured on checkpoint {measured}, not {shipped}; {hint}")


def _score_step(checkpoint: str | int, trained: TrainedAgent, source: Path) -> int | None:
    """The step the score's `checkpoint` names in the shipped model's folder of `source` now; None when it
    names none there (another folder, or a step since pruned)."""
    from rlcar_core.io.checkpoint import CheckpointError, open_checkpoint

    own = trained.parts[-1]
    folder = RunDir(source).checkpoint_dir(own.model)
    try:
        store, step = open_checkpoint(str(checkpoint), folder, best_mode=own.best_mode)
    except CheckpointError:
        return None
    with store:
        return step if _same_folder(store.directory, folder) else None


# -- restoring the one checkpoint of each model ---------------------------------------------------


def _zeros(tree: Any) -> Any:
    import jax
    import numpy as np

    # NumPy on the host: eager jnp would compile one kernel per distinct leaf shape.
    return jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), tree)


def _as_float16(tree: Any) -> Any:
    import jax
    import numpy as np

    return jax.tree.map(
        lambda leaf: np.asarray(leaf).astype(np.float16) if leaf.dtype == np.float32 else leaf, tree
    )


def _checked_reference(run: RunDir, checkpoint: str) -> str | int:
    """`checkpoint` as a name in `run`; a path to a step folder must lie in `run` itself, whose
    config.json is the one shipped."""
    from rlcar_core.io.checkpoint import parse_checkpoint_reference

    reference = parse_checkpoint_reference(checkpoint)
    if reference.directory is None:
        return reference.name
    if reference.run_dir is None or reference.run_dir.resolve() != run.path.resolve():
        raise RlcarError(f"--checkpoint {checkpoint} is not a checkpoint of {run.path}; name one in that run")
    return reference.name


def _dreamer_agent(run: RunDir, checkpoint: str) -> TrainedAgent:
    from rlcar_core.dreamer.checkpoints import MODEL, abstract_trainer_state, checkpoint_dir
    from rlcar_core.dreamer.config import DreamerConfig
    from rlcar_core.io.checkpoint import open_checkpoint

    store, step = open_checkpoint(_checked_reference(run, checkpoint), checkpoint_dir(run), best_mode="max")
    with store:
        saved = store.restore_config(step)
        if "dreamer" not in saved:
            raise RlcarError(f"checkpoint ep{step} in {store.shown} holds no DreamerV3 model")
        model_config = DreamerConfig.from_dict(saved["dreamer"])
        state = store.restore(step, abstract_trainer_state(model_config))
        record = store.metrics(step)
    agent = state.agent._replace(
        opt_states=_zeros(state.agent.opt_states), slow_critic=_zeros(state.agent.slow_critic)
    )
    metrics = record["metrics"]
    return TrainedAgent(
        agent="dreamer",
        kind="dreamer",
        env=str(saved["env"]),
        obs=model_config.obs_kind,
        step=step,
        parts=[ShippedPart(MODEL, step, state._replace(agent=agent), saved, record, "max")],
        env_frames=_int_or_none(metrics.get("env_steps")),
        wall_seconds=_float_or_none(metrics.get("wall_seconds")),
        stripped=[
            "optimiser state (zeroed)",
            "slow critic (zeroed)",
            "replay buffer",
            "metrics",
            "other checkpoints",
        ],
    )


def _worldmodel_agent(run: RunDir, checkpoint: str) -> TrainedAgent:
    from rlcar_core.io.checkpoint_files import read_step_metrics
    from rlcar_core.worldmodels.config import ControllerConfig, MDNRNNConfig, VAEConfig
    from rlcar_core.worldmodels.storage import (
        BEST_MODES,
        CONTROLLER_MODEL,
        RNN_MODEL,
        VAE_MODEL,
        abstract_rnn_state,
        abstract_search_state,
        abstract_vae_state,
        load_checkpoint,
        pinned_step,
    )

    controller = load_checkpoint(
        run,
        CONTROLLER_MODEL,
        _checked_reference(run, checkpoint),
        lambda saved: abstract_search_state(ControllerConfig.from_dict(saved["controller"])),
    )
    saved = controller.saved_config
    vae_step = pinned_step(run, VAE_MODEL, int(saved["vae_step"]), CONTROLLER_MODEL)
    rnn_step = pinned_step(run, RNN_MODEL, int(saved["rnn_step"]), CONTROLLER_MODEL)
    vae = load_checkpoint(
        run, VAE_MODEL, vae_step, lambda s: abstract_vae_state(VAEConfig.from_dict(s["vae"]))
    )
    rnn = load_checkpoint(
        run, RNN_MODEL, rnn_step, lambda s: abstract_rnn_state(MDNRNNConfig.from_dict(s["mdnrnn"]))
    )

    def part(model: str, loaded, state) -> ShippedPart:
        record = read_step_metrics(run.checkpoint_dir(model) / str(loaded.step))
        return ShippedPart(model, loaded.step, state, loaded.saved_config, record, BEST_MODES[model])

    manifest = _read_json(run.data_dir / "manifest.json")
    return TrainedAgent(
        agent="worldmodel",
        kind="worldmodels",
        env=str(saved["env"]),
        obs="pixels",
        step=controller.step,
        parts=[
            part(VAE_MODEL, vae, vae.state._replace(opt_state=_zeros(vae.state.opt_state))),
            part(RNN_MODEL, rnn, rnn.state._replace(opt_state=_zeros(rnn.state.opt_state))),
            part(CONTROLLER_MODEL, controller, controller.state),
        ],
        env_frames=_int_or_none(manifest.get("total_steps")) if isinstance(manifest, dict) else None,
        wall_seconds=_logged_seconds(run),
        stripped=["optimiser state (zeroed)", "rollout data", "latents", "metrics", "other checkpoints"],
    )


def trained_agent(run_dir: str | os.PathLike, checkpoint: str = "best") -> TrainedAgent:
    """The agent of `run_dir` at `checkpoint` (the DreamerV3 checkpoint, or the World Models controller
    with its VAE and MDN-RNN), restored and slimmed for shipping."""
    run = RunDir(run_dir)
    if not run.exists():
        raise RlcarError(f"no run directory at {run.path}")
    if not run.has_config():
        raise RlcarError(f"no {CONFIG_FILE} in {run.path}: ship a run made by a training command")
    if run.checkpoint_dir("dreamer").is_dir():
        return _dreamer_agent(run, checkpoint)
    if run.checkpoint_dir("controller").is_dir():
        return _worldmodel_agent(run, checkpoint)
    raise RlcarError(
        f"no trained agent in {run.path}: it needs checkpoints/dreamer (rlcar train-dreamer) "
        "or checkpoints/controller (rlcar train-controller)"
    )


# -- writing the shipped directory ----------------------------------------------------------------


def folder_bytes(path: str | os.PathLike) -> int:
    return sum(entry.stat().st_size for entry in Path(path).rglob("*") if entry.is_file())


def _check_destination(source: Path, dest: Path, force: bool) -> None:
    source_real, dest_real = source.resolve(), dest.resolve()
    if dest_real == source_real or source_real in dest_real.parents or dest_real in source_real.parents:
        raise RlcarError(f"ship into a folder apart from the run: {dest} and {source} overlap")
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise RlcarError(f"cannot ship to {dest}: a file is in the way")
    if dest.exists():
        if not force:
            raise RlcarError(f"{dest} already exists; pass --force to replace it")
        if not is_shipped(dest):
            # --force replaces a shipped agent, never an arbitrary folder (a run, or `runs/` itself).
            raise RlcarError(f"{dest} is not a shipped agent (no {CARD_FILE}); refusing to replace it")


def _write_parts(folder: Path, parts: list[ShippedPart], float16: bool) -> None:
    from rlcar_core.io.checkpoint import CheckpointStore

    for part in parts:
        best = part.record["best_metric"]
        state = _as_float16(part.state) if float16 else part.state
        with CheckpointStore(
            folder / "checkpoints" / part.model, best_mode=part.best_mode, keep_last=1
        ) as store:
            # A single step that was never ranked still has to be `best`: any finite metric makes it so.
            store.save(part.step, state, part.config, part.record["metrics"], 0.0 if best is None else best)


def _card(
    trained: TrainedAgent,
    source: Path,
    checkpoint: str,
    score: dict[str, Any] | None,
    notes: str | None,
    float16: bool,
) -> dict[str, Any]:
    own = trained.parts[-1]  # the part that acts: DreamerV3's checkpoint, or the controller
    return {
        "format": CARD_FORMAT,
        "agent": trained.agent,
        "kind": trained.kind,
        "env": trained.env,
        "obs": trained.obs,
        "checkpoint": f"ep{trained.step}",
        "checkpoints": {part.model: f"ep{part.step}" for part in trained.parts},
        "requested_checkpoint": str(checkpoint),
        "source_run": str(source),
        "best_metric": own.record["best_metric"],
        "checkpoint_metrics": {part.model: part.record for part in trained.parts},
        "env_frames": trained.env_frames,
        "wall_seconds": trained.wall_seconds,
        "score": score,
        "notes": notes,
        "stripped": trained.stripped,
        "precision": "float16" if float16 else "float32",
        "shipped_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def ship_agent(
    run_dir: str | os.PathLike,
    dest: str | os.PathLike | None = None,
    checkpoint: str = "best",
    *,
    score: dict[str, Any] | None = None,
    notes: str | None = None,
    force: bool = False,
    float16: bool = False,
    max_bytes: int = MAX_SHIPPED_BYTES,
) -> dict[str, Any]:
    """Ship `checkpoint` of the trained run `run_dir` to `dest` (default `pretrained/<agent>-<env>-<obs>`)
    and return its card with `path` and `size_bytes`.

    The directory is built in a hidden temp folder beside `dest` and renamed into place, so a killed
    ship leaves `dest` as it was. An existing `dest` is replaced only with `force` (and only when it is
    a shipped agent itself). RlcarError when the result would exceed `max_bytes`. `score` is an
    `rlcar eval --json` document (see `load_score`); it must have been measured on this agent, run and
    checkpoint (`check_score_matches`), and its summary fields (`score_row`) go on the card."""
    source = Path(run_dir)
    if dest is not None:
        _check_destination(source, Path(dest), force)  # before the slow restore
    document = score
    if score is not None:
        score = score_row(score)
    trained = trained_agent(source, checkpoint)
    if document is not None:
        if score.get("env") not in (None, trained.env):
            raise RlcarError(f"the score was measured on {score['env']} but the agent drives {trained.env}")
        check_score_matches(document, trained, source)
    dest = Path(dest) if dest is not None else default_destination(trained.agent, trained.env, trained.obs)
    _check_destination(source, dest, force)
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(temp, ignore_errors=True)
    try:
        temp.mkdir()
        shutil.copyfile(source / CONFIG_FILE, temp / CONFIG_FILE)
        _write_parts(temp, trained.parts, float16)
        card = _card(trained, source, checkpoint, score, notes, float16)
        _write_json(temp / CARD_FILE, card)
        size = folder_bytes(temp)
        if size > max_bytes:
            hint = "; --float16 halves it" if not float16 else ""
            raise RlcarError(
                f"the shipped agent would take {size / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB "
                f"limit for a directory kept in git{hint}"
            )
        _replace_folder(temp, dest)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return {**card, "path": str(dest), "size_bytes": size}


def _replace_folder(temp: Path, dest: Path) -> None:
    """Rename `temp` to `dest`; an existing `dest` is moved aside first and removed once `temp` is in."""
    if not dest.exists():
        os.replace(temp, dest)
        return
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    os.replace(dest, old)
    try:
        os.replace(temp, dest)
    except BaseException:
        os.replace(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


# -- small helpers ----------------------------------------------------------------------------------


def _write_json(path: Path, value: Any) -> None:
    from rlcar_core.io.atomic import write_json_atomic

    write_json_atomic(path, value)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def _int_or_none(value: Any) -> int | None:
    return (
        int(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def _float_or_none(value: Any) -> float | None:
    return (
        float(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        else None
    )


def _logged_seconds(run: RunDir) -> float | None:
    """World Models stages record no wall time of their own: the sum over trainers of the time between
    their first and last metrics record (a lower bound; compile time before the first record is left
    out). None without metrics.jsonl."""
    if not (run.path / METRICS_FILE).is_file():
        return None
    spans: dict[str, list[float]] = {}
    for record in run.iter_metrics():
        stamp = record.get("time")
        if isinstance(stamp, int | float) and isinstance(record.get("trainer"), str):
            first_last = spans.setdefault(record["trainer"], [stamp, stamp])
            first_last[0], first_last[1] = min(first_last[0], stamp), max(first_last[1], stamp)
    return sum(last - first for first, last in spans.values()) if spans else None


__all__ = [
    "CARD_FILE",
    "MAX_SHIPPED_BYTES",
    "PRETRAINED_ROOT",
    "default_destination",
    "folder_bytes",
    "is_shipped",
    "load_score",
    "read_card",
    "score_row",
    "check_score_matches",
    "ship_agent",
    "trained_agent",
]
