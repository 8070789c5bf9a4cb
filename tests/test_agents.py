"""Built-in drivers: the heuristic laps held-out tracks, random driving does far worse."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlcar_core.agents import make_agent
from rlcar_core.agents.heuristic import heuristic_action
from rlcar_core.errors import RlcarError
from rlcar_core.sim.env import RLCar
from rlcar_core.sim.rollout import first_episode_stats

ENV = RLCar("sensors")


def heuristic_policy(obs, key):
    return jax.vmap(heuristic_action)(obs)


def random_policy(obs, key):
    return jax.random.uniform(key, (obs.shape[0], 3), minval=jnp.array([-1.0, 0.0, 0.0]), maxval=1.0)


@functools.partial(jax.jit, static_argnums=(0,))
def stats_for(policy, params, key, track_ids):
    return first_episode_stats(ENV, params, policy, key, track_ids, 700)


@pytest.mark.slow  # end to end; `make test` runs it
def test_heuristic_laps_held_out_tracks_and_random_does_not(eval_bank):
    params = ENV.default_params(eval_bank)
    tracks = jnp.arange(eval_bank.num_tracks)
    heuristic = jax.device_get(stats_for(heuristic_policy, params, jax.random.PRNGKey(0), tracks))
    random = jax.device_get(stats_for(random_policy, params, jax.random.PRNGKey(0), tracks))
    assert heuristic.lap_complete.all() and not heuristic.crashed.any()
    assert random.progress.mean() < 0.2 and not random.lap_complete.any()
    assert heuristic.episode_return.mean() > random.episode_return.mean() + 50


def test_agents_return_valid_batched_actions():
    sensors = np.random.default_rng(0).uniform(0, 1, (5, 31)).astype(np.float32)
    for name in ("heuristic", "random"):
        actions = make_agent(name).act(sensors)
        assert actions.shape == (5, 3) and actions.dtype == np.float32
        assert (actions[:, 0] >= -1).all() and (actions[:, 0] <= 1).all() and (actions[:, 1:] >= 0).all()


@pytest.mark.parametrize(
    ("name", "env", "message"),
    [
        ("pilot", "rlcar", "unknown agent"),
        ("heuristic", "carracing", "sensors"),
        ("dreamer", "rlcar", "--run-dir"),
    ],
)
def test_make_agent_errors(name, env, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/dreamer here to default to
    with pytest.raises(RlcarError, match=message):
        make_agent(name, env)


def test_a_learned_agent_defaults_to_its_kinds_run(tmp_path, monkeypatch):
    from pathlib import Path

    from rlcar_core.agents import agent_run_dir

    monkeypatch.chdir(tmp_path)
    assert agent_run_dir("heuristic", None) is None
    assert agent_run_dir("dreamer", "mine") == Path("mine")
    with pytest.raises(RlcarError, match="none at runs/worldmodels"):
        agent_run_dir("worldmodel", None)
    (tmp_path / "runs" / "worldmodels").mkdir(parents=True)
    assert agent_run_dir("worldmodel", None) == Path("runs/worldmodels")
