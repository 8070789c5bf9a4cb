"""`python bench/dream_strip.py DREAM.mp4 --steps 20 60 100 -o strip.png`: a few frames of an
`rlcar dream` video side by side, for the README's dream pictures.

Each frame of the video is already "real left, dream right" under its caption (step, returns), so the
strip is those frames in a row with a thin gap. Frame i of the video is step i + 1 of the episode.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

GAP_PIXELS = 8


def dream_strip(video: Path, steps: list[int]) -> np.ndarray:
    import imageio.v3 as iio

    frames = iio.imread(video)  # (T, H, W, 3)
    missing = [step for step in steps if not 1 <= step <= len(frames)]
    if missing:
        raise ValueError(f"{video} has steps 1-{len(frames)}, not {missing}")
    gap = np.full((frames.shape[1], GAP_PIXELS, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for step in steps:
        parts += [frames[step - 1], gap]
    return np.concatenate(parts[:-1], axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path, help="an `rlcar dream -o` video (.mp4 or .gif)")
    parser.add_argument("--steps", type=int, nargs="+", required=True, help="episode steps to show")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    if not args.video.is_file():
        parser.error(f"no video at {args.video}")

    import imageio.v3 as iio

    from rlcar_core.io.atomic import atomic_path

    try:
        strip = dream_strip(args.video, args.steps)
    except ValueError as error:
        parser.error(str(error))
    with atomic_path(args.output) as temporary:
        iio.imwrite(temporary, strip, extension=".png")
    print(f"wrote {args.output} ({strip.shape[1]}x{strip.shape[0]})")


if __name__ == "__main__":
    main()
