"""CMA-ES, the default strategy: pycma (the reference implementation) behind an ask/tell adapter,
with IPOP restarts.

One generation is: ask pycma for ``lambda`` genomes, evaluate them through ``toolbox.map`` on every
track (the same :func:`ga.evolve.evaluate_invalid` as the GA, so every executor and the fleet work
the same), update the hall of fame, tell pycma the fitnesses (negated: pycma minimises). pycma runs
with its defaults (``lambda = 4 + 3 ln n``, 19 for the 172-gene MLP) and the active covariance
update on (negative weights for the worst half), which the measurements in ``docs/optimizer.md``
found to be what makes it escape the plateau more often than DEAP's ``cma.Strategy``.

**Restarts (IPOP).** When the current restart stalls, a new CMA-ES starts from scratch (mean 0,
step ``init_sigma``) with ``restart_factor`` times the population; the hall of fame keeps the best of
every restart. The stall rule, checked before each generation: the restart's best fitness
(1000 - lap time once a lap is finished) improved by less than ``stall_tol`` over the last
``max(10, ceil(stall_laps / lambda))`` generations, or pycma's own termination criteria fire. Each
restart is one line of the run's output (``restart 1 at generation 57: ...``) and an entry in the
checkpoint. The rule depends on nothing but the run's history, never on the budget, so a longer
run is an extension of a shorter one.

**State as data.** pycma's object is not written out; the checkpoint holds the fitness values told
after every generation (and the restarts). Loading replays ask/tell with those values without
driving a lap (about a second per hundred generations), and checks that the replay asks exactly
the genomes stored in the checkpoint's population: a resumed run continues the very same
distribution, and a replay that would diverge (another pycma version, other arithmetic) is refused
instead of resumed into another run.

**Same numbers on every machine.** Each restart draws its samples from its own generator
(PCG64 seeded with (run seed, restart)), and pycma computes inside
:func:`ga.numerics.kernel_independent`: its products and its eigen-decomposition do not go through
BLAS, so they do not depend on the OpenBLAS kernel (``OPENBLAS_CORETYPE``) or the CPU.
"""

from __future__ import annotations

import math
import warnings

import cma
import numpy as np
from deap import base, tools
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

from ga import numerics
from ga.config import EvolutionConfig
from ga.evolve import EvolutionState, Progress, evaluate_invalid, record
from ga.toolbox import make_individual, make_logbook

IGNORED_STOPS = ("maxiter", "maxfevals", "ftarget", "timeout")
"""pycma's termination criteria that do not count as a stall (the budget is the run's business)."""


def default_population(genes: int) -> int:
    """pycma's default lambda for ``genes`` dimensions."""
    return 4 + int(3 * math.log(genes))


