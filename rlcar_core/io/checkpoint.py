"""Checkpoints of training state on disk, via orbax's CheckpointManager.

One `CheckpointStore` per model folder (e.g. `<run>/checkpoints/vae`). Steps are episode or update
numbers, so `ep81` names step 81; `latest` and `best` resolve to steps as well. The on-disk layout is
described in `checkpoint_files` (which reads it without JAX).

Orbax writes each step into `<step>.orbax-checkpoint-tmp*` and renames it when complete, so a
killed save never looks like a checkpoint; leftovers are removed when a store is next opened.

Damaged steps (a file deleted or truncated after the save) are never `latest` or `best`. The API the
training loops build resume-with-fallback on:

- `steps()`: every committed step; `intact_steps()`: those that pass the cheap file check;
  `damaged_steps()`: {step: reason} for the others.
- `is_intact(step, abstract_state=None)`: the cheap check, plus a real restore when an abstract
  state is given (that also finds a data file truncated to a non-zero length).
- `resolve(name)`: 'latest' | 'best' | 'epN' | N -> step; CheckpointNotFound names the nearest steps,
  CheckpointDamaged (one line, naming the intact steps) for a damaged one.
- `restore(name, abstract_state)`: CheckpointDamaged / CheckpointError (model mismatch), one line each.
- `restore_newest_intact(abstract_state)`: the newest step that really restores, with the steps
  skipped on the way and why, for "checkpoint ep10 is damaged (...); resuming from ep5".

Always leave a store through `close()` or a `with` block; `close_open_stores()` closes any left open
(the CLI calls it before exit, so orbax never schedules work after interpreter shutdown).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import gc
import logging
import math
import os
import re
import sys
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from rlcar_core.errors import RlcarError
from rlcar_core.io.checkpoint_files import (
    STEP_NAME,
    CheckpointReference,
    damage_of,
    parse_checkpoint_reference,
    read_step_metrics,
    step_folders,
)
from rlcar_core.io.jsonable import to_json_value

__all__ = [
    "CheckpointDamaged",
    "CheckpointError",
    "CheckpointNotFound",
    "CheckpointReference",
    "CheckpointStore",
    "RestoredCheckpoint",
    "close_open_stores",
    "open_checkpoint",
    "parse_checkpoint_reference",
]

_STATE_ITEM = "state"
_CONFIG_ITEM = "config"
# TensorStore/orbax words for "the bytes on disk are wrong", as opposed to "the model's shapes differ".
_DAMAGE_WORDS = re.compile(
    r"OUT_OF_RANGE|NOT_FOUND|DATA_LOSS|FAILED_PRECONDITION|Error reading|Error opening|"
    r"does not exist|corrupt|truncat|Unexpected end|checksum|No such file",
    re.IGNORECASE,
)
_MAX_REASON = 120
# Stores not yet closed. Orbax runs saves and cleanup on background threads; a manager left open at
# exit schedules work after interpreter shutdown and prints a traceback, so the CLI closes these.
_OPEN_STORES: weakref.WeakSet[CheckpointStore] = weakref.WeakSet()


class CheckpointError(RlcarError):
    """A checkpoint exists but cannot be used (wrong model shape, corrupt files)."""


class CheckpointNotFound(CheckpointError):
    """The requested checkpoint name or folder does not exist."""


class CheckpointDamaged(CheckpointError):
    """The checkpoint's files are incomplete or corrupt; the message names the intact ones."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason  # the short cause alone, for messages that name the step themselves


class RestoredCheckpoint(NamedTuple):
    step: int
    state: Any
    config: dict[str, Any]
    skipped: list[tuple[int, str]]  # newer steps that did not restore, newest first, with the reason


def close_open_stores() -> None:
    """Close every store still open (waiting for its saves); safe to call more than once."""
    for store in list(_OPEN_STORES):
        store.close()


_LEFTOVER_READ_FAILURE = re.compile(r"Encountered error while reading|Event loop is closed")


def _is_leftover_read_failure(unraisable: Any) -> bool:
    return bool(_LEFTOVER_READ_FAILURE.search(str(unraisable.exc_value)))


