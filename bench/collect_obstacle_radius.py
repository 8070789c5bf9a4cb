"""`rlcar collect` on tracks whose obstacles have another radius: the data of bench/pixel_probe.py's
salience check (does a pixel world model draw obstacles once they cover more of the camera?).

    python bench/collect_obstacle_radius.py 4.0 --run-dir runs/probe-4m --policy heuristic --episodes 16
    python bench/collect_obstacle_radius.py 4.0 --run-dir runs/probe-4m --policy heuristic --episodes 32 --seed 1

The first argument is the radius in metres (RLCar's is 1.3); the rest are rlcar collect's options.
The obstacles are bigger for collisions and for the camera alike. It works by changing the track
spec that `make_track_bank` uses by default, for this process only: the product keeps one obstacle
size, so no command exposes it.
"""

from __future__ import annotations

import inspect
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

import rlcar_core.envs.tracks as tracks  # noqa: E402
from rlcar_core.sim.track import TrackSpec  # noqa: E402


def main() -> None:
    try:
        radius = float(sys.argv[1])
    except (IndexError, ValueError):
        radius = float("nan")
    if not radius > 0:
        print(
            "error: the first argument is the obstacle radius in metres, a positive number", file=sys.stderr
        )
        raise SystemExit(2)
    names = list(inspect.signature(tracks.make_track_bank).parameters)
    assert names[-1] == "spec", f"make_track_bank's last parameter is no longer the spec: {names}"
    defaults = list(tracks.make_track_bank.__defaults__)
    defaults[-1] = TrackSpec(obstacle_radius=radius)
    tracks.make_track_bank.__defaults__ = tuple(defaults)

    from rlcar_cli.main import app

    sys.argv = ["rlcar", "collect", *sys.argv[2:]]
    app()


if __name__ == "__main__":
    main()
