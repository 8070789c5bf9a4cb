"""Best results per env and held-out track, human and AI, kept in ``<root>/leaderboard.json``.

RLCar ranks lap times (fastest first). CarRacing-v3 ranks race scores (highest first): a person rarely
finishes its long lap, so every finished race counts, with its tiles visited and time off the road.

The file is ``{"rlcar": {"<track>": [entries]}, "carracing": {...}}``. Files written before
CarRacing joined held RLCar's ``{"<track>": [laps]}`` alone; they are read as RLCar's board.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from rlcar_core.envs.names import EnvName
from rlcar_core.io.runs import write_json_atomic

LEADERBOARD_FILE = "leaderboard.json"
KEEP_PER_TRACK = 20
# What each env's board is ranked by, and whether more is better.
RANKED_BY = {EnvName.RLCAR: ("lap_time", False), EnvName.CARRACING: ("score", True)}

Boards = dict[str, dict[str, list[dict[str, Any]]]]


def _tracks(value: Any) -> dict[str, list[dict[str, Any]]]:
    if not isinstance(value, dict):
        return {}
    return {str(k): [e for e in v if isinstance(e, dict)] for k, v in value.items() if isinstance(v, list)}


class Leaderboard:
    """Reads and rewrites the file whole (it is small) under a lock; the write is atomic."""

    def __init__(self, root: Path):
        self.path = root / LEADERBOARD_FILE
        self._lock = threading.Lock()

    def read(self) -> Boards:
        """Every env's boards; an unreadable file is an empty board, never an error."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        if not isinstance(data, dict):
            return {}
        envs = {name.value for name in EnvName}
        if data and not set(data) & envs:  # the older RLCar-only file: {"<track>": [laps]}
            return {EnvName.RLCAR.value: _tracks(data)}
        return {env: _tracks(data.get(env)) for env in envs if env in data}

    def entries(self, env: str, track: int) -> list[dict[str, Any]]:
        return self.read().get(EnvName.parse(env).value, {}).get(str(track), [])

    def add(self, track: int, driver: str, kind: str, lap_time: float) -> dict[str, Any]:
        """Record a finished RLCar lap; returns the entry with its rank (1 = fastest) on that track."""
        return self.add_entry(
            EnvName.RLCAR, track, {"driver": driver, "kind": kind, "lap_time": round(float(lap_time), 2)}
        )

    def add_race(
        self, env: str, track: int, driver: str, kind: str, result: dict[str, Any]
    ) -> dict[str, Any]:
        """Record one car's finished CarRacing-v3 race (``score``, ``tiles``, ``tiles_total``,
        ``off_road_seconds``, ``seconds``); an AI keeps only its best entry per track."""
        fields = ("score", "tiles", "tiles_total", "off_road_seconds", "seconds")
        entry = {"driver": driver, "kind": kind, **{k: result[k] for k in fields if k in result}}
        return self.add_entry(env, track, entry, one_per_driver=kind == "ai")

    def add_entry(
        self, env: str, track: int, entry: dict[str, Any], one_per_driver: bool = False
    ) -> dict[str, Any]:
        env = EnvName.parse(env)
        key, higher_first = RANKED_BY[env]
        entry = {**entry, "when": time.strftime("%Y-%m-%d %H:%M:%S")}

        def order(e: dict[str, Any]) -> float:
            value = e.get(key)
            value = (
                float(value) if isinstance(value, int | float) else float("inf") * (-1 if higher_first else 1)
            )
            return -value if higher_first else value

        with self._lock:
            boards = self.read()
            board = boards.setdefault(env.value, {})
            entries = board.get(str(track), [])
            if one_per_driver:
                previous = [e for e in entries if e.get("driver") == entry["driver"]]
                if previous and min(map(order, previous)) <= order(entry):  # its older result stands
                    best = min(previous, key=order)
                    rank = sorted(entries, key=order).index(best) + 1
                    return {**best, "env": env.value, "track": track, "rank": rank, "kept": False}
                entries = [e for e in entries if e.get("driver") != entry["driver"]]
            ranked = sorted([*entries, entry], key=order)
            rank = ranked.index(entry) + 1
            board[str(track)] = ranked[:KEEP_PER_TRACK]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, boards)
        return {**entry, "env": env.value, "track": track, "rank": rank, "kept": rank <= KEEP_PER_TRACK}