def _silence_leftovers_of_failed_reads() -> None:
    """After a read failed (and was reported in one line), reads of the same restore still in flight
    fail later, when their coroutines are collected, often at exit: each prints 'Exception ignored in:
    <coroutine ...>' and a 50-line TensorStore spec (515 lines for one truncated file). Drop those
    for the rest of the process; anything else still reaches the previous hook."""
    previous_hook = sys.unraisablehook
    if getattr(previous_hook, "_drops_leftover_reads", False):
        return

    def quiet_unraisable(unraisable) -> None:
        if not _is_leftover_read_failure(unraisable):
            previous_hook(unraisable)

    quiet_unraisable._drops_leftover_reads = True
    sys.unraisablehook = quiet_unraisable
    asyncio_log = logging.getLogger("asyncio")
    if _drop_never_retrieved not in asyncio_log.filters:
        asyncio_log.addFilter(_drop_never_retrieved)


def _drop_never_retrieved(record: logging.LogRecord) -> bool:
    return "never retrieved" not in record.getMessage()


def _error_chain_text(error: BaseException) -> str:
    """The messages of `error` and its causes: orbax wraps TensorStore's 'OUT_OF_RANGE: ... byte range'
    in a bare 'Encountered error while reading array index' Exception."""
    texts, seen = [], set()
    while error is not None and id(error) not in seen and len(texts) < 8:
        seen.add(id(error))
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    return " <- ".join(texts)


@contextlib.contextmanager
def _quiet_failed_reads() -> Iterator[None]:
    """Hide the side noise of a failed TensorStore read: asyncio's 'Future exception was never
    retrieved' records (2,000-character lines) and 'Event loop is closed' errors that reads still in
    flight raise from other threads once orbax has closed its event loop. The failure itself becomes
    one line. After a failed read the caller runs `gc.collect()` inside this window, so the leftover
    futures are collected (and their noise dropped) here; a read that succeeds leaves none, and skips
    the collection (a full collection per restore costs about a third of a second)."""

    def drop(record: logging.LogRecord) -> bool:
        return "never retrieved" not in record.getMessage()

    def quiet_unraisable(unraisable) -> None:
        if not _is_leftover_read_failure(unraisable):
            previous_hook(unraisable)

    asyncio_log = logging.getLogger("asyncio")
    previous_hook = sys.unraisablehook
    asyncio_log.addFilter(drop)
    sys.unraisablehook = quiet_unraisable
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="coroutine .* was never awaited", category=RuntimeWarning
            )
            yield
    finally:
        sys.unraisablehook = previous_hook
        asyncio_log.removeFilter(drop)


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _one_line(error: BaseException | str) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _describe_read_failure(kind: str, text: str) -> str:
    """A TensorStore error as a few words a user can act on, instead of its 2,000-character spec."""
    if "OUT_OF_RANGE" in text or "byte range" in text.lower() or "truncat" in text.lower():
        return "a data file is shorter than written: truncated"
    if "NOT_FOUND" in text or "does not exist" in text or "No such file" in text:
        return "a data file is missing"
    if "DATA_LOSS" in text or "corrupt" in text.lower() or "checksum" in text.lower():
        return "a data file is corrupt"
    return _one_line(f"{kind}: {text}")


@dataclasses.dataclass
class _KeepProtected:
    """An orbax preservation policy: keep the steps `protected()` names at the time of each cleanup (the
    checkpoints other stages were built on). When that cannot be read, keep everything: a checkpoint
    too many costs disk space, one too few costs a trained agent."""

    protected: Callable[[], Iterable[int]]

    def should_preserve(self, checkpoints: Sequence[Any], *, context: Any) -> list[bool]:
        del context
        try:
            keep = {int(step) for step in self.protected()}
        except Exception:  # noqa: BLE001 - unknown pins: delete nothing
            return [True] * len(checkpoints)
        return [int(checkpoint.step) in keep for checkpoint in checkpoints]


