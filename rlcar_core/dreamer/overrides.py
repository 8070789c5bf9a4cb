"""`--set key=value` strings turned into typed DreamerConfig overrides, with errors a user can act on."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable
from typing import Any

from rlcar_core.dreamer.config import DreamerConfig
from rlcar_core.errors import RlcarError

# Fields that fix the shapes of the parameters or of the optimiser state: a checkpoint only restores
# into a model with the same values, so a resumed run cannot change them.
ARCHITECTURE_FIELDS = (
    "obs_kind",
    "obs_shape",
    "action_dim",
    "deter_size",
    "stoch_size",
    "stoch_classes",
    "hidden_size",
    "mlp_layers",
    "cnn_depth",
    "cnn_min_resolution",
    "num_bins",
    "optimizer",
    "grad_clip_kind",
)
# Chosen by the command's own options (--obs, --env), not by --set.
DERIVED_FIELDS = ("obs_kind", "obs_shape", "action_dim")


def _field_types() -> dict[str, str]:
    # The module uses `from __future__ import annotations`, so types are the annotation strings.
    return {field.name: str(field.type) for field in dataclasses.fields(DreamerConfig)}


def _parse_value(name: str, kind: str, text: str) -> Any:
    def bad(expected: str) -> RlcarError:
        return RlcarError(f"--set {name}={text}: expected {expected}")

    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise bad("an integer") from None
    if kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise bad("a number") from None
        if not math.isfinite(value):
            raise bad("a finite number")
        return value
    if kind == "bool":
        lowered = text.lower()
        if lowered not in ("true", "false", "1", "0"):
            raise bad("true or false")
        return lowered in ("true", "1")
    if kind == "str":
        return text
    raise bad(f"a value of type {kind} (not settable with --set)")


def parse_overrides(assignments: Iterable[str]) -> dict[str, Any]:
    """["model_lr=3e-4", "horizon=15"] -> {"model_lr": 0.0003, "horizon": 15}; RlcarError on unknown
    keys, malformed pairs or values of the wrong type. Range checks happen when the config is built."""
    types = _field_types()
    settable = sorted(set(types) - set(DERIVED_FIELDS))
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        name, separator, text = assignment.partition("=")
        name, text = name.strip(), text.strip()
        if not separator or not name or not text:
            raise RlcarError(f"--set expects key=value, got {assignment!r}")
        if name in DERIVED_FIELDS:
            raise RlcarError(f"--set {name} is chosen by --obs/--env, not by --set")
        if name not in types:
            close = difflib.get_close_matches(name, settable, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(settable)}"
            raise RlcarError(f"--set: unknown DreamerV3 hyperparameter {name!r}{hint}")
        overrides[name] = _parse_value(name, types[name], text)
    return overrides


def architecture_changes(saved: DreamerConfig, requested: DreamerConfig) -> list[str]:
    """'name: saved -> requested' for every shape-defining field that differs."""
    return [
        f"{name} {getattr(saved, name)} -> {getattr(requested, name)}"
        for name in ARCHITECTURE_FIELDS
        if getattr(saved, name) != getattr(requested, name)
    ]
