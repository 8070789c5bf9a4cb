"""The page's forms turned into ``rlcar`` argv, checked by the same code as the CLI's options.

Every value is parsed into its type here, checked by the core's ``validate`` (the one the CLI calls),
and only then formatted back into argv. Any bad value raises RlcarError -> a 4xx with its message.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

from rlcar_core.apps.serve.paths import OutsideRoot, check_run_name, relative_name, resolve_under
from rlcar_core.errors import RlcarError

CHECKPOINT = re.compile(r"best|latest|ep\d{1,9}")
MAX_VIDEO_STEPS = 5000
MAX_DIGITS = 12  # a form's whole numbers: typed as text or sent as JSON numbers, the same bound
# Held-out track n is drawn from seed EVAL_SEED_OFFSET + n, an int32 inside the simulator.
MAX_TRACK = 2**31 - 1 - 1_000_000
# The driver that reads each kind of run (``rlcar runs``' kinds) and the kinds ``dream`` can show.
AGENT_FOR_KIND = {"dreamer": "dreamer", "worldmodels": "worldmodel"}
# The train-dreamer options the page's form offers; each is a TrainDreamerConfig field, so the form
# is parsed, checked and turned into argv by that config's own types, `validate` and option names.
TRAIN_FORM_FIELDS = (
    "episodes",
    "env",
    "obs",
    "size",
    "max_steps",
    "num_envs",
    "num_tracks",
    "prefill_steps",
    "train_ratio",
    "batch_size",
    "batch_length",
    "checkpoint_every",
    "eval_every",
    "eval_episodes",
    "seed",
)


def _integer(form: dict[str, Any], field: str, option: str) -> int | None:
    value = form.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RlcarError(f"{option} must be a whole number, got {value!r}")
    if isinstance(value, int):
        if abs(value) >= 10**MAX_DIGITS:
            raise RlcarError(f"{option} must be a whole number of at most {MAX_DIGITS} digits, got {value!r}")
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 10**MAX_DIGITS:
        return int(value)
    text = str(value).strip()[:40]
    if not re.fullmatch(r"[+-]?[0-9]{1,12}", text):
        raise RlcarError(f"{option} must be a whole number, got {value!r}")
    return int(text)


def _number(form: dict[str, Any], field: str, option: str) -> float | None:
    value = form.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RlcarError(f"{option} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RlcarError(f"{option} must be a number, got {value!r}") from None


def _choice(form: dict[str, Any], field: str, option: str, choices: tuple[str, ...]) -> str | None:
    value = form.get(field)
    if value is None or value == "":
        return None
    if value not in choices:
        raise RlcarError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _parse_field(form: dict[str, Any], name: str, kind: Any, flag: str) -> Any:
    accepted = typing.get_args(kind) or (kind,)
    if int in accepted:
        return _integer(form, name, flag)
    if float in accepted:
        return _number(form, name, flag)
    value = form.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RlcarError(f"{flag} must be text, got {value!r}")
    return value


def training_argv(root: Path, form: dict[str, Any]) -> tuple[str, list[str]]:
    """(run name, train-dreamer argv) for the training form; the run is ``root/<name>``."""
    from rlcar_core.dreamer.train_config import TrainDreamerConfig, cli_flag, field_types

    name = check_run_name(form.get("run", ""))
    run_path = resolve_under(root, name)
    if run_path.exists() and not run_path.is_dir():
        raise RlcarError(f"{name} is a file under the root, not a run: choose another name")
    fields = {field.name: field for field in dataclasses.fields(TrainDreamerConfig)}
    types = field_types()
    values: dict[str, Any] = {}
    for key in TRAIN_FORM_FIELDS:
        if key in fields:
            value = _parse_field(form, key, types[key], cli_flag(fields[key]))
            if value is not None:
                values[key] = value
    TrainDreamerConfig(**values).validate()
    argv = ["train-dreamer", "--run-dir", str(run_path), "--no-progress"]
    for key, value in values.items():
        argv += [cli_flag(fields[key]), repr(value) if isinstance(value, float) else str(value)]
    return name, argv


def checkpoint_name(form: dict[str, Any]) -> str:
    value = str(form.get("checkpoint") or "best")
    if not CHECKPOINT.fullmatch(value):
        raise RlcarError(f"--checkpoint must be best, latest or epN, got {value!r}")
    return value


def existing_run(root: Path, form: dict[str, Any]) -> tuple[str, Path]:
    name = form.get("run")
    if not isinstance(name, str) or not name:
        raise RlcarError("choose a run")
    shown = name if len(name) <= 80 else name[:80] + "..."
    try:
        path = resolve_under(root, name)
    except OutsideRoot:
        raise RlcarError(f"no run {shown!r} under the server's root") from None
    if not path.is_dir():
        raise RlcarError(f"no run {shown!r} under the server's root")
    return relative_name(root, path), path


def run_kind(path: Path) -> str:
    """``dreamer``, ``worldmodels``, ``play`` or ``unknown``, as ``rlcar runs`` lists the run."""
    from rlcar_core.apps.runs import summarize_run

    try:
        return summarize_run(path).kind
    except (OSError, ValueError, RlcarError):
        return "unknown"


def check_agent_fits(run: str, path: Path, agent: str) -> None:
    """A learned driver only reads its own kind of run: refuse ``worldmodel`` on a dreamer run, etc."""
    kind = run_kind(path)
    wanted = AGENT_FOR_KIND.get(kind)
    if wanted is None:
        raise RlcarError(
            f"{run} is not a trained agent's run ({_kind_words(kind)}): choose a dreamer or World Models run"
        )
    if wanted != agent:
        raise RlcarError(f"{run} is a {kind} run: the {wanted} driver reads it, not {agent}")


def _kind_words(kind: str) -> str:
    return {"play": "human drives from `play`", "unknown": "no checkpoints rlcar knows"}.get(kind, kind)


def steps_and_track(form: dict[str, Any]) -> tuple[int, int]:
    from rlcar_core.errors import require_at_least

    max_steps = _integer(form, "max_steps", "--max-steps")
    max_steps = 300 if max_steps is None else max_steps
    require_at_least("--max-steps", max_steps, 1)
    if max_steps > MAX_VIDEO_STEPS:
        raise RlcarError(f"--max-steps must be at most {MAX_VIDEO_STEPS} for a video from the page")
    return max_steps, track_number(form)


def track_number(form: dict[str, Any]) -> int:
    """The held-out track asked for (0 when none): 0 .. MAX_TRACK, checked before any JAX call."""
    from rlcar_core.errors import require_at_least

    track = _integer(form, "track", "--track")
    track = 0 if track is None else track
    require_at_least("--track", track, 0)
    if track > MAX_TRACK:
        raise RlcarError(f"--track must be at most {MAX_TRACK}, got {track}")
    return track


def video_argv(root: Path, form: dict[str, Any], stamp: str) -> tuple[str, str, list[str]]:
    """(run name, output below root, export-video argv) for a driver's episode."""
    from rlcar_core.agents import AGENT_NAMES, LEARNED_AGENT_LOADERS

    agent = _choice(form, "agent", "--agent", AGENT_NAMES) or "heuristic"
    max_steps, track = steps_and_track(form)
    argv = ["export-video", "--agent", agent, "--max-steps", str(max_steps), "--track", str(track)]
    if agent in LEARNED_AGENT_LOADERS:
        run, path = existing_run(root, form)
        check_agent_fits(run, path, agent)
        checkpoint = checkpoint_name(form)
        argv += ["--run-dir", str(path), "--checkpoint", checkpoint]
        output = f"{run}/videos/{agent}-{checkpoint}-track{track}-{stamp}.mp4"
    else:
        run = ""
        output = f"videos/{agent}-track{track}-{stamp}.mp4"
    target = resolve_under(root, output)
    target.parent.mkdir(parents=True, exist_ok=True)
    return run, output, [*argv, "-o", str(target), "--no-progress"]


def dream_argv(root: Path, form: dict[str, Any], stamp: str) -> tuple[str, str, list[str]]:
    """(run name, output below root, dream argv): real | dreamed side by side, as `rlcar dream -o`."""
    run, path = existing_run(root, form)
    checkpoint = checkpoint_name(form)
    kind = run_kind(path)
    if kind not in AGENT_FOR_KIND:
        raise RlcarError(
            f"{run} is not a trained agent's run ({_kind_words(kind)}): only a dreamer or World Models run dreams"
        )
    max_steps, track = steps_and_track(form)
    output = f"{run}/videos/dream-{checkpoint}-track{track}-{stamp}.mp4"
    target = resolve_under(root, output)
    target.parent.mkdir(parents=True, exist_ok=True)
    argv = ["dream", "--run-dir", str(path), "--max-steps", str(max_steps), "--track", str(track)]
    argv += ["--checkpoint", checkpoint, "-o", str(target), "--no-progress"]
    return run, output, argv
