"""CMA-ES, the second strategy: DEAP's ``cma.Strategy`` in the manner of ``algorithms.eaGenerateUpdate``.

One generation is: sample ``lambda`` (the run's population) individuals from the current
search distribution, evaluate them through ``toolbox.map`` on every track (the same
:func:`ga.evolve.evaluate_invalid` as the GA, so every executor and the fleet work the same),
update the hall of fame, and move the distribution (mean, step size, covariance) towards the
best half. Generation 0 is the same step from the initial distribution: mean 0 (a network
that presses no key), step size ``init_sigma``.

Why CMA-ES, and by default: at equal numbers of laps (``benchmarks/bench_strategies.py``, 6,528
laps per run, seeds 0-2) its mean best lap was x0.956 of the GA's on ``circuit`` and x0.998 on
``hairpins``: it learns which directions of the 172-gene space matter instead of mutating genes
one by one.

DEAP's strategy draws its samples from numpy's global generator. The run seeds that generator
and the checkpoint carries its state and the strategy's own state as JSON (no pickle), so a
stopped and resumed run ends exactly where the uninterrupted one would.

The strategy's linear algebra (sampling, covariance update, eigen-decomposition of a 172 x 172
matrix) runs with one BLAS thread (``threadpoolctl``): with OpenBLAS's default threads competing
with the evaluation workers for the cores, one eigen-decomposition took 0.68 s instead of
0.01 s here, and one thread also keeps the arithmetic the same whatever the machine's core count.
"""

from __future__ import annotations

import numpy as np
from deap import base, cma, tools
from pydantic import BaseModel, ConfigDict
from threadpoolctl import threadpool_limits

from ga.config import EvolutionConfig
from ga.evolve import EvolutionState, Progress, evaluate_invalid, record
from ga.toolbox import make_individual, make_logbook


def make_strategy(config: EvolutionConfig) -> cma.Strategy:
    """The initial search distribution of a run."""
    with threadpool_limits(limits=1, user_api="blas"):
        return cma.Strategy(centroid=[0.0] * config.genome_length(), sigma=config.init_sigma,
                            lambda_=config.population)


def _generation(state: EvolutionState, toolbox: base.Toolbox, stats: tools.Statistics,
                progress: Progress | None) -> int:
    strategy: cma.Strategy = state.strategy

    # Sample lambda new individuals from the current distribution.
    with threadpool_limits(limits=1, user_api="blas"):
        population = strategy.generate(make_individual)

    # Evaluate them through toolbox.map (the executor), on every track.
    nevals = evaluate_invalid(population, toolbox, progress)

    # Hall of fame and statistics, then move the distribution towards the best mu.
    state.population = population
    record(state, stats, nevals)
    with threadpool_limits(limits=1, user_api="blas"):
        strategy.update(population)
    return nevals


def initial_generation(config: EvolutionConfig, toolbox: base.Toolbox, stats: tools.Statistics,
                       progress: Progress | None = None) -> EvolutionState:
    """Generation 0 from the initial distribution. The caller has seeded ``numpy.random``."""
    state = EvolutionState(0, [], tools.HallOfFame(config.hof_size), make_logbook(), make_strategy(config))
    _generation(state, toolbox, stats, progress)
    return state


def next_generation(state: EvolutionState, config: EvolutionConfig, toolbox: base.Toolbox,
                    stats: tools.Statistics, progress: Progress | None = None) -> int:
    """Advance ``state`` by one generation in place; return the number of evaluations."""
    state.generation += 1
    return _generation(state, toolbox, stats, progress)


# --- checkpoint state ----------------------------------------------------------------------------


class StrategyState(BaseModel):
    """What ``cma.Strategy.update`` changes, as JSON. Everything else follows from the config.

    The eigen-decomposition of ``C`` is recomputed on load exactly as ``update`` computes it
    (same input, same numpy), instead of doubling the checkpoint's size.
    """

    model_config = ConfigDict(extra="forbid")
    centroid: list[float]
    sigma: float
    pc: list[float]
    ps: list[float]
    C: list[list[float]]
    update_count: int


def strategy_to_json(strategy: cma.Strategy) -> dict:
    """The strategy's state for the checkpoint."""
    return {
        "centroid": strategy.centroid.tolist(), "sigma": float(strategy.sigma),
        "pc": strategy.pc.tolist(), "ps": strategy.ps.tolist(), "C": strategy.C.tolist(),
        "update_count": int(strategy.update_count),
    }


def strategy_from_json(config: EvolutionConfig, data: StrategyState) -> cma.Strategy:
    """A strategy in the state ``data`` describes; ValueError if it does not fit the config."""
    n = config.genome_length()
    if any(len(v) != n for v in (data.centroid, data.pc, data.ps)) or len(data.C) != n or any(
        len(row) != n for row in data.C
    ):
        raise ValueError(f"CMA-ES state does not match the genome length {n}")
    if not data.sigma > 0 or not np.isfinite(data.sigma) or data.update_count < 0:
        raise ValueError("CMA-ES step size must be positive and finite, the update count non-negative")
    strategy = make_strategy(config)
    strategy.centroid = np.array(data.centroid)
    strategy.sigma = np.float64(data.sigma)
    strategy.pc = np.array(data.pc)
    strategy.ps = np.array(data.ps)
    strategy.C = np.array(data.C)
    if not np.isfinite(strategy.C).all():
        raise ValueError("CMA-ES covariance contains NaN or infinite values")
    strategy.update_count = data.update_count
    # As at the end of cma.Strategy.update:
    with threadpool_limits(limits=1, user_api="blas"):
        strategy.diagD, strategy.B = np.linalg.eigh(strategy.C)
    indx = np.argsort(strategy.diagD)
    strategy.cond = strategy.diagD[indx[-1]] / strategy.diagD[indx[0]]
    strategy.diagD = strategy.diagD[indx] ** 0.5
    strategy.B = strategy.B[:, indx]
    strategy.BD = strategy.B * strategy.diagD
    return strategy