class Restart(BaseModel):
    """One CMA-ES (re)start: from which generation, with which population, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    generation: int = Field(ge=0)
    population: int = Field(ge=2)
    reason: str


class StrategyState(BaseModel):
    """The checkpointed CMA-ES state: restarts and the values told after every generation."""

    model_config = ConfigDict(extra="forbid")
    restarts: list[Restart] = Field(min_length=1)
    told: list[list[FiniteFloat]]


class CmaRun:
    """pycma with IPOP restarts, advanced one ask/tell at a time."""

    def __init__(self, config: EvolutionConfig) -> None:
        self.config = config
        self.restarts: list[Restart] = []
        self.told: list[list[float]] = []
        self.es: cma.CMAEvolutionStrategy | None = None
        self.asked: list[np.ndarray] = []
        self._best: list[float] = []  # the current restart's best fitness after each of its generations
        self._champion: tuple[float, np.ndarray] | None = None  # the best (fitness, genome) of every restart

    @property
    def population(self) -> int:
        """lambda of the current restart."""
        return self.restarts[-1].population if self.restarts else self.config.population

    def next_population(self) -> int:
        """lambda of the next generation (after a restart, if one is due)."""
        if not self.restarts:
            return self.config.population
        return self._restarted_population() if self.stall_reason() else self.population

    def _restarted_population(self) -> int:
        return max(2, round(self.population * self.config.restart_factor))

    def _start(self, generation: int, population: int, reason: str) -> None:
        index = len(self.restarts)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.config.seed, index])))

        def randn(*shape: int) -> np.ndarray:
            return rng.standard_normal(shape)

        opts = {"popsize": population, "randn": randn, "CMA_active": True,
                "CMA_eigenmethod": numerics.eigh, "verbose": -9, "verb_log": 0, "verb_disp": 0,
                "maxiter": np.inf}
        warm = self.config.restart_sigma is not None and self._champion is not None
        x0 = self._champion[1].copy() if warm else np.zeros(self.config.genome_length())
        sigma0 = self.config.restart_sigma if warm else self.config.init_sigma
        with numerics.kernel_independent(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.es = cma.CMAEvolutionStrategy(x0, sigma0, opts)
        self.restarts.append(Restart(generation=generation, population=population, reason=reason))
        self._best = []

    def stall_reason(self) -> str | None:
        """Why the current restart should end now (None: it goes on)."""
        cfg = self.config
        if len(self.restarts) > cfg.restarts:
            return None
        window = max(10, math.ceil(cfg.stall_laps / self.population))
        if len(self._best) > window:
            gain = self._best[-1] - self._best[-1 - window]
            if gain < cfg.stall_tol:
                return (f"stall: best fitness {self._best[-1]:.2f} gained {gain:.3f} < {cfg.stall_tol:g} "
                        f"in {window} generations ({window * self.population} laps)")
        with numerics.kernel_independent(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stops = list(self.es.stop(ignore_list=IGNORED_STOPS))
        if stops:
            return f"pycma stop: {', '.join(sorted(stops))}"
        return None

    def ask(self, generation: int) -> list[np.ndarray]:
        """The genomes of ``generation``, after a restart if one is due."""
        if not self.restarts:
            self._start(generation, self.config.population, "initial")
        else:
            reason = self.stall_reason()
            if reason:
                self._start(generation, self._restarted_population(), reason)
        with numerics.kernel_independent(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.asked = self.es.ask()
        return self.asked

    def tell(self, fitnesses: list[float]) -> None:
        """Tell pycma the fitnesses (higher is better) of the genomes just asked, in their order."""
        values = [float(f) for f in fitnesses]
        with numerics.kernel_independent(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.es.tell(self.asked, [-f for f in values])
        self.told.append(values)
        best = max(values)
        if self._champion is None or best > self._champion[0]:
            self._champion = (best, np.array(self.asked[values.index(best)], dtype=float))
        self._best.append(best if not self._best else max(best, self._best[-1]))

    def restart_at(self, generation: int) -> Restart | None:
        """The restart that began at ``generation`` (None for the initial start and other generations)."""
        for r in self.restarts[1:]:
            if r.generation == generation:
                return r
        return None


def _generation(state: EvolutionState, config: EvolutionConfig, toolbox: base.Toolbox, stats: tools.Statistics,
                progress: Progress | None) -> int:
    run: CmaRun = state.strategy
    population = [make_individual(x) for x in run.ask(state.generation)]
    nevals = evaluate_invalid(population, toolbox, progress, config.generation_tasks(state.generation),
                              state.generation)
    state.population = population
    record(state, stats, nevals)
    run.tell([ind.fitness.values[0] for ind in population])
    return nevals


def initial_generation(config: EvolutionConfig, toolbox: base.Toolbox, stats: tools.Statistics,
                       progress: Progress | None = None) -> EvolutionState:
    """Generation 0 from the initial distribution."""
    state = EvolutionState(0, [], tools.HallOfFame(config.hof_size), make_logbook(), CmaRun(config))
    _generation(state, config, toolbox, stats, progress)
    return state


def next_generation(state: EvolutionState, config: EvolutionConfig, toolbox: base.Toolbox,
                    stats: tools.Statistics, progress: Progress | None = None) -> int:
    """Advance ``state`` by one generation in place; return the number of evaluations."""
    state.generation += 1
    return _generation(state, config, toolbox, stats, progress)


def next_size(state: EvolutionState) -> int:
    """Individuals the next generation evaluates."""
    return state.strategy.next_population()


# --- checkpoint state ----------------------------------------------------------------------------


def strategy_to_json(run: CmaRun) -> dict:
    """The strategy's state for the checkpoint."""
    return {"restarts": [r.model_dump() for r in run.restarts], "told": [list(v) for v in run.told]}


def strategy_from_json(config: EvolutionConfig, data: StrategyState) -> CmaRun:
    """The strategy after the generations ``data`` records, by replaying ask/tell; ValueError if the
    record does not fit the config or the replay does not take the recorded course."""
    run = CmaRun(config)
    for generation, values in enumerate(data.told):
        asked = run.ask(generation)
        if len(values) != len(asked):
            raise ValueError(f"CMA-ES record of generation {generation} has {len(values)} values, "
                             f"its population is {len(asked)}")
        run.tell(values)
    if run.restarts != data.restarts:
        raise ValueError("CMA-ES replay restarted otherwise than the record says (another pycma version?)")
    return run
