"""Behaviour cloning for C: fit the controller to a teacher's episodes, as the start of its search.

The paper starts CMA-ES from an all-zero C. On RLCar pixels that search finds a slow, careful car (a
third of a lap in 1,000 steps) and stays there: the return of a short episode makes that a broad local
optimum. The dataset already holds the laps of a driver that does better, the built-in heuristic, which
steers round obstacles from its ray sensors. C cannot read those sensors, but it can learn what the
heuristic did from what C does read, [z, h], on the heuristic's own frames. A C fitted that way drives
at once; CMA-ES then searches around it in the real env.

The teacher's frames are replayed through V (the latent cache) and M exactly as the driver would see
them: z is the posterior mean of the frame, h is M's state before (z_t, a_t) is consumed, and the
actions fed to M are the teacher's. The fit minimises the squared error between C's squashed action
and the teacher's, with Adam on the flat parameter vector CMA-ES will search.
"""

from __future__ import annotations

from typing import NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax

from rlcar_core.worldmodels.config import HEURISTIC, ControllerConfig, MDNRNNConfig
from rlcar_core.worldmodels.controller import controller_action, initial_controller_vector, vector_to_params
from rlcar_core.worldmodels.latents import LatentEpisode
from rlcar_core.worldmodels.mdnrnn import initial_rnn_state, make_mdnrnn

# Which collector's episodes C learns from: the only driver in the dataset that laps with obstacles.
TEACHER = HEURISTIC
# Every tenth teacher episode is kept out of the fit, to say how well C imitates on laps it never saw.
VALIDATION_EVERY = 10
_EPISODES_PER_SCAN = 32  # episodes replayed through M side by side (padded to one length, one compile)


class TeacherSteps(NamedTuple):
    """One row per teacher step: what C would read, and what the teacher did."""

    latent: np.ndarray  # (N, z_dim) posterior mean of the frame
    hidden: np.ndarray  # (N, hidden_size) M's state before the step
    action: np.ndarray  # (N, 3)
    episode: np.ndarray  # (N,) index of the episode the step came from


class ImitationFit(NamedTuple):
    vector: np.ndarray  # the fitted controller, as the flat vector CMA-ES searches
    train_error: float  # mean squared action error on the fitted episodes
    validation_r2: tuple[float, float, float]  # per action (steer, gas, brake), on held-out episodes
    train_steps: int
    validation_steps: int


def teacher_files(manifest: dict) -> list[str]:
    """The dataset's episodes that the teacher drove (collectors record their driver in the manifest)."""
    return [entry["file"] for entry in manifest["episodes"] if entry.get("driver") == TEACHER]


def teacher_steps(
    rnn_config: MDNRNNConfig, rnn_params: hk.Params, episodes: list[LatentEpisode]
) -> TeacherSteps:
    """Replay the teacher's episodes through M (teacher forcing) and collect C's inputs at each step."""
    if not episodes:
        raise ValueError("no teacher episodes to imitate")
    rnn = make_mdnrnn(rnn_config)
    length = max(len(episode.action) for episode in episodes)

    @jax.jit
    def hiddens_before(latents, actions):  # (B, T, z), (B, T, A) -> (B, T, hidden)
        def step(state, inputs):
            latent, action = inputs
            _, next_state = rnn.apply.step(rnn_params, latent, action, state)
            return next_state, state.hidden

        state = initial_rnn_state(rnn_config, latents.shape[0])
        _, hidden = jax.lax.scan(step, state, (latents.swapaxes(0, 1), actions.swapaxes(0, 1)))
        return hidden.swapaxes(0, 1)

    rows: list[TeacherSteps] = []
    for start in range(0, len(episodes), _EPISODES_PER_SCAN):
        chunk = episodes[start : start + _EPISODES_PER_SCAN]
        latents = np.zeros((_EPISODES_PER_SCAN, length, rnn_config.z_dim), np.float32)
        actions = np.zeros((_EPISODES_PER_SCAN, length, rnn_config.action_dim), np.float32)
        for row, episode in enumerate(chunk):
            steps = len(episode.action)
            latents[row, :steps] = episode.mean[:steps]  # the frame each action was taken on
            actions[row, :steps] = episode.action
        hidden = np.asarray(hiddens_before(latents, actions))
        for row, episode in enumerate(chunk):
            steps = len(episode.action)
            rows.append(
                TeacherSteps(
                    latents[row, :steps],
                    hidden[row, :steps],
                    actions[row, :steps],
                    np.full(steps, start + row, np.int32),
                )
            )
    return TeacherSteps(*(np.concatenate(parts) for parts in zip(*rows, strict=True)))


def fit_controller(
    config: ControllerConfig,
    data: TeacherSteps,
    seed: int,
    *,
    updates: int = 6000,
    batch_size: int = 1024,
    learning_rate: float = 3e-3,
) -> ImitationFit:
    """Fit C to the teacher's actions; every `VALIDATION_EVERY`-th episode is held out to score the fit.

    Starts where a fresh search would (`initial_controller_vector`), so the only difference from the
    paper's start is the fit. Minibatches are drawn with `seed`; the whole fit is one `lax.scan`."""
    held_out = data.episode % VALIDATION_EVERY == VALIDATION_EVERY - 1
    fitted = ~held_out if held_out.any() and (~held_out).any() else np.ones_like(held_out)
    train = TeacherSteps(*(np.asarray(part[fitted]) for part in data))
    optimizer = optax.adam(learning_rate)

    def actions_of(vector, latent, hidden):
        return controller_action(vector_to_params(vector, config), latent, hidden)

    def loss(vector, latent, hidden, action):
        return jnp.mean(jnp.square(actions_of(vector, latent, hidden) - action))

    @jax.jit
    def fit(vector, key, latent, hidden, action):  # the data as arguments, not constants to fold
        def update(carry, key):
            vector, opt_state = carry
            rows = jax.random.randint(key, (batch_size,), 0, action.shape[0])
            value, grad = jax.value_and_grad(loss)(vector, latent[rows], hidden[rows], action[rows])
            change, opt_state = optimizer.update(grad, opt_state)
            return (optax.apply_updates(vector, change), opt_state), value

        (vector, _), _ = jax.lax.scan(
            update, (vector, optimizer.init(vector)), jax.random.split(key, updates)
        )
        return vector

    start = jnp.asarray(initial_controller_vector(config, seed))
    vector = np.asarray(
        fit(start, jax.random.PRNGKey(seed), train.latent, train.hidden, train.action), np.float32
    )
    train_error = float(loss(vector, train.latent, train.hidden, train.action))
    r2 = (float("nan"),) * 3
    if held_out.any() and (~held_out).any():
        predicted = np.asarray(actions_of(vector, data.latent[held_out], data.hidden[held_out]))
        target = data.action[held_out]
        variance = np.maximum(target.var(axis=0), 1e-12)
        r2 = tuple(float(v) for v in 1.0 - np.mean(np.square(predicted - target), axis=0) / variance)
    return ImitationFit(vector, train_error, r2, int(fitted.sum()), int(held_out.sum()))
