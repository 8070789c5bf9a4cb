"""Checkpoints of training state on disk, via orbax's CheckpointManager.

One `CheckpointStore` per model folder (e.g. `<run>/checkpoints/vae`). Steps are episode or update
numbers, so `ep81` names step 81; `latest` and `best` resolve to steps as well. Layout::

    <directory>/<step>/state/      the state pytree (params, optimiser state, rng, counters)
    <directory>/<step>/config/     the config dict, as JSON
    <directory>/<step>/metrics/    {"best_metric": float | null, "metrics": {...}}, as JSON

Orbax writes each step into `<step>.orbax-checkpoint-tmp*` and renames it when complete, so a
killed save never looks like a checkpoint; leftovers are removed when a store is next opened.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from rlcar_core.errors import RlcarError
from rlcar_core.io.jsonable import to_json_value

_STATE_ITEM = "state"
_CONFIG_ITEM = "config"
_EPISODE_NAME = re.compile(r"^(?:ep)?(\d+)$")


class CheckpointError(RlcarError):
    """A checkpoint exists but cannot be used (wrong model shape, corrupt files)."""


class CheckpointNotFound(CheckpointError):
    """The requested checkpoint name or folder does not exist."""


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class CheckpointStore:
    """Save and restore one model's training state.

    Saves are asynchronous; leave through `close()` or a `with` block so they finish on disk.
    Keeps the newest `keep_last` checkpoints plus the best one by `best_metric` (higher is better
    unless `best_mode="min"`).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep_last: int = 3,
        best_mode: str = "max",
        read_only: bool = False,
    ):
        if best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.directory = Path(directory).absolute()
        self.read_only = read_only
        if read_only and not self.directory.is_dir():
            raise CheckpointNotFound(f"no checkpoint folder at {self.directory}")
        sign = 1.0 if best_mode == "max" else -1.0

        def rank(metrics: dict[str, Any]) -> float:
            # Checkpoints saved without a best metric rank below every real one.
            value = (metrics or {}).get("best_metric")
            return -math.inf if value is None else sign * value

        self._rank = rank
        preservation = checkpoint_managers.AnyPreservationPolicy(
            [
                checkpoint_managers.LatestN(n=keep_last),
                checkpoint_managers.BestN(get_metric_fn=rank, n=1, keep_checkpoints_without_metrics=False),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=preservation,
            best_fn=rank,
            best_mode="max",
            # Read-only is enforced by `save` rather than orbax's own flag, which logs a warning on
            # every open; with no save and no tmp cleanup, nothing is written.
            create=not read_only,
            cleanup_tmp_directories=not read_only,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(_STATE_ITEM, _CONFIG_ITEM)
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def wait(self) -> None:
        """Block until every started save is complete on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- names -------------------------------------------------------------------------------

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def best_step(self) -> int | None:
        """The step with the best `best_metric`, or None when no checkpoint recorded one."""
        step = self._manager.best_step()
        if step is None or self._rank(self._manager.metrics(step)) == -math.inf:
            return None
        return step

    def available_names(self) -> list[str]:
        names = []
        if (latest := self.latest_step()) is not None:
            names.append(f"latest (ep{latest})")
        if (best := self.best_step()) is not None:
            names.append(f"best (ep{best})")
        return names + [f"ep{step}" for step in self.steps()]

    def _not_found(self, name: str) -> CheckpointNotFound:
        names = self.available_names()
        available = ", ".join(names) if names else "none"
        return CheckpointNotFound(f"no checkpoint {name!r} in {self.directory}; available: {available}")

    def resolve(self, name: str | int) -> int:
        """'latest', 'best', 'epN' (or N) -> step number; CheckpointNotFound lists what exists."""
        if isinstance(name, int):
            step = name
        elif name == "latest":
            step = self.latest_step()
        elif name == "best":
            step = self.best_step()
        elif match := _EPISODE_NAME.match(name):
            step = int(match.group(1))
        else:
            raise self._not_found(name)
        if step is None or step not in self._manager.all_steps():
            raise self._not_found(str(name))
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
            raise CheckpointError(f"checkpoint store {self.directory} was opened read-only")
        step = int(step)
        if step in self._manager.all_steps():
            raise CheckpointError(f"checkpoint ep{step} already exists in {self.directory}")
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

    def restore(self, name: str | int, abstract_state: Any, *, device: jax.Device | None = None) -> Any:
        """Restore into the structure, shapes and dtypes of `abstract_state` (e.g. from
        `jax.eval_shape(init_fn, key)`). Leaves without a sharding are placed on `device` (default:
        the first local device), so a checkpoint written on a GPU restores on a CPU-only machine."""
        step = self.resolve(name)
        device = device or jax.local_devices()[0]
        local = jax.sharding.SingleDeviceSharding(device)

        def with_sharding(leaf):
            if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
                return leaf
            sharding = getattr(leaf, "sharding", None)
            if isinstance(leaf, jax.ShapeDtypeStruct) and sharding is not None:
                return leaf
            return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=local)

        target = jax.tree.map(with_sharding, abstract_state)
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(**{_STATE_ITEM: ocp.args.StandardRestore(target)})
            )
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointError(
                f"checkpoint ep{step} in {self.directory} does not match the model being restored: {error}"
            ) from error
        return restored[_STATE_ITEM]

    def restore_config(self, name: str | int) -> dict[str, Any]:
        step = self.resolve(name)
        restored = self._manager.restore(
            step, args=ocp.args.Composite(**{_CONFIG_ITEM: ocp.args.JsonRestore()})
        )
        return restored[_CONFIG_ITEM]

    def metrics(self, name: str | int) -> dict[str, Any]:
        """{"best_metric": float | None, "metrics": dict} as saved with the checkpoint."""
        return dict(self._manager.metrics(self.resolve(name)) or {"best_metric": None, "metrics": {}})


def open_checkpoint(
    reference: str, default_directory: str | os.PathLike, **store_options
) -> tuple[CheckpointStore, int]:
    """Resolve a `--checkpoint` value: a name in `default_directory` ('latest', 'best', 'epN') or a
    path to one step folder of any store. Returns the opened (read-only) store and the step."""
    path = Path(reference)
    step_folder = _EPISODE_NAME.match(path.name)
    if step_folder and path.is_dir() and path.parent != Path("."):
        store = CheckpointStore(path.parent, read_only=True, **store_options)
        return store, store.resolve(int(step_folder.group(1)))
    if os.sep in reference:
        raise CheckpointNotFound(f"no checkpoint folder at {reference}")
    store = CheckpointStore(default_directory, read_only=True, **store_options)
    return store, store.resolve(reference)
