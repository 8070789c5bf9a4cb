"""The learner's speed-ups change nothing that is learned: K updates fused into one `lax.scan` call, and
unrolled RSSM scans, give the same losses and parameters as one jitted update per batch (the path
before them), on the same replay windows and keys."""

import dataclasses

import jax
import numpy as np
import pytest

from rlcar_core.dreamer import DreamerConfig, init_training_state, make_update
from rlcar_core.dreamer.learner import Learner, update_key
from rlcar_core.dreamer.replay import ReplayBuffer, replay_spec
from rlcar_core.loop.keys import stream_key

CONFIG = DreamerConfig.preset("tiny", obs_shape=(17,), model_lr=1e-3)
B, T, K = 4, 8, 3


def filled_replay(config: DreamerConfig, streams: int = 4, steps: int = 40) -> ReplayBuffer:
    rng = np.random.default_rng(0)
    replay = ReplayBuffer(streams * steps, replay_spec(config), streams)
    for stream in range(streams):
        time = np.arange(steps)[:, None]
        obs = np.sin(0.1 * time * np.arange(1, 18)[None] + stream).astype(np.float32)
        obs[:, 1] = stream  # which stream a window came from
        replay.add_episode(
            {
                "obs": obs,
                "action": rng.uniform(-1, 1, (steps, 3)).astype(np.float32),
                "reward": obs[:, 0].copy(),
                "is_first": np.arange(steps) % 17 == 0,
                "is_terminal": np.arange(steps) % 17 == 16,
            },
            stream=stream,
        )
    return replay


def old_path(step, state, replay, seed, first, count):
    """The loop before the learner: numpy windows, then `step` (a jitted update) once per batch."""
    losses = []
    for index in range(first, first + count):
        batch = replay.sample(B, T, np.random.default_rng([seed, index]))
        state, metrics = step(state, batch, stream_key(seed, 1, index))
        losses.append({name: float(value) for name, value in metrics.items()})
    return state, losses


def assert_same(losses_a, losses_b, state_a, state_b, rtol=2e-4, atol=2e-5):
    for a, b in zip(losses_a, losses_b, strict=True):
        for name in ("wm/loss", "actor/loss", "critic/loss", "wm/grad_norm"):
            np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=name)
    for a, b in zip(jax.tree.leaves(state_a.params), jax.tree.leaves(state_b.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def start():
    return init_training_state(CONFIG, jax.random.key(0)), filled_replay(CONFIG)


@pytest.fixture(scope="module")
def old_step():
    """The update of the path before the learner, compiled once for every test here."""
    return jax.jit(make_update(CONFIG))


def test_update_key_inside_jit_is_the_loops_stream_key():
    inside = jax.jit(lambda counter: jax.random.key_data(update_key(7, counter)))(np.int32(5))
    np.testing.assert_array_equal(inside, jax.random.key_data(stream_key(7, 1, 5)))


def test_fused_updates_equal_one_update_per_call(start, old_step):
    state, replay = start
    old_state, old_losses = old_path(old_step, state, replay, seed=3, first=10, count=K)
    learner = Learner(CONFIG, B, T, seed=3)
    new_state, new_losses = learner.train(learner.place(state), replay, first_update=10, count=K)
    assert int(new_state.step) == K
    assert_same(old_losses, new_losses, old_state, new_state)


@pytest.mark.slow  # the fused path (the default for sensors) is checked above
def test_unfused_learner_is_the_old_path(start, old_step):
    state, replay = start
    old_state, old_losses = old_path(old_step, state, replay, seed=3, first=0, count=2)
    learner = Learner(CONFIG, B, T, seed=3, fused=False)
    new_state, new_losses = learner.train(learner.place(state), replay, first_update=0, count=2)
    assert_same(old_losses, new_losses, old_state, new_state, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # a fully unrolled update takes a while to compile
def test_unrolled_scans_compute_the_same_update(start, old_step):
    state, replay = start
    unrolled = jax.jit(make_update(dataclasses.replace(CONFIG, scan_unroll=0)))
    old_state, old_losses = old_path(old_step, state, replay, seed=1, first=0, count=1)
    new_state, new_losses = old_path(unrolled, state, replay, seed=1, first=0, count=1)
    assert_same(old_losses, new_losses, old_state, new_state)


def test_windows_come_from_each_devices_own_streams():
    replay = filled_replay(CONFIG, streams=4)
    rng = np.random.default_rng(0)
    for _ in range(5):
        batch = replay.sample(6, T, rng, streams=slice(2, 4))
        assert set(np.unique(batch["obs"][:, :, 1])) <= {2.0, 3.0}
        assert batch["is_first"][:, 0].all()
