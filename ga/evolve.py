"""The generational loop, written out in the manner of DEAP's ``algorithms.eaSimple``.

One generation is: keep the elite, select parents by tournament, vary them (crossover then
mutation, DEAP's ``varAnd``), evaluate only the individuals whose fitness is invalid through
``toolbox.map``, update the hall of fame, record statistics in the logbook. The same
:func:`next_generation` serves a fresh run and a resumed one, so resuming cannot drift
from the uninterrupted course. CMA-ES, the other strategy, has its loop in ``ga.cmaes``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from deap import algorithms, base, tools

from ga.config import EvolutionConfig
from ga.toolbox import assign, make_logbook


@dataclass
class EvolutionState:
    """Everything the loop carries from one generation to the next (besides the RNG)."""

    generation: int
    population: list
    halloffame: tools.HallOfFame
    logbook: tools.Logbook
    strategy: Any = None  # CMA-ES: the ga.cmaes.CmaRun (the GA carries nothing besides)


class Progress(Protocol):
    """Receives evaluation progress (a progress bar, in ``ga.run``)."""

    def start(self, total: int) -> None:
        """``total`` evaluations are about to be sent out."""

    def advance(self, n: int) -> None:
        """``n`` more evaluations have come back."""


def evaluate_invalid(individuals: list, toolbox: base.Toolbox, progress: Progress | None = None,
                     tasks: tuple | None = None, generation: int | None = None) -> int:
    """Evaluate the individuals without a valid fitness on every track; return how many.

    ``tasks`` (default ``toolbox.tasks``) are the generation's tasks (``EvolutionConfig.generation_tasks``);
    each evaluated individual records ``generation``, which says which tasks its laps were driven on.
    One ``toolbox.map`` per track, all sent out before any result is read, so the executor has
    the whole generation's laps to spread over its workers.
    """
    tasks = toolbox.tasks if tasks is None else tasks
    invalid = [ind for ind in individuals if not ind.fitness.valid]
    if progress is not None:
        progress.start(len(invalid) * len(tasks))
    laps = [toolbox.map(task, invalid) for task in tasks]
    for ind, *results in zip(invalid, *laps, strict=True):
        assign(ind, results, getattr(toolbox, "references", None))
        ind.generation = generation
        if progress is not None:
            progress.advance(len(results))
    return len(invalid)


def record(state: EvolutionState, stats: tools.Statistics, nevals: int) -> dict:
    """Update the hall of fame and log the generation's statistics."""
    state.halloffame.update(state.population)
    entry = stats.compile(state.population)
    state.logbook.record(gen=state.generation, nevals=nevals, **entry)
    return entry


def initial_generation(
    config: EvolutionConfig,
    toolbox: base.Toolbox,
    stats: tools.Statistics,
    progress: Progress | None = None,
) -> EvolutionState:
    """Generation 0: a random population, evaluated. The caller has seeded ``random``."""
    population = toolbox.population(n=config.population)
    state = EvolutionState(0, population, tools.HallOfFame(config.hof_size), make_logbook())
    nevals = evaluate_invalid(population, toolbox, progress, config.generation_tasks(0), 0)
    record(state, stats, nevals)
    return state


def next_generation(
    state: EvolutionState,
    config: EvolutionConfig,
    toolbox: base.Toolbox,
    stats: tools.Statistics,
    progress: Progress | None = None,
) -> int:
    """Advance ``state`` by one generation in place; return the number of evaluations."""
    population = state.population

    # Elitism: the best individuals pass unchanged (and keep their fitness: no re-evaluation).
    elite = [toolbox.clone(ind) for ind in tools.selBest(population, config.elite)]

    # Selection and variation (crossover + mutation invalidate the children's fitness).
    parents = toolbox.select(population, len(population) - len(elite))
    offspring = algorithms.varAnd(parents, toolbox, config.cxpb, config.mutpb)

    # Evaluation of the invalid individuals only, through toolbox.map (the executor).
    nevals = evaluate_invalid(offspring, toolbox, progress, config.generation_tasks(state.generation + 1),
                              state.generation + 1)

    # Replacement, hall of fame, statistics.
    state.population = elite + offspring
    state.generation += 1
    record(state, stats, nevals)
    return nevals


def next_size(state: EvolutionState) -> int:
    """At most this many individuals are evaluated in the next generation."""
    return len(state.population)

