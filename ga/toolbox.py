"""DEAP set-up: individual type, operators, statistics.

Genomes are flat real-valued vectors (network weights or a command schedule), so the
operators are the real-valued ones: blend crossover (cxBlend) mixes parents gene by gene
and can step slightly outside them, gaussian mutation perturbs a share of the genes,
tournament selection keeps pressure moderate. Every random draw of the GA goes through
python's ``random`` module, which the run seeds and checkpoints (CMA-ES draws from numpy's,
see ``ga.cmaes``): that is the whole of a run's randomness.

An individual carries one lap result per track of the run (``results``); its fitness is
:func:`evaluator.metrics.fitness_over_tracks` of them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor

from deap import base, creator, tools

from evaluator.metrics import fitness_over_tracks
from ga.config import EvolutionConfig
from game.bounds import lap_lower_bound

if not hasattr(creator, "RRPFitness"):
    creator.create("RRPFitness", base.Fitness, weights=(1.0,))
if not hasattr(creator, "RRPIndividual"):
    # ``results`` holds the LapResults behind the fitness (one per track), for statistics and best.json.
    # ``generation`` says on which generation's tasks they were driven (perturbations differ by generation).
    creator.create("RRPIndividual", list, fitness=creator.RRPFitness, results=None, generation=None)

Individual = creator.RRPIndividual


def make_individual(genome: Iterable[float], fitness: float | None = None, results=None,
                    generation: int | None = None):
    """An individual from stored data (checkpoints) or fresh genes."""
    ind = Individual(float(x) for x in genome)
    if fitness is not None:
        ind.fitness.values = (float(fitness),)
    ind.results = None if results is None else tuple(results)
    ind.generation = generation
    return ind


def assign(ind, results: Sequence, references: Sequence[float] | None = None) -> None:
    """Attach the lap results (one per track) and the fitness derived from them."""
    ind.results = tuple(results)
    ind.fitness.values = (float(fitness_over_tracks(ind.results, references)),)


def reference_times(config: EvolutionConfig) -> tuple[float, ...] | None:
    """Each track's lower-bound lap time, the yardstick of multi-track fitness (None for one track)."""
    if len(config.tasks) == 1:
        return None
    return tuple(lap_lower_bound(task.load_track()) for task in config.tasks)


def make_toolbox(config: EvolutionConfig, executor: Executor) -> base.Toolbox:
    """A toolbox whose ``map`` is ``executor.map`` and whose ``tasks`` are the run's tasks.

    ``tasks`` (one evaluation task per track) is a plain attribute rather than a registered
    ``evaluate``: ``register`` would wrap a task in a ``functools.partial``, and executors
    accept only a declared task.
    """
    tb = base.Toolbox()
    n = config.genome_length()
    tb.register("attr_gene", random.gauss, 0.0, config.init_sigma)
    tb.register("individual", tools.initRepeat, Individual, tb.attr_gene, n)
    tb.register("population", tools.initRepeat, list, tb.individual)
    tb.register("mate", tools.cxBlend, alpha=config.blend_alpha)
    tb.register("mutate", tools.mutGaussian, mu=0.0, sigma=config.mut_sigma, indpb=config.mut_indpb)
    tb.register("select", tools.selTournament, tournsize=config.tournsize)
    tb.register("map", executor.map)
    tb.tasks = config.tasks
    tb.references = reference_times(config)
    return tb


# --- statistics --------------------------------------------------------------------------------


def finished_all(ind) -> bool:
    """The individual finished the lap on every track."""
    return ind.results is not None and all(r.finished for r in ind.results)


def total_time(ind) -> float:
    """Sum of the lap times over the tracks (only meaningful when every lap finished)."""
    return math.fsum(r.lap_time_s for r in ind.results)


def _lap_times(inds: Sequence) -> list[float]:
    return [total_time(ind) for ind in inds if finished_all(ind)]


def _best_lap(inds: Sequence) -> float | None:
    laps = _lap_times(inds)
    return min(laps) if laps else None


def _mean_lap(inds: Sequence) -> float | None:
    laps = _lap_times(inds)
    return math.fsum(laps) / len(laps) if laps else None


def _finished(inds: Sequence) -> float:
    return sum(1 for ind in inds if finished_all(ind)) / max(1, len(inds))


def _best_progress(inds: Sequence) -> float:
    return max(math.fsum(r.progress for r in ind.results) / len(ind.results) for ind in inds)


def _fit(f: Callable[[list[float]], float]) -> Callable[[Sequence], float]:
    return lambda inds: f([ind.fitness.values[0] for ind in inds])


def make_statistics() -> tools.Statistics:
    """Per-generation figures for the logbook: fitness and lap times over finished laps.

    With several tracks a "lap" is the total over the tracks, counted only for individuals that
    finished every track; progress is the mean over the tracks. Lap statistics are None when
    no individual finished, which keeps the logbook valid JSON.
    """
    stats = tools.Statistics(key=lambda ind: ind)
    stats.register("fit_max", _fit(max))
    stats.register("fit_mean", _fit(lambda xs: math.fsum(xs) / len(xs)))
    stats.register("best_lap", _best_lap)
    stats.register("mean_lap", _mean_lap)
    stats.register("finished", _finished)
    stats.register("best_progress", _best_progress)
    return stats


LOG_FIELDS = ("gen", "nevals", "fit_max", "fit_mean", "best_lap", "mean_lap", "finished", "best_progress")
"""Logbook columns, in order (``tools.Logbook.header``)."""


def make_logbook() -> tools.Logbook:
    """An empty logbook with the columns above."""
    logbook = tools.Logbook()
    logbook.header = list(LOG_FIELDS)
    return logbook
