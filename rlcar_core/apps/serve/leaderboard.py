"""Best lap times per held-out track, human and AI, kept in ``<root>/leaderboard.json``."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from rlcar_core.io.runs import write_json_atomic

LEADERBOARD_FILE = "leaderboard.json"
KEEP_PER_TRACK = 20


class Leaderboard:
    """Reads and rewrites the file whole (it is small) under a lock; the write is atomic."""

    def __init__(self, root: Path):
        self.path = root / LEADERBOARD_FILE
        self._lock = threading.Lock()

    def read(self) -> dict[str, list[dict[str, Any]]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, list)}

    def add(self, track: int, driver: str, kind: str, lap_time: float) -> dict[str, Any]:
        """Record a finished lap; returns the entry with its rank (1 = fastest) on that track."""
        entry = {
            "driver": driver,
            "kind": kind,
            "lap_time": round(float(lap_time), 2),
            "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        with self._lock:
            board = self.read()
            laps = sorted([*board.get(str(track), []), entry], key=lambda e: e["lap_time"])
            rank = laps.index(entry) + 1
            board[str(track)] = laps[:KEEP_PER_TRACK]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, board)
        return {**entry, "track": track, "rank": rank}
