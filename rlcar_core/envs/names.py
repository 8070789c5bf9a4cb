"""The environments rlcar knows, as one enum with the facts the rest of the code asks of them.

Code compares against `EnvName.RLCAR`, never the string "rlcar", and asks `env.has_track_bank` or
`env.frames_per_second` instead of keeping its own table. `EnvName` is a `str`: it equals its value,
prints as it, and JSON (config.json, --json) holds "rlcar" / "carracing" as before.

Imports nothing (no JAX, no Gymnasium): the CLI builds its `--env` choices from it for `rlcar --help`.
"""

from __future__ import annotations

from enum import Enum

from rlcar_core.errors import RlcarError


class EnvName(str, Enum):
    RLCAR = "rlcar"  # the pure-JAX simulator
    CARRACING = "carracing"  # Gymnasium's CarRacing-v3

    @classmethod
    def parse(cls, name: str) -> EnvName:
        """`name` as an `EnvName`; an unknown one is bad input (one line, exit 2)."""
        try:
            return cls(name)
        except ValueError:
            raise RlcarError(f"unknown env {name!r}; choose one of {', '.join(ENV_NAMES)}") from None

    # A str mixin would print "EnvName.RLCAR" in f-strings: messages and file names want the value.
    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def step_seconds(self) -> float:
        """Simulated seconds per env step (RLCar's `SimParams.dt`; CarRacing-v3 runs at 50 Hz)."""
        return _STEP_SECONDS[self]

    @property
    def frames_per_second(self) -> int:
        """The env's own frame rate: one frame per step."""
        return round(1.0 / self.step_seconds)

    @property
    def has_track_bank(self) -> bool:
        """Tracks come from a bank of numbered seeds (training and held-out sets, `--num-tracks`,
        the top-down renderer); CarRacing-v3 draws a new track from each reset seed instead."""
        return self is EnvName.RLCAR

    @property
    def has_sensors(self) -> bool:
        """Ray sensors exist (the heuristic driver reads them); CarRacing-v3 has only pixels."""
        return self is EnvName.RLCAR

    @property
    def default_obs(self) -> str:
        """The observation kind used when none is asked for."""
        return "sensors" if self.has_sensors else "pixels"


_STEP_SECONDS = {EnvName.RLCAR: 0.1, EnvName.CARRACING: 0.02}

ENV_NAMES: tuple[str, ...] = tuple(name.value for name in EnvName)


def frames_per_second(name: str) -> int:
    """The frame rate of env `name` (a string or an `EnvName`): one frame per step."""
    return EnvName.parse(name).frames_per_second