class _TolerantManager(ocp.CheckpointManager):
    """Orbax's manager, except that a step whose metrics file does not parse (or is not a JSON object)
    counts as one without metrics instead of failing the open with a JSONDecodeError; `damage_of`
    reports such a step as damaged, so it is never `latest` or `best` and a resume falls back."""

    def _get_metrics(self, step: int) -> Any:
        try:
            metrics = super()._get_metrics(step)
        except (OSError, ValueError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            return None
        return metrics if isinstance(metrics, dict) else None


def _labels(steps: list[int]) -> str:
    return ", ".join(f"ep{step}" for step in steps) if steps else "none"


class CheckpointStore:
    """Save and restore one model's training state.

    Saves are asynchronous; leave through `close()` or a `with` block so they finish on disk.
    Keeps the newest `keep_last` checkpoints, the best one by `best_metric` (higher is better
    unless `best_mode="min"`), and every step `protect()` names when a save prunes the older ones
    (e.g. the steps a later World Models stage was trained on). Opening a store creates nothing on
    disk; the folder appears with the first save.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep_last: int = 3,
        best_mode: str = "max",
        read_only: bool = False,
        protect: Callable[[], Iterable[int]] | None = None,
    ):
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.shown = Path(directory)  # as the user gave it, for messages
        self.directory = Path(directory).absolute()
        self.read_only = read_only
        if read_only and not self.directory.is_dir():
            raise CheckpointNotFound(f"no checkpoint folder at {self.shown}")
        if self.directory.exists() and not self.directory.is_dir():
            raise CheckpointError(f"{self.shown} is a file, not a checkpoint folder")
        sign = 1.0 if best_mode == "max" else -1.0

        def rank(metrics: dict[str, Any]) -> float:
            # Checkpoints saved without a best metric (or with a damaged one) rank below every real one.
            value = metrics.get("best_metric") if isinstance(metrics, dict) else None
            if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                return -math.inf
            return sign * value

        self._rank = rank
        policies: list[Any] = [
            checkpoint_managers.LatestN(n=keep_last),
            checkpoint_managers.BestN(get_metric_fn=rank, n=1, keep_checkpoints_without_metrics=False),
        ]
        if protect is not None:
            policies.append(_KeepProtected(protect))
        preservation = checkpoint_managers.AnyPreservationPolicy(policies)
        options = ocp.CheckpointManagerOptions(
            preservation_policy=preservation,
            best_fn=rank,
            best_mode="max",
            # Read-only is enforced by `save` rather than orbax's own flag, which logs a warning on
            # every open. The folder is made by the first save, so a command that fails before
            # saving leaves no empty checkpoint folder behind.
            create=False,
            cleanup_tmp_directories=not read_only and self.directory.is_dir(),
        )
        self._manager = _TolerantManager(
            self.directory, options=options, item_names=(_STATE_ITEM, _CONFIG_ITEM)
        )
        self._closed = False
        self._failed: dict[
            int, str
        ] = {}  # steps whose real restore failed: damaged, whatever the files look like
        _OPEN_STORES.add(self)

    # -- lifecycle ---------------------------------------------------------------------------

    def wait(self) -> None:
        """Block until every started save is complete on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _OPEN_STORES.discard(self)
        try:
            self._manager.wait_until_finished()
        finally:
            self._manager.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- which steps exist -------------------------------------------------------------------

    def _folders(self) -> dict[int, Path]:
        self.wait()  # a save in flight is not a folder yet
        return step_folders(self.directory)

    def steps(self) -> list[int]:
        """Every committed step, intact or not."""
        return sorted(self._folders())

    def damaged_steps(self) -> dict[int, str]:
        """{step: reason} for committed steps whose files fail the cheap check."""
        return {
            step: reason for step, folder in sorted(self._folders().items()) if (reason := damage_of(folder))
        }

    def intact_steps(self) -> list[int]:
        """Committed steps whose files pass the cheap check (present, non-empty, JSON parses)."""
        return [
            step
            for step, folder in sorted(self._folders().items())
            if step not in self._failed and damage_of(folder) is None
        ]

    def is_intact(self, step: int, abstract_state: Any = None) -> bool:
        """The cheap file check; with `abstract_state`, also a real restore of the state and config
        (slower, but it finds a data file truncated to a non-zero length)."""
        folder = self._folders().get(int(step))
        if folder is None or int(step) in self._failed or damage_of(folder) is not None:
            return False
        if abstract_state is None:
            return True
        try:
            self._restore_items(int(step), abstract_state)
        except CheckpointDamaged:
            return False
        return True

    def latest_step(self) -> int | None:
        """The newest intact step."""
        intact = self.intact_steps()
        return intact[-1] if intact else None

    def best_step(self) -> int | None:
        """The intact step with the best `best_metric`, or None when no intact checkpoint recorded one."""
        ranked = [
            (self._rank(read_step_metrics(self.directory / str(step))), step) for step in self.intact_steps()
        ]
        ranked = [(score, step) for score, step in ranked if score != -math.inf]
        # Ties go to the newer step, as they would in orbax's own ranking.
        return max(ranked)[1] if ranked else None

    def available_names(self) -> list[str]:
        names = []
        if (latest := self.latest_step()) is not None:
            names.append(f"latest (ep{latest})")
        if (best := self.best_step()) is not None:
            names.append(f"best (ep{best})")
        return names + [f"ep{step}" for step in self.intact_steps()]

    # -- names -------------------------------------------------------------------------------

    def _also(self) -> str:
        named = []
        if (best := self.best_step()) is not None:
            named.append(f"best (ep{best})")
        if (latest := self.latest_step()) is not None:
            named.append(f"latest (ep{latest})")
        return ", ".join(named)

    def _missing_step(self, step: int) -> CheckpointNotFound:
        intact = self.intact_steps()
        if not intact:
            return CheckpointNotFound(f"no ep{step} in {self.shown}; {self._none_intact()}")
        position = bisect.bisect_left(intact, step)
        nearest = intact[max(0, position - 1) : position + 1]
        also = self._also()
        return CheckpointNotFound(
            f"no ep{step} in {self.shown}; nearest: {_labels(nearest)}" + (f"; also {also}" if also else "")
        )

    def _none_intact(self) -> str:
        damaged = self.damaged_steps()
        if not damaged:
            return "it holds no checkpoints yet"
        listed = ", ".join(f"ep{step} ({reason})" for step, reason in damaged.items())
        return f"every checkpoint there is damaged: {listed}"

    def _damaged(self, step: int, reason: str) -> CheckpointDamaged:
        intact = [other for other in self.intact_steps() if other != step]
        also = self._also()
        return CheckpointDamaged(
            f"checkpoint ep{step} in {self.shown} is damaged ({_one_line(reason)}); "
            f"intact: {_labels(intact)}" + (f"; {also}" if also and intact else ""),
            reason=_one_line(reason),
        )

    def resolve(self, name: str | int) -> int:
        """'latest', 'best', 'epN' (or N) -> step number. CheckpointNotFound names the nearest steps
        that exist; CheckpointDamaged (for a step whose files fail the cheap check) the intact ones."""
        if isinstance(name, int):
            step = name
        elif name in ("latest", "best"):
            step = self.latest_step() if name == "latest" else self.best_step()
            if step is None:
                if name == "best" and self.intact_steps():
                    raise CheckpointNotFound(
                        f"no best checkpoint in {self.shown}: none was ranked by an evaluation yet; "
                        f"use latest (ep{self.latest_step()}) or one of {_labels(self.intact_steps())}"
                    )
                raise CheckpointNotFound(f"no {name} checkpoint in {self.shown}: {self._none_intact()}")
            return step
        elif match := STEP_NAME.match(name):
            step = int(match.group(1))
        else:
            intact = self.intact_steps()
            have = f"have {_labels(intact)}" + (f", {self._also()}" if intact else "")
            raise CheckpointNotFound(
                f"no checkpoint {name!r} in {self.shown}: use best, latest or epN ({have})"
            )
        folder = self._folders().get(step)
        if folder is None:
            raise self._missing_step(step)
        if (reason := self._failed.get(step) or damage_of(folder)) is not None:
            raise self._damaged(step, reason)
        return step

    # -- save / restore ----------------------------------------------------------------------

    def save(
        self,
        step: int,
        state: Any,
        config: dict[str, Any],
        metrics: dict[str, Any] | None = None,
        best_metric: float | None = None,
    ) -> None:
        """Start saving `state` (any pytree of arrays, PRNG keys included) as step `step`.

        `best_metric` ranks checkpoints for `best` (e.g. evaluation return); a non-finite value
        counts as none, so a diverged evaluation never becomes `best`.
        """
        if self.read_only:
            raise CheckpointError(f"checkpoint store {self.shown} was opened read-only")
        step = int(step)
        if step in self._manager.all_steps() or (self.directory / str(step)).exists():
            raise CheckpointError(f"checkpoint ep{step} already exists in {self.shown}")
        self.directory.mkdir(parents=True, exist_ok=True)
        record = {"best_metric": _finite_or_none(best_metric), "metrics": to_json_value(metrics or {})}
        self._manager.save(
            step,
            args=ocp.args.Composite(
                **{
                    _STATE_ITEM: ocp.args.StandardSave(state),
                    _CONFIG_ITEM: ocp.args.JsonSave(to_json_value(config)),
                }
            ),
            metrics=record,
            # Every requested step is saved; which ones are kept is the preservation policy's job.
            force=True,
        )

    def _target(self, abstract_state: Any, device: jax.Device | None) -> Any:
        device = device or jax.local_devices()[0]
        local = jax.sharding.SingleDeviceSharding(device)

        def with_sharding(leaf):
            if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
                return leaf
            sharding = getattr(leaf, "sharding", None)
            if isinstance(leaf, jax.ShapeDtypeStruct) and sharding is not None:
                return leaf
            return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=local)

        return jax.tree.map(with_sharding, abstract_state)

    def _restore_items(self, step: int, abstract_state: Any = None, device: jax.Device | None = None) -> dict:
        """Restore the state (when `abstract_state` is given) and the config of a resolved step, with
        orbax/TensorStore failures turned into one-line CheckpointDamaged / CheckpointError."""
        items = {_CONFIG_ITEM: ocp.args.JsonRestore()}
        if abstract_state is not None:
            items[_STATE_ITEM] = ocp.args.StandardRestore(self._target(abstract_state, device))
        failure = None
        with _quiet_failed_reads():
            try:
                return self._manager.restore(step, args=ocp.args.Composite(**items))
            except (KeyboardInterrupt, SystemExit, MemoryError):
                raise
            except Exception as error:  # orbax and TensorStore raise many types for one bad file
                failure = (
                    type(error).__name__,
                    _error_chain_text(error),
                    isinstance(error, ValueError | KeyError | TypeError),
                )
            # Out of the except block the traceback (which holds the failed reads' futures) is freed,
            # so the quiet window collects them.
            gc.collect()
        _silence_leftovers_of_failed_reads()  # for reads still in flight, collected later (at exit)
        kind, text, maybe_mismatch = failure
        if (
            (reason := damage_of(self.directory / str(step))) is None
            and maybe_mismatch
            and not _DAMAGE_WORDS.search(text)
        ):
            raise CheckpointError(
                f"checkpoint ep{step} in {self.shown} does not match the model being restored: {_one_line(text)}"
            )
        self._failed[step] = reason or _describe_read_failure(kind, text)
        raise self._damaged(step, self._failed[step])

    def restore(self, name: str | int, abstract_state: Any, *, device: jax.Device | None = None) -> Any:
        """Restore into the structure, shapes and dtypes of `abstract_state` (e.g. from
        `jax.eval_shape(init_fn, key)`). Leaves without a sharding are placed on `device` (default:
        the first local device), so a checkpoint written on a GPU restores on a CPU-only machine."""
        step = self.resolve(name)
        return self._restore_items(step, abstract_state, device)[_STATE_ITEM]

    def restore_config(self, name: str | int) -> dict[str, Any]:
        config = self._restore_items(self.resolve(name))[_CONFIG_ITEM]
        if not isinstance(config, dict):
            raise self._damaged(self.resolve(name), "its config is not a JSON object")
        return config

    def restore_newest_intact(
        self, abstract_state: Any, *, at_most: int | None = None, device: jax.Device | None = None
    ) -> RestoredCheckpoint | None:
        """The newest step (at or below `at_most`) whose state and config really restore, or None when
        there is no checkpoint. Damaged steps passed over are listed in `skipped`; when every step is
        damaged, CheckpointDamaged says so."""
        skipped: list[tuple[int, str]] = []
        candidates = [step for step in reversed(self.steps()) if at_most is None or step <= at_most]
        for step in candidates:
            if (reason := self._failed.get(step) or damage_of(self.directory / str(step))) is not None:
                skipped.append((step, _one_line(reason)))
                continue
            try:
                restored = self._restore_items(step, abstract_state, device)
            except CheckpointDamaged:
                skipped.append((step, _one_line(self._failed[step])))
                continue
            return RestoredCheckpoint(step, restored[_STATE_ITEM], restored[_CONFIG_ITEM], skipped)
        if skipped:
            listed = ", ".join(f"ep{step} ({_one_line(reason)})" for step, reason in skipped)
            raise CheckpointDamaged(f"every checkpoint in {self.shown} is damaged: {listed}")
        return None

    def metrics(self, name: str | int) -> dict[str, Any]:
        """{"best_metric": float | None, "metrics": dict} as saved with the checkpoint."""
        return read_step_metrics(self.directory / str(self.resolve(name)))


def open_checkpoint(
    reference: str, default_directory: str | os.PathLike, **store_options
) -> tuple[CheckpointStore, int]:
    """Resolve a `--checkpoint` value (see `parse_checkpoint_reference`): a name in
    `default_directory` ('latest', 'best', 'epN') or a path to one step folder of any store. Returns
    the opened (read-only) store and the step; the store is closed again if resolving fails."""
    parsed = parse_checkpoint_reference(reference)
    if (
        parsed.directory is None
        and isinstance(parsed.name, str)
        and ("/" in parsed.name or os.sep in parsed.name)
    ):
        raise CheckpointNotFound(f"no checkpoint folder at {reference}")
    store = CheckpointStore(parsed.directory or default_directory, read_only=True, **store_options)
    try:
        return store, store.resolve(parsed.name)
    except BaseException:
        store.close()
        raise
