"""CarRacing-v3 on EnvPool's C++ port: a Gymnasium vector env that hands the rest of rlcar what
`SyncVectorEnv` over `make_carracing` does (64x64 uint8 frames without the HUD, info `progress`,
`lap_complete`, `crashed`, next-step autoreset, env i seeded with seed + i), for ~2.5x less CPU a frame.

The cars are the same: for the same actions from reset, the speed, the four wheels' spin, the
steering angle and the yaw rate read off both envs' indicator bars agree at every frame while both
cars are on the same ground (gas, brake, full lock either way), and the rewards follow the same rules. The frames were not: EnvPool shrinks
its 1000x800 window to 96x96 with `cv::resize`'s bilinear taps (4 of the ~87 window pixels
behind each output pixel: jagged edges, a car that flickers between shapes) and draws skid marks,
where Gymnasium averages every window pixel (`pygame.transform.smoothscale`) and draws none. An
agent trained on those frames drove EnvPool's tracks (a DreamerV3 agent: 238-277) but not
Gymnasium's (-30 to 0). So this backend renders EnvPool's full window and makes Gymnasium's frame of
it (`GymnasiumFrames`): skid marks painted over with the ground next to them, then Gymnasium's own
smoothscale and rlcar's HUD crop.

EnvPool's info has only `env_id` and `elapsed_step`, so the rest is derived from the reward, whose
rules both implementations share: each frame costs 0.1, each new tile pays 1000 / tiles, and leaving
the playfield ends the episode with a reward of exactly -100 (which replaces that frame's reward).
Hence progress = (tile rewards so far) / 1000, a crash is an end with reward -100, and a lap is a
termination without it. The same seed draws a different track than Gymnasium's (EnvPool generates
tracks with std::mt19937, Gymnasium with NumPy); evaluation always runs Gymnasium's own env.

`envpool` is optional (`pip install "rlcar[envpool]"`) and imported only when a pool is built.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from rlcar_core.envs.carracing import HUD_ROWS, HudCropResize, observation_space
from rlcar_core.errors import RlcarError, require_at_least

TASK_ID = "CarRacing-v3"
FRAME_COST = 0.1  # reward CarRacing takes every frame
OFF_PLAYFIELD_REWARD = -100.0  # the reward of the frame that leaves the playfield (ends the episode)
LAP_REWARD = 1000.0  # what all of a track's tiles pay together
WINDOW = (800, 1000)  # CarRacing's window (rows, columns): both envs draw it, then shrink it to 96x96
STATE_SIZE = 96


class GymnasiumFrames:
    """Gymnasium's observation of EnvPool's full window, then rlcar's: (n, 800, 1000, 3) RGB windows
    to (n, 64, 64, 3).

    1. Skid marks off: EnvPool draws them (2-pixel lines, black on the road, mud (102, 102, 0) on the
       grass); Gymnasium's frames have none. Black is also the wheels (inside `CAR_BOX`, where the
       car always sits: the camera follows it) and what lies beyond the playfield (wide areas, in
       the first frames' zoom), so a black pixel counts as a skid mark only outside the car's box
       and with ground `GAP` away on both sides; it takes the colour of the ground there.
    2. Gymnasium's shrink: `pygame.transform.smoothscale` to 96x96 (an area average), the rows above
       the indicator bar only (its rows 0..83 are the window's rows 0..699, the same numbers).
    3. rlcar's crop and resize (`HudCropResize`), as for Gymnasium's frames.
    """

    CAR_BOX = (slice(550, 646), slice(470, 531))  # window rows, columns of the car at any zoom and steer
    GAP = 6  # pixels: wider than a skid mark, narrower than the patches of ground beside it
    DENSE_ABOVE = 20_000  # pixels without blue: more, and erase_skid_marks tests them all at once
    MUD = (102, 102, 0)

    def __init__(self):
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame

        self._pygame = pygame
        self._rows = WINDOW[0] * HUD_ROWS // STATE_SIZE  # 700: the window above the indicator bar
        self._resize = HudCropResize(HUD_ROWS, STATE_SIZE)

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        pygame = self._pygame
        states = []
        for window in windows:
            ground = np.array(window[: self._rows])  # a writable copy
            self.erase_skid_marks(ground)
            surface = pygame.image.frombuffer(ground, (ground.shape[1], ground.shape[0]), "RGB")
            small = pygame.transform.smoothscale(surface, (STATE_SIZE, HUD_ROWS))
            states.append(np.transpose(pygame.surfarray.array3d(small), (1, 0, 2)))
        return self._resize(np.stack(states))

    @classmethod
    def erase_skid_marks(cls, ground: np.ndarray) -> int:
        """Paints over the skid marks of one window (rows, columns, 3), in place; returns the pixels.

        Black and mud are the only colours of the scene without blue besides the reds of the car and
        the kerbs, so only the pixels without blue are looked at, outside the car's box, and of those
        only the ones with blue `GAP` away on both sides: across the rows, along them, or diagonally
        (where two marks cross). A few thousand such pixels are looked at one by one; the wide dark
        of the first frames (hundreds of thousands) all at once."""
        height, width = ground.shape[:2]
        gap = cls.GAP
        flat = ground.reshape(-1, 3)
        blue = np.ascontiguousarray(ground[..., 2])
        index = np.flatnonzero(blue == 0)
        if len(index) > cls.DENSE_ABOVE:
            lit = blue != 0
            across, along, diagonal = (np.zeros_like(lit) for _ in range(3))
            across[:, gap:-gap] = lit[:, : -2 * gap] & lit[:, 2 * gap :]
            along[gap:-gap] = lit[: -2 * gap] & lit[2 * gap :]
            diagonal[gap:-gap, gap:-gap] = lit[: -2 * gap, : -2 * gap] & lit[2 * gap :, 2 * gap :]
            candidate = ~lit & (across | along | diagonal)
            candidate[cls.CAR_BOX] = False
            index = np.flatnonzero(candidate)
            across, along = across.reshape(-1)[index], along.reshape(-1)[index]
        else:
            rows, cols = index // width, index % width
            car_rows, car_cols = cls.CAR_BOX
            outside = (
                (rows < car_rows.start)
                | (rows >= car_rows.stop)
                | (cols < car_cols.start)
                | (cols >= car_cols.stop)
            )
            index, rows, cols = index[outside], rows[outside], cols[outside]
            lit, last = blue.reshape(-1) != 0, height * width - 1

            def both_sides(offset: int, valid: np.ndarray) -> np.ndarray:
                return valid & lit[np.clip(index - offset, 0, last)] & lit[np.clip(index + offset, 0, last)]

            inner_cols = (cols >= gap) & (cols < width - gap)
            inner_rows = (rows >= gap) & (rows < height - gap)
            across = both_sides(gap, inner_cols)
            along = both_sides(gap * width, inner_rows)
            diagonal = both_sides(gap * (width + 1), inner_cols & inner_rows)
            mark = across | along | diagonal
            index, across, along = index[mark], across[mark], along[mark]
        colour = flat[index]
        mark = (colour[:, 0] == colour[:, 1]) & ((colour[:, 0] == 0) | (colour[:, 0] == cls.MUD[0]))
        index, across, along = index[mark], across[mark], along[mark]
        offset = np.where(across, gap, np.where(along, gap * width, gap * (width + 1)))
        flat[index] = flat[index - offset]
        return len(index)


def import_envpool():
    try:
        import envpool
    except ImportError:
        raise RlcarError(
            'the EnvPool backend needs the envpool package: pip install "rlcar[envpool]"'
        ) from None
    return envpool


class EnvPoolCarRacing(gym.vector.VectorEnv):
    """`num_envs` CarRacing-v3 cars in one EnvPool; also steps a subset of them (`step_envs`) so
    that `VectorActionRepeat` can stop a car at the end of its episode."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, num_envs: int, max_steps: int = 1000, num_threads: int | None = None):
        require_at_least("--num-envs", num_envs, 1)
        require_at_least("--max-steps", max_steps, 1)
        self._envpool = import_envpool()
        self.num_envs = num_envs
        self.max_steps = max_steps
        self.num_threads = num_threads
        self.single_observation_space = observation_space()
        self.single_action_space = gym.spaces.Box(
            np.array([-1.0, 0.0, 0.0], np.float32), np.array([1.0, 1.0, 1.0], np.float32), dtype=np.float32
        )
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._pool = None
        self._frames = GymnasiumFrames()
        self._tile_reward = np.zeros(num_envs, np.float64)  # tile rewards of each car's episode so far
        self._resetting = np.zeros(num_envs, bool)  # cars whose last step ended an episode

    def _make_pool(self, seeds: Sequence[int]):
        if self._pool is not None:
            self._pool.close()
        kwargs = {} if self.num_threads is None else {"num_threads": self.num_threads}
        self._pool = self._envpool.make(
            TASK_ID,
            env_type="gymnasium",
            num_envs=self.num_envs,
            seed=int(seeds[0]),
            env_seed=[int(seed) for seed in seeds],
            max_episode_steps=self.max_steps,
            # The full window, from which GymnasiumFrames makes Gymnasium's frame (not the 96x96 obs).
            render_mode="rgb_array",
            render_width=WINDOW[1],
            render_height=WINDOW[0],
            **kwargs,
        )

    def reset(self, *, seed: int | Sequence[int] | None = None, options: dict | None = None):
        del options
        if seed is not None or self._pool is None:
            if seed is None:
                seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
            # EnvPool fixes its seeds when the pool is made: a seeded reset makes a new pool.
            seeds = [seed + index for index in range(self.num_envs)] if np.isscalar(seed) else list(seed)
            if len(seeds) != self.num_envs:
                raise RlcarError(f"reset got {len(seeds)} seeds for {self.num_envs} envs")
            self._make_pool(seeds)
        self._pool.reset()
        self._tile_reward[:] = 0.0
        self._resetting[:] = False
        nothing = np.zeros(self.num_envs, bool)
        frames = self._frames(self._pool.render(np.arange(self.num_envs)))
        return frames, self._info(np.zeros(self.num_envs, np.float32), nothing, nothing)

    def step(self, actions):
        return self.step_envs(actions, np.arange(self.num_envs))

    def step_envs(self, actions, env_ids: np.ndarray):
        """`step` for the cars `env_ids` only; the others stay where they are."""
        if self._pool is None:
            raise RuntimeError("call reset before step")
        env_ids = np.asarray(env_ids, np.int32)
        actions = np.clip(
            np.asarray(actions, np.float32).reshape(len(env_ids), 3),
            self.single_action_space.low,
            self.single_action_space.high,
        )
        _, reward, terminated, truncated, raw_info = self._pool.step(actions, env_ids)
        # Put the rows in the order of `env_ids` (the pool says which car each row is).
        answered = np.asarray(raw_info["env_id"])
        by_id = np.argsort(answered)
        order = by_id[np.searchsorted(answered[by_id], env_ids)]
        reward = np.asarray(reward, np.float64)[order]
        terminated, truncated = np.asarray(terminated, bool)[order], np.asarray(truncated, bool)[order]
        resetting = self._resetting[env_ids]  # these cars' step was the autoreset: a fresh episode
        ended = terminated | truncated
        crashed = ended & (reward == OFF_PLAYFIELD_REWARD) & ~resetting
        tile_reward = np.where(
            resetting, 0.0, self._tile_reward[env_ids] + np.where(crashed, 0.0, reward + FRAME_COST)
        )
        self._tile_reward[env_ids] = tile_reward
        self._resetting[env_ids] = ended
        progress = np.clip(tile_reward / LAP_REWARD, 0.0, 1.0).astype(np.float32)
        lap_complete = terminated & ~crashed
        return (
            self._frames(self._pool.render(env_ids)),
            reward,
            terminated,
            truncated,
            self._info(progress, lap_complete, crashed),
        )

    @staticmethod
    def _info(progress: np.ndarray, lap_complete: np.ndarray, crashed: np.ndarray) -> dict:
        """A vector info as `SyncVectorEnv` builds it: one array per key and a `_key` mask."""
        info = {"progress": progress, "lap_complete": lap_complete, "crashed": crashed}
        return {**info, **{f"_{key}": np.ones(len(progress), bool) for key in info}}

    def close_extras(self, **kwargs):
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def make_carracing_envpool(num_envs: int, max_steps: int = 1000) -> EnvPoolCarRacing:
    return EnvPoolCarRacing(num_envs, max_steps)
