"""Controller (C): a = squash(W [z, h] + b) (or W z, the paper's ablation of M), or with
`hidden_units` N > 0 one tanh layer first, a = squash(W2 tanh(W1 [z, h] + b1) + b2); the World
Models driver built on it; and the CMA-ES search that fits it as one flat vector.

Squashing gives the CarRacing action ranges: steer in [-1, 1] (tanh), gas and brake in [0, 1]
(sigmoid), so any parameter vector CMA-ES proposes yields a valid action. CMA-ES is a thin, silent
wrapper around the `cma` package; fitness is maximised (returns) while `cma` minimises, so the sign is
flipped in `run_cmaes` and nowhere else.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from rlcar_core.loop import mesh as meshes
from rlcar_core.worldmodels.config import ControllerConfig, MDNRNNConfig, VAEConfig
from rlcar_core.worldmodels.mdnrnn import LSTMState, make_mdnrnn
from rlcar_core.worldmodels.vae import make_vae

with warnings.catch_warnings():
    # `cma` warns at import when matplotlib is missing; plotting is never used here.
    warnings.simplefilter("ignore")
    import cma

ACTION_DIM = 3  # steer, gas, brake
# Above this many parameters CMA-ES adapts only the diagonal of its covariance (sep-CMA-ES): the full
# n x n matrix and its eigendecomposition would dwarf the dream itself (a 32-unit hidden layer on
# [z, h] of 288 inputs already has ~9k parameters).
FULL_COVARIANCE_LIMIT = 2000


class ControllerParams(NamedTuple):
    weight: jax.Array  # (features, 3): features = z_dim + hidden_size (z_dim alone), or hidden_units
    bias: jax.Array  # (3,)
    # The hidden layer, None for the paper's linear controller (None is an empty pytree node, so
    # both shapes jit and vmap alike).
    hidden_weight: jax.Array | None = None  # (z_dim + hidden_size, hidden_units)
    hidden_bias: jax.Array | None = None  # (hidden_units,)


def controller_input_size(config: ControllerConfig) -> int:
    return config.z_dim + (config.hidden_size if config.sees_hidden else 0)


def _output_inputs(config: ControllerConfig) -> int:
    return config.hidden_units or controller_input_size(config)


def num_controller_params(config: ControllerConfig) -> int:
    hidden = (controller_input_size(config) + 1) * config.hidden_units
    return hidden + (_output_inputs(config) + 1) * ACTION_DIM


def zero_controller_params(config: ControllerConfig) -> ControllerParams:
    """All-zero weights: steer 0, half gas, half brake. CMA-ES starts the linear C here, as in the paper."""
    return vector_to_params(jnp.zeros((num_controller_params(config),), jnp.float32), config)


def initial_controller_vector(config: ControllerConfig, seed: int) -> np.ndarray:
    """Where a new search starts. Linear: all zeros (the paper). With a hidden layer, zeros would leave
    every output weight multiplying tanh(0) = 0, a flat spot where no single change moves the action;
    so the hidden weights start random (variance 1 / inputs, as Lecun init) and the output at zero:
    still the neutral action, but every output weight now has a feature to act on."""
    vector = np.zeros(num_controller_params(config), np.float32)
    if config.hidden_units:
        inputs = controller_input_size(config)
        count = inputs * config.hidden_units
        rng = np.random.default_rng(seed)
        vector[:count] = rng.standard_normal(count) / np.sqrt(inputs)
    return vector


def params_to_vector(params: ControllerParams) -> jax.Array:
    """Hidden layer first (when there is one), then the output layer; weights row-major, then biases."""
    parts = [params.weight.reshape(params.weight.shape[:-2] + (-1,)), params.bias]
    if params.hidden_weight is not None:
        hidden_weight = params.hidden_weight.reshape(params.hidden_weight.shape[:-2] + (-1,))
        parts = [hidden_weight, params.hidden_bias, *parts]
    return jnp.concatenate(parts, axis=-1)


def vector_to_params(vector: jax.Array, config: ControllerConfig) -> ControllerParams:
    """Inverse of `params_to_vector`; works under jit and vmap (static slicing only)."""
    size = num_controller_params(config)
    if vector.shape[-1] != size:
        raise ValueError(f"controller vector has {vector.shape[-1]} entries, config needs {size}")
    batch = vector.shape[:-1]
    offset = 0

    def take(*shape: int) -> jax.Array:
        nonlocal offset
        count = int(np.prod(shape))
        piece = vector[..., offset : offset + count].reshape(batch + shape)
        offset += count
        return piece

    hidden_weight = hidden_bias = None
    if config.hidden_units:
        hidden_weight = take(controller_input_size(config), config.hidden_units)
        hidden_bias = take(config.hidden_units)
    weight = take(_output_inputs(config), ACTION_DIM)
    bias = take(ACTION_DIM)
    return ControllerParams(weight, bias, hidden_weight, hidden_bias)


def squash_action(raw: jax.Array) -> jax.Array:
    steer = jnp.tanh(raw[..., 0])
    gas = jax.nn.sigmoid(raw[..., 1])
    brake = jax.nn.sigmoid(raw[..., 2])
    return jnp.stack([steer, gas, brake], axis=-1)


def controller_action(params: ControllerParams, latent: jax.Array, hidden: jax.Array) -> jax.Array:
    """latent (..., z_dim), hidden (..., hidden_size) -> action (..., 3). The first layer's rows say
    what C reads: [z, h], or z alone (`ControllerConfig.sees_hidden`), z coming first."""
    first_layer = params.weight if params.hidden_weight is None else params.hidden_weight
    features = jnp.concatenate([latent, hidden], axis=-1)[..., : first_layer.shape[-2]]
    if params.hidden_weight is not None:
        features = jnp.tanh(features @ params.hidden_weight + params.hidden_bias)
    return squash_action(features @ params.weight + params.bias)


def clip_action(action: jax.Array) -> jax.Array:
    """Back into the action box after noise was added: steer [-1, 1], gas and brake [0, 1]."""
    low = jnp.asarray([-1.0, 0.0, 0.0], action.dtype)
    return jnp.clip(action, low, 1.0)


class WorldModelParams(NamedTuple):
    vae: hk.Params
    rnn: hk.Params


PolicyStep = Callable[[WorldModelParams, jax.Array, jax.Array, LSTMState], tuple[jax.Array, LSTMState]]


def make_policy_step(
    vae_config: VAEConfig, rnn_config: MDNRNNConfig, controller_config: ControllerConfig
) -> PolicyStep:
    """The World Models driver as one pure, batched step: frame -> z -> action from [z, h] -> next h.

    `step(params, controller_vectors (N, n), frames (N, 64, 64, 3) uint8, rnn_state, action_noise=None)
    -> (actions (N, 3), rnn_state)`. Each car may drive with its own controller, so CMA-ES candidates
    share one call; an agent with one controller passes it tiled. z is the posterior mean (react to the
    road, not to encoder noise); the controller sees h before (z_t, a_t) is consumed, as the MDN-RNN
    was trained. `action_noise` (N, 3), when given, is added to the actions (then clipped to the box)
    before M consumes them, so h follows the action the car really took (exploration while collecting)."""
    vae = make_vae(vae_config)
    rnn = make_mdnrnn(rnn_config)

    def step(params: WorldModelParams, controller_vectors, frames, rnn_state: LSTMState, action_noise=None):
        latent, _ = vae.apply.encode(params.vae, frames)
        controllers = vector_to_params(controller_vectors, controller_config)
        actions = jax.vmap(controller_action)(controllers, latent, rnn_state.hidden)
        if action_noise is not None:
            actions = clip_action(actions + action_noise)
        _, rnn_state = rnn.apply.step(params.rnn, latent, actions, rnn_state)
        return actions, rnn_state

    return step


@functools.cache
def jitted_policy_step(
    vae_config: VAEConfig, rnn_config: MDNRNNConfig, controller_config: ControllerConfig
) -> PolicyStep:
    """`make_policy_step` under jit, cached so agents and training with the same shapes share a compile."""
    return jax.jit(make_policy_step(vae_config, rnn_config, controller_config))


# -- CMA-ES ---------------------------------------------------------------------------------------


def spread_population(fitness: Callable, mesh: Mesh) -> Callable:
    """`fitness(model_params, candidates (P, n), starts, temperature, key) -> (P,)` (the dream's, see
    `dream.make_dream_fitness`) jitted with the population axis split over `mesh`'s devices and the
    other arguments replicated. A candidate's score depends only on its own row, so the population
    is padded to a multiple of the device count with copies of its last row (dropped again) and
    scores exactly as it does on one device."""
    replicated = meshes.replicated(mesh)
    fitness_in_parallel = jax.jit(
        fitness,
        in_shardings=(replicated, meshes.batch_sharded(mesh), replicated, replicated, replicated),
        out_shardings=meshes.batch_sharded(mesh),
    )
    devices = mesh.devices.size

    def spread(model_params, candidates, starts, temperature, key):
        candidates = np.asarray(candidates)
        count = len(candidates)
        pad = -count % devices
        if pad:
            candidates = np.concatenate([candidates, np.repeat(candidates[-1:], pad, axis=0)])
        return fitness_in_parallel(model_params, candidates, starts, temperature, key)[:count]

    return spread


class GenerationStats(NamedTuple):
    generation: int
    mean_fitness: float
    max_fitness: float
    min_fitness: float
    best_fitness: float  # best seen so far, across generations
    sigma: float
    # The search state after this generation, so a caller can checkpoint it and later continue with
    # `run_cmaes(..., initial_params=mean, initial_sigma=sigma, first_generation=generation + 1)`.
    mean: np.ndarray | None = None
    best_params: np.ndarray | None = None  # the candidate that scored `best_fitness`


class CMAESResult(NamedTuple):
    best_params: np.ndarray  # best single candidate ever evaluated
    best_fitness: float
    mean: np.ndarray  # final search mean; usually the more robust controller under noisy fitness
    sigma: float  # with `mean`, enough to continue the search in a later run
    history: tuple[GenerationStats, ...]


EvaluateFn = Callable[[np.ndarray, int], np.ndarray]


def _sanitize(fitness: np.ndarray, population_size: int) -> np.ndarray:
    fitness = np.asarray(fitness, dtype=np.float64).reshape(-1)
    if fitness.shape != (population_size,):
        raise ValueError(
            f"evaluate returned {fitness.shape[0]} fitness values for {population_size} candidates"
        )
    finite = np.isfinite(fitness)
    if not finite.any():
        raise FloatingPointError("every candidate's fitness is non-finite")
    # A diverged candidate should rank last rather than corrupt the covariance update.
    worst = fitness[finite].min() - 1.0
    return np.where(finite, fitness, worst)


def run_cmaes(
    evaluate: EvaluateFn,
    initial_params: np.ndarray,
    *,
    generations: int,
    population_size: int,
    initial_sigma: float,
    seed: int,
    on_generation: Callable[[GenerationStats], None] | None = None,
    first_generation: int = 0,
    should_stop: Callable[[], bool] | None = None,
    diagonal: bool | None = None,
) -> CMAESResult:
    """Maximise `evaluate(candidates (P, n), generation) -> fitness (P,)` for a fixed number of
    generations. `evaluate` gets the generation index so it can derive its own keys purely; a search
    continued from a checkpoint passes `first_generation` so those indices (and keys) stay fresh.
    `should_stop()` is asked after each generation; True ends the search early (e.g. on Ctrl-C).
    `diagonal` adapts only the covariance's diagonal; None decides by size (FULL_COVARIANCE_LIMIT)."""
    initial_params = np.asarray(initial_params, dtype=np.float64).reshape(-1)
    if diagonal is None:
        diagonal = initial_params.size > FULL_COVARIANCE_LIMIT
    rng = np.random.default_rng(seed)
    options = {
        "popsize": population_size,
        "verbose": -9,
        "verb_log": 0,
        "verb_disp": 0,
        # Our own generator instead of `seed`, which would reseed numpy's global random state;
        # a NaN seed is how `cma` is told to skip seeding altogether.
        "randn": lambda *shape: rng.standard_normal(shape),
        "seed": float("nan"),
    }
    if diagonal:
        options["CMA_diagonal"] = True
    strategy = cma.CMAEvolutionStrategy(initial_params, initial_sigma, options)
    best_params, best_fitness = initial_params.copy(), -np.inf
    history = []
    for generation in range(first_generation, first_generation + generations):
        candidates = np.asarray(strategy.ask(), dtype=np.float64)
        fitness = _sanitize(evaluate(candidates, generation), population_size)
        strategy.tell(list(candidates), list(-fitness))
        if fitness.max() > best_fitness:
            best_fitness = float(fitness.max())
            best_params = candidates[int(fitness.argmax())].copy()
        stats = GenerationStats(
            generation=generation,
            mean_fitness=float(fitness.mean()),
            max_fitness=float(fitness.max()),
            min_fitness=float(fitness.min()),
            best_fitness=best_fitness,
            sigma=float(strategy.sigma),
            mean=np.asarray(strategy.mean, dtype=np.float64).copy(),
            best_params=best_params.copy(),
        )
        history.append(stats)
        if on_generation is not None:
            on_generation(stats)
        if should_stop is not None and should_stop():
            break
    return CMAESResult(
        best_params=best_params,
        best_fitness=best_fitness,
        mean=np.asarray(strategy.mean, dtype=np.float64).copy(),
        sigma=float(strategy.sigma),
        history=tuple(history),
    )
