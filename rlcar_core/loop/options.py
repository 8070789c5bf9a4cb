"""`option(...)`: a command-config field that carries its default, its `--help` text and its limits.

Every command config (`TrainDreamerConfig`, the World Models command configs) declares its fields
with it, and the CLI builds one Typer option per field from the metadata, so each default and help
text is written once. Imports nothing heavy: the CLI reads these dataclasses for `rlcar --help`.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def option(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    choices: tuple[str, ...] = (),
    flags: tuple[str, ...] = (),
) -> Any:
    """A config field with its CLI help. `low`: the smallest allowed value (the CLI passes it on as
    the option's minimum); `choices`: the accepted strings; `flags`: the option names when they are
    not `--field-name` (e.g. `("--set",)`, `("--mixtures",)`)."""
    metadata = {"help": help, "low": low, "choices": choices, "flags": flags}
    return dataclasses.field(default=default, metadata=metadata)


def option_flags(field: dataclasses.Field) -> tuple[str, ...]:
    """The names Typer gives the option of `field`."""
    return tuple(field.metadata.get("flags") or ()) or ("--" + field.name.replace("_", "-"),)


def cli_flag(field: dataclasses.Field) -> str:
    """The one option name messages quote for `field` (the long form, without a `/--no-x` half)."""
    long_flags = [flag for flag in option_flags(field) if flag.startswith("--")]
    return long_flags[0].split("/")[0]


def field_named(config_class: type, name: str) -> dataclasses.Field:
    return next(field for field in dataclasses.fields(config_class) if field.name == name)
