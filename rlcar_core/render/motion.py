"""Smooth motion between physics steps: the car's pose interpolated, and the pace of the frames.

The simulator steps at 10 Hz; a display refreshes at about 60 Hz. Drawing once per step makes the car
jump 2-3 m at a time, so the window draws several frames per step, each with the car's pose blended
between the previous and the current state (the view runs one step, 0.1 s, behind the physics, as
every fixed-timestep game loop does).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np

DISPLAY_FPS = 60


class CarPose(NamedTuple):
    position: np.ndarray  # (2,) metres
    heading: float  # radians, counter-clockwise from +x


def interpolate_pose(previous: CarPose, current: CarPose, fraction: float) -> CarPose:
    """The pose ``fraction`` (0..1) of the way from ``previous`` to ``current``; the heading turns the
    short way round, so a car crossing +-pi does not spin a full turn."""
    fraction = float(np.clip(fraction, 0.0, 1.0))
    position = (1.0 - fraction) * np.asarray(previous.position) + fraction * np.asarray(current.position)
    turn = (current.heading - previous.heading + np.pi) % (2 * np.pi) - np.pi
    return CarPose(position, float(previous.heading + fraction * turn))


def frame_count(seconds: float, display_fps: float) -> int:
    """Frames to draw during ``seconds`` at ``display_fps``: at least one."""
    return max(1, round(seconds * display_fps))


class FramePacer:
    """Yields the fractions of a step (1/n, 2/n, ..., 1) at which to draw, and waits so that they
    reach the screen at the display rate. When drawing falls behind real time, frames are dropped
    (never the last), so the physics keeps its real-time 10 Hz on a slow machine."""

    def __init__(
        self,
        display_fps: float = DISPLAY_FPS,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.display_fps = display_fps
        self.clock = clock
        self.sleep = sleep
        self._due: float | None = None  # when the current step's last frame is due

    def fractions(self, seconds: float) -> Iterator[float]:
        count = frame_count(seconds, self.display_fps)
        now = self.clock()
        # Carry on from the previous step's deadline unless we are far behind (a pause, a reset).
        start = self._due if self._due is not None and now - self._due < seconds else now
        self._due = start + seconds
        for k in range(1, count + 1):
            due = start + k * seconds / count
            if k < count and self.clock() > due:
                continue  # behind: skip this in-between frame
            yield k / count
            wait = due - self.clock()
            if wait > 0:
                self.sleep(wait)
