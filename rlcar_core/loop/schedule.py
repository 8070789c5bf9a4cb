"""When things happen in a training loop: `Every(n)` for periodic work, `Ratio` for updates per env step.

Both are small frozen dataclasses with pure methods; the loop keeps the counters (and the update
credit) itself and checkpoints them, so a resumed run keeps the same rhythm::

    checkpoint_every = Every(10)                      # episodes
    if checkpoint_every.crossed(episodes_before, episodes):
        save()

    ratio = Ratio(train_ratio=64.0, replayed_per_update=batch_size * batch_length)
    updates, credit = ratio.owed(credit, env_steps=num_envs)
    for _ in range(updates):
        train_step()
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Every:
    """Fires when a counter crosses a multiple of `n` (a counter can jump by more than one per step,
    e.g. several cars finishing episodes in the same env step, and must still fire once)."""

    n: int

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"Every(n) needs n >= 1, got {self.n}")

    def crossed(self, before: int, after: int) -> bool:
        return after // self.n > before // self.n

    def last_mark(self, count: int) -> int:
        """The largest multiple of `n` at or below `count`: the mark a crossing passed."""
        return count // self.n * self.n

    def due(self, count: int) -> bool:
        """For counters that advance one at a time: True on every multiple of `n`."""
        return count > 0 and count % self.n == 0


@dataclasses.dataclass(frozen=True)
class Ratio:
    """Learner updates owed per env step at a train ratio (replayed steps per env step).

    An update replays `replayed_per_update` steps (batch size x sequence length), so every env step
    earns `train_ratio / replayed_per_update` updates. Fractions carry over as credit, which the loop
    stores in its checkpoint so a resumed run owes exactly what it owed when it stopped.
    """

    train_ratio: float
    replayed_per_update: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.train_ratio) and self.train_ratio > 0):
            raise ValueError(f"train_ratio must be a positive number, got {self.train_ratio}")
        if self.replayed_per_update < 1:
            raise ValueError(f"replayed_per_update must be >= 1, got {self.replayed_per_update}")

    @property
    def updates_per_env_step(self) -> float:
        return self.train_ratio / self.replayed_per_update

    def owed(self, credit: float, env_steps: int) -> tuple[int, float]:
        """(whole updates to run now, credit left over) after `env_steps` more env steps."""
        credit = credit + env_steps * self.updates_per_env_step
        updates = math.floor(credit)
        return updates, credit - updates
