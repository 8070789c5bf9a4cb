"""CarRacing-v3 backends and action repeat: the wrappers' bookkeeping on tiny fake envs, EnvPool
against Gymnasium on the same driving (what truly matches: shapes, reward rules, progress, colours,
the frames of the same car once EnvPool's skid marks are off; the tracks drawn from one seed differ),
and make_env's errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from rlcar_core.envs.action_repeat import ActionRepeat, HeldActionPolicy, VectorActionRepeat
from rlcar_core.envs.backends import default_action_repeat
from rlcar_core.envs.factory import make_env
from rlcar_core.errors import RlcarError


class CountingEnv(gym.Env):
    """Reward = 1 + 10 * frame index; terminates after `length` frames."""

    observation_space = gym.spaces.Box(0, 1000, (1,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def __init__(self, length: int):
        self.length = length
        self.frame = 0
        self.actions: list[float] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.frame = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.actions.append(float(np.asarray(action).ravel()[0]))
        reward = 1.0 + 10.0 * self.frame
        self.frame += 1
        return np.array([self.frame], np.float32), reward, self.frame >= self.length, False, {}


def test_action_repeat_sums_rewards_stops_at_the_end_and_counts_frames():
    env = ActionRepeat(CountingEnv(length=5), repeat=2)
    _, info = env.reset(seed=0)
    assert info["frames"] == 0
    results = [env.step(np.array([0.5], np.float32)) for _ in range(3)]
    assert [r[1] for r in results] == [1 + 11, 21 + 31, 41]  # the third stops after one frame
    assert [r[4]["frames"] for r in results] == [2, 2, 1]
    assert [bool(r[2]) for r in results] == [False, False, True]
    assert results[-1][0][0] == 5


class SubsetVectorEnv(gym.vector.VectorEnv):
    """CountingEnv cars of different lengths with next-step autoreset, steppable by subset."""

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, lengths):
        self.cars = [CountingEnv(length) for length in lengths]
        self.num_envs = len(lengths)
        self.single_observation_space = CountingEnv.observation_space
        self.single_action_space = CountingEnv.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.ended = np.zeros(self.num_envs, bool)

    def reset(self, *, seed=None, options=None):
        self.ended[:] = False
        return np.stack([car.reset()[0] for car in self.cars]), {}

    def step(self, actions):
        return self.step_envs(actions, np.arange(self.num_envs))

    def step_envs(self, actions, env_ids):
        rows = []
        for action, index in zip(actions, env_ids, strict=True):
            if self.ended[index]:
                obs, _ = self.cars[index].reset()
                rows.append((obs, 0.0, False, False))
                self.ended[index] = False
            else:
                obs, reward, terminated, truncated, _ = self.cars[index].step(action)
                rows.append((obs, reward, terminated, truncated))
                self.ended[index] = terminated or truncated
        obs, reward, terminated, truncated = map(np.array, zip(*rows, strict=True))
        return np.stack(obs), reward, terminated, truncated, {"marker": np.asarray(env_ids) * 1.0}


def test_vector_action_repeat_stops_each_car_at_its_end_and_autoresets_without_frames():
    env = VectorActionRepeat(SubsetVectorEnv([3, 7]), repeat=3)
    env.reset(seed=0)
    actions = np.array([[0.1], [0.2]], np.float32)
    obs, reward, terminated, truncated, info = env.step(actions)
    np.testing.assert_array_equal(info["frames"], [3, 3])
    np.testing.assert_array_equal(terminated, [True, False])
    np.testing.assert_allclose(reward, [1 + 11 + 21, 1 + 11 + 21])
    obs, reward, terminated, truncated, info = env.step(actions)
    # Car 0 only resets (no frame, no reward); car 1 goes on: frames 3..5.
    np.testing.assert_array_equal(info["frames"], [0, 3])
    np.testing.assert_allclose(reward, [0.0, 31 + 41 + 51])
    np.testing.assert_array_equal(obs[:, 0], [0, 6])
    obs, reward, terminated, truncated, info = env.step(actions)
    np.testing.assert_array_equal(info["frames"], [3, 1])  # car 1 ends after its 7th frame
    np.testing.assert_array_equal(terminated, [True, True])
    assert env.env.cars[0].actions == [pytest.approx(0.1)] * 6  # no repeated action leaked into a reset


def test_held_action_policy_decides_every_k_frames():
    class Counter:
        name, obs_kind = "counter", "pixels"

        def __init__(self):
            self.calls = 0

        def reset(self, num_envs):
            self.calls = 0

        def act(self, obs):
            self.calls += 1
            return np.full((len(obs), 3), self.calls, np.float32)

    policy = HeldActionPolicy(Counter(), repeat=3)
    policy.reset(2)
    actions = [policy.act(np.zeros((2, 1)))[0, 0] for _ in range(7)]
    assert actions == [1, 1, 1, 2, 2, 2, 3]


def test_default_action_repeat():
    assert default_action_repeat("carracing") == 2
    assert default_action_repeat("rlcar") == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(name="rlcar", num_envs=2, backend="envpool"), "applies to --env carracing only"),
        (dict(name="rlcar", action_repeat=2), "applies to --env carracing only"),
        (dict(name="carracing", obs="pixels", backend="gpu"), "unknown CarRacing backend"),
        (dict(name="carracing", obs="pixels", backend="envpool"), "vector envs"),
        (dict(name="carracing", obs="pixels", action_repeat=0), "--action-repeat must be at least 1"),
    ],
)
def test_make_env_rejects_backend_requests_that_do_not_fit(kwargs, message):
    with pytest.raises(RlcarError, match=message):
        make_env(**kwargs)


def test_missing_envpool_is_a_one_line_install_hint(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_envpool(name, *args, **kwargs):
        if name == "envpool":
            raise ImportError("No module named 'envpool'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_envpool)
    with pytest.raises(RlcarError, match=r'pip install "rlcar\[envpool\]"'):
        make_env("carracing", obs="pixels", num_envs=1, backend="envpool")


# -- EnvPool against Gymnasium ----------------------------------------------------------------------

STEPS = 300


def _drive(backend: str, seed: int = 0):
    """A fixed driving sequence: straight, then weaving, at a third of the gas."""
    env = make_env("carracing", obs="pixels", num_envs=1, backend=backend)
    try:
        first, _ = env.reset(seed=seed)
        rewards, frames = [], []
        for t in range(STEPS):
            steer = 0.0 if t < 100 else 0.3 * np.sin(t / 20)
            obs, reward, terminated, truncated, info = env.step(np.array([[steer, 0.3, 0.0]], np.float32))
            assert not (terminated[0] or truncated[0])
            rewards.append(float(reward[0]))
            frames.append(obs[0])
        return first, np.array(rewards), np.array(frames), float(info["progress"][0])
    finally:
        env.close()


def _colour(frames: np.ndarray, kind: str) -> np.ndarray:
    pixels = frames[STEPS // 5 :].reshape(-1, 3).astype(int)  # after the first second's zoom
    red, green, blue = pixels.T
    if kind == "grass":
        mask = green > red + 30
    else:  # the grey road
        mask = (abs(red - green) < 8) & (abs(green - blue) < 8) & (red > 80) & (red < 130)
    assert mask.mean() > 0.02
    return pixels[mask].mean(axis=0)


def _tile_rewards(rewards: np.ndarray) -> np.ndarray:
    return rewards[rewards > 0] + 0.1


def test_envpool_matches_gymnasium_in_observations_reward_rules_and_progress():
    pytest.importorskip("envpool")
    gym_first, gym_rewards, gym_frames, gym_progress = _drive("gymnasium")
    pool_first, pool_rewards, pool_frames, pool_progress = _drive("envpool")
    for first, frames in ((gym_first, gym_frames), (pool_first, pool_frames)):
        assert first.shape == (1, 64, 64, 3) and first.dtype == np.uint8
        assert frames.shape == (STEPS, 64, 64, 3) and frames.dtype == np.uint8
    for rewards, progress in ((gym_rewards, gym_progress), (pool_rewards, pool_progress)):
        # Every frame costs 0.1; a frame that reaches new tiles also pays 1000 / tiles for each.
        np.testing.assert_allclose(rewards[rewards <= 0], -0.1, atol=1e-5)
        tile = _tile_rewards(rewards).min()
        assert 1000 / 400 < tile < 1000 / 100  # tracks have between 100 and 400 tiles
        np.testing.assert_allclose(
            np.round(_tile_rewards(rewards) / tile), _tile_rewards(rewards) / tile, atol=1e-3
        )
        assert rewards[0] > 0  # the start tile pays on the first frame
        # Progress is the tile rewards over the 1000 a lap pays, in both (EnvPool's is derived so).
        assert progress == pytest.approx((rewards.sum() + 0.1 * STEPS) / 1000, abs=1e-4)
        assert 0.02 < progress < 0.2
    # The same seed draws a different track in each implementation (NumPy vs std::mt19937)...
    assert _tile_rewards(gym_rewards).min() != pytest.approx(_tile_rewards(pool_rewards).min(), abs=1e-3)
    # ...drawn in the same colours once cropped and resized.
    for kind in ("grass", "road"):
        np.testing.assert_allclose(_colour(gym_frames, kind), _colour(pool_frames, kind), atol=5)


@pytest.mark.parametrize("dense_above", [20_000, 0])  # the wide dark of the first frames, or not
def test_skid_marks_are_painted_over_and_the_car_and_the_world_beyond_the_playfield_are_not(
    monkeypatch, dense_above
):
    """EnvPool draws skid marks (black on the road, mud on the grass) that Gymnasium's frames lack;
    GymnasiumFrames paints them over with the ground beside them, keeps the black of the car's wheels
    and of the wide dark beyond the playfield, and the kerbs' and the car's reds."""
    from rlcar_core.envs.carracing_envpool import GymnasiumFrames

    monkeypatch.setattr(GymnasiumFrames, "DENSE_ABOVE", dense_above)

    grass, light, road, mud = (102, 204, 102), (102, 230, 102), (102, 102, 102), (102, 102, 0)
    window = np.zeros((700, 1000, 3), np.uint8)
    window[:] = grass
    window[:, 600:800] = light
    window[:, 300:500] = road
    window[:, 900:] = 0  # beyond the playfield
    window[50:60, 300:320] = (255, 0, 0)  # a kerb
    rows, cols = GymnasiumFrames.CAR_BOX
    window[rows, cols] = (204, 0, 0)
    window[600:640, 480:490] = 0  # a wheel
    clean = window.copy()
    window[100:400, 350:352] = 0  # skid marks on the road, one across the other
    window[200:202, 310:490] = 0
    window[646:700, 485:487] = 0  # a trail from under the car to the bottom edge
    for y in range(400, 500):  # mud on the light grass, diagonally
        window[y, 650 + (y - 400) : 652 + (y - 400)] = mud
    erased = GymnasiumFrames.erase_skid_marks(window)
    assert erased == 300 * 2 + 180 * 2 - 4 + 54 * 2 + 100 * 2
    np.testing.assert_array_equal(window, clean)


def test_envpool_frames_are_gymnasiums_frames_of_the_same_car():
    """The same actions from reset: the cars agree (EnvPool's C++ port of the physics), and now so do
    the frames. EnvPool's own 96x96 obs (bilinear taps of its window, with skid marks) differed from
    Gymnasium's by about 3 levels a pixel over the frame and 4-5 on the car; the backend now makes
    Gymnasium's frame of EnvPool's window. The tracks differ beyond the first bend, hence the margin."""
    pytest.importorskip("envpool")
    actions = np.zeros((110, 3), np.float32)
    actions[:, 1] = 0.3
    actions[40:, 0] = 1.0  # full right lock: the car spins off onto the grass, leaving skid marks
    frames = {}
    for backend in ("gymnasium", "envpool"):
        env = make_env("carracing", obs="pixels", num_envs=1, backend=backend)
        try:
            env.reset(seed=0)
            frames[backend] = np.array([env.step(action[None])[0][0] for action in actions])
            if backend == "envpool":  # EnvPool did draw skid marks into its window
                from rlcar_core.envs.carracing_envpool import GymnasiumFrames

                window = np.array(env._pool.render(np.array([0]))[0, :700])
                assert GymnasiumFrames.erase_skid_marks(window) > 100
        finally:
            env.close()
    difference = np.abs(frames["gymnasium"][60:].astype(int) - frames["envpool"][60:])
    assert difference.mean() < 2.0  # 3.1 with EnvPool's own frames
    assert difference[:, 40:56, 26:38].mean() < 2.5  # the car; 4.4 with EnvPool's own frames


# -- train-dreamer's options ------------------------------------------------------------------------


def test_train_dreamer_resolves_the_literature_action_repeat_and_refuses_a_changed_one(tmp_path):
    from rlcar_core.dreamer.train_config import TrainDreamerConfig, resolve, resume

    config, model = resolve(TrainDreamerConfig(env="carracing"))
    assert (config.action_repeat, config.carracing_backend) == (2, "gymnasium")
    assert resolve(TrainDreamerConfig())[0].action_repeat == 1
    with pytest.raises(RlcarError, match="--action-repeat 2"):
        resume(config, model, {"action_repeat": 1}, tmp_path)
    # The backend may change on resume: both count frames alike.
    assert resume(config, model, {"carracing_backend": "envpool"}, tmp_path)[0].carracing_backend == "envpool"
    # A run saved before the option stepped every frame, and resumes so.
    old = TrainDreamerConfig.from_dict({k: v for k, v in config.to_dict().items() if k != "action_repeat"})
    assert resume(old, model, {}, tmp_path)[0].action_repeat == 1
    with pytest.raises(RlcarError, match="applies to --env carracing only"):
        TrainDreamerConfig(env="rlcar", carracing_backend="envpool").validate()


def test_carracing_worker_processes_step_alike_and_leave_the_parents_ctrl_c_alone():
    """Cars in worker processes give the same frames as in-process ones, and making them keeps the
    parent's SIGINT handler (Gymnasium builds one car in the parent for the spaces; only the workers
    ignore Ctrl-C)."""
    import signal

    def handler(signal_number, frame):  # noqa: ARG001 - the signal API's signature
        pass

    previous = signal.signal(signal.SIGINT, handler)
    try:
        observations = []
        for processes in (False, True):
            env = make_env("carracing", obs="pixels", num_envs=2, max_steps=30, processes=processes)
            try:
                assert signal.getsignal(signal.SIGINT) is handler
                env.reset(seed=[5, 6])
                for _ in range(3):
                    obs, *_ = env.step(np.tile([0.0, 1.0, 0.0], (2, 1)).astype(np.float32))
                observations.append(obs)
            finally:
                env.close()
        np.testing.assert_array_equal(observations[0], observations[1])
    finally:
        signal.signal(signal.SIGINT, previous)
