"""Behaviour cloning for C (`rlcar_core.worldmodels.imitate`): the teacher's steps are replayed through M
as the driver would see them, and the fit learns a teacher that C can represent."""

import jax
import numpy as np
import pytest

from rlcar_core.io.data import load_manifest, write_episodes
from rlcar_core.worldmodels.config import ControllerConfig, MDNRNNConfig
from rlcar_core.worldmodels.controller import controller_action, vector_to_params
from rlcar_core.worldmodels.imitate import TEACHER, TeacherSteps, fit_controller, teacher_files, teacher_steps
from rlcar_core.worldmodels.latents import LatentEpisode
from rlcar_core.worldmodels.mdnrnn import init_mdnrnn_params, initial_rnn_state, make_mdnrnn

RNN = MDNRNNConfig(z_dim=4, hidden_size=6, num_mixtures=2)


def _episode(rng, steps):
    return LatentEpisode(
        mean=rng.standard_normal((steps + 1, RNN.z_dim)).astype(np.float32),
        log_var=np.zeros((steps + 1, RNN.z_dim), np.float32),
        action=rng.uniform(0, 1, (steps, 3)).astype(np.float32),
        reward=np.zeros(steps, np.float32),
        terminated=np.zeros(steps, bool),
    )


def test_teacher_steps_hold_ms_state_before_each_step_as_the_driver_sees_it():
    rng = np.random.default_rng(0)
    params = init_mdnrnn_params(RNN, jax.random.key(0))
    episodes = [_episode(rng, steps) for steps in (5, 3, 7)]
    data = teacher_steps(RNN, params, episodes)
    assert data.latent.shape == (15, 4) and data.hidden.shape == (15, 6) and data.action.shape == (15, 3)
    np.testing.assert_array_equal(data.episode, np.repeat([0, 1, 2], [5, 3, 7]))
    # Step by step, as `make_policy_step` drives: h before (z_t, a_t) is consumed; padding the shorter
    # episodes to one length changes nothing.
    rnn = make_mdnrnn(RNN)
    rows = data.episode == 1
    state = initial_rnn_state(RNN, 1)
    for t in range(3):
        np.testing.assert_allclose(data.hidden[rows][t], state.hidden[0], atol=1e-6)
        np.testing.assert_array_equal(data.latent[rows][t], episodes[1].mean[t])
        _, state = rnn.apply.step(params, episodes[1].mean[t][None], episodes[1].action[t][None], state)
    np.testing.assert_array_equal(data.hidden[rows][0], 0.0)
    with pytest.raises(ValueError, match="no teacher episodes"):
        teacher_steps(RNN, params, [])


@pytest.mark.parametrize("hidden_units", [0, 8])
def test_the_fit_learns_a_teacher_that_c_can_represent(hidden_units):
    config = ControllerConfig(z_dim=4, hidden_size=6, hidden_units=hidden_units)
    rng = np.random.default_rng(1)
    count = 4000
    latent = rng.standard_normal((count, 4)).astype(np.float32)
    hidden = rng.uniform(-1, 1, (count, 6)).astype(np.float32)
    teacher = ControllerConfig(z_dim=4, hidden_size=6)  # a linear teacher, within reach of both Cs
    teacher_vector = rng.standard_normal(33).astype(np.float32) * 0.5
    action = np.asarray(controller_action(vector_to_params(teacher_vector, teacher), latent, hidden))
    data = TeacherSteps(latent, hidden, action, np.arange(count, dtype=np.int32) // 100)  # 40 episodes
    fit = fit_controller(config, data, seed=0, updates=1500, batch_size=256, learning_rate=1e-2)
    # Steer and gas vary with the inputs and must be learned; brake too, on this teacher.
    assert min(fit.validation_r2) > 0.9, fit.validation_r2
    assert fit.train_error < 0.1 * float(np.mean(np.var(action, axis=0)))
    assert fit.train_steps == 3600 and fit.validation_steps == 400  # every tenth episode held out
    again = fit_controller(config, data, seed=0, updates=1500, batch_size=256, learning_rate=1e-2)
    np.testing.assert_array_equal(fit.vector, again.vector)  # the seed decides the minibatches


def test_collectors_name_their_driver_and_the_teacher_is_found_by_it(tmp_path):
    rng = np.random.default_rng(0)

    def episode():
        return {
            "obs": rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8),
            "action": np.zeros((2, 3), np.float32),
            "reward": np.zeros(2, np.float32),
            "terminated": np.array([False, True]),
            "truncated": np.zeros(2, bool),
        }

    write_episodes(tmp_path, [episode()], env_name="rlcar")  # written before drivers were recorded
    write_episodes(tmp_path, [episode(), episode()], env_name="rlcar", driver=TEACHER)
    write_episodes(tmp_path, [episode()], env_name="rlcar", driver="brownian")
    manifest = load_manifest(tmp_path)
    assert [entry.get("driver") for entry in manifest["episodes"]] == [None, TEACHER, TEACHER, "brownian"]
    assert teacher_files(manifest) == ["episode_000001.npz", "episode_000002.npz"]


def test_a_search_from_a_fit_takes_a_smaller_first_step_unless_told_otherwise():
    from rlcar_core.worldmodels.config import TrainControllerConfig

    assert TrainControllerConfig().start_sigma == TrainControllerConfig.DEFAULT_SIGMA == 0.1
    assert TrainControllerConfig(imitate=True).start_sigma == TrainControllerConfig.IMITATION_SIGMA == 0.02
    assert TrainControllerConfig(imitate=True, initial_sigma=0.3).start_sigma == 0.3
