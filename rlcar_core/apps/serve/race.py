"""A CarRacing-v3 race, you against an agent on one held-out track: each car's running score and how
the two compare at the end.

Two Box2D cars cannot share one CarRacing world, so each driver has its own env on the same reset
seed (the same track). This module only counts: the envs belong to ``live.LiveDrive``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rlcar_core.apps.drive import DrivingSession, how_it_ended

# What the comparison names, and whether more is better.
COMPARED = (("score", True), ("tiles", True), ("off_road_seconds", False))


def off_road(session: DrivingSession) -> bool:
    """No wheel of the car touches a road tile (CarRacing keeps each wheel's tiles under contact)."""
    car = getattr(session.env.unwrapped, "car", None)
    if car is None:
        return False
    return not any(wheel.tiles for wheel in car.wheels)


@dataclasses.dataclass
class CarTally:
    """One car's race so far: its env keeps the score and tiles; the tally counts steps off the road."""

    off_road_steps: int = 0
    ended: str | None = None  # "lap", "crash" (left the playfield) or "time"; None while driving

    @property
    def done(self) -> bool:
        return self.ended is not None

    def after_step(self, session: DrivingSession, terminated: bool, truncated: bool, info: dict) -> None:
        self.off_road_steps += off_road(session)
        if terminated or truncated:
            self.ended = how_it_ended(info)

    def state(self, session: DrivingSession) -> dict[str, Any]:
        unwrapped = session.env.unwrapped
        return {
            "score": round(session.episode_return, 1),
            "tiles": int(getattr(unwrapped, "tile_visited_count", 0)),
            "tiles_total": len(getattr(unwrapped, "track", []) or []),
            "off_road_seconds": round(self.off_road_steps * session.step_seconds, 2),
            "seconds": round(session.steps * session.step_seconds, 2),
            "steps": session.steps,
            "ended": self.ended,
        }


def compare(you: dict[str, Any], ai: dict[str, Any]) -> dict[str, Any]:
    """Who did better on each measure ("you", "ai" or "tie"), and the overall winner by score."""
    better = {}
    for name, higher_wins in COMPARED:
        mine, theirs = you[name], ai[name]
        if mine == theirs:
            better[name] = "tie"
        else:
            better[name] = "you" if (mine > theirs) == higher_wins else "ai"
    return {"you": you, "ai": ai, "better": better, "winner": better["score"]}
