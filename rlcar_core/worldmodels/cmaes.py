"""CMA-ES over flat controller vectors: a thin, silent wrapper around the `cma` package.

Fitness is maximised (returns); `cma` minimises, so the sign is flipped here and nowhere else.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

with warnings.catch_warnings():
    # `cma` warns at import when matplotlib is missing; plotting is never used here.
    warnings.simplefilter("ignore")
    import cma


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
) -> CMAESResult:
    """Maximise `evaluate(candidates (P, n), generation) -> fitness (P,)` for a fixed number of
    generations. `evaluate` gets the generation index so it can derive its own keys purely; a search
    continued from a checkpoint passes `first_generation` so those indices (and keys) stay fresh."""
    initial_params = np.asarray(initial_params, dtype=np.float64).reshape(-1)
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
    return CMAESResult(
        best_params=best_params,
        best_fitness=best_fitness,
        mean=np.asarray(strategy.mean, dtype=np.float64).copy(),
        sigma=float(strategy.sigma),
        history=tuple(history),
    )
