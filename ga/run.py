"""``python -m ga.run``: evolve a racing controller and write a run folder.

The strategy is a genetic algorithm (``ga.evolve``) or CMA-ES (``ga.cmaes``), on one track or on
several at once (``--track circuit,hairpins``, ``--track all,random-0..9``, ``--generated N``; the list
syntax and the held-out tracks it refuses are ``game.tracklist``'s), optionally under perturbed conditions
(ray noise, action latency, shifted starts) for controllers that hold up.

The run folder (default ``runs/<tracks>-<controller>[-<strategy>]-s<seed>``) holds ``config.json``,
``checkpoint.json`` (rewritten atomically after every generation), ``best.json`` (the best
genome with its task and lap result; deterministic), ``log.csv`` (one row per generation,
with wall timings), ``fitness.png`` and ``best_lap.png``.

A run is sized in laps (``--budget``, default ``DEFAULT_BUDGET``: it stops before the generation
that would exceed it) or in generations (``--generations``); given both, the first limit reached ends it.
``--resume RUN_DIR`` continues a run in place up to the new limits and ends exactly where the
uninterrupted run would have. Evaluation runs on local worker
processes unless ``--evaluators`` (or ``RRP_EVALUATORS``) names a fleet of evaluator pods.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import signal
import sys
import time
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from pydantic import ValidationError
from tqdm import tqdm

from evaluator import CONTROLLER_KINDS, ControllerSpec, EvaluationTask, Perturbation
from evaluator.best import BestRecord, TrackLap
from ga import checkpoint, cmaes, report, tracksets
from ga import evolve as genetic
from ga.baseline import default_max_frames
from ga.checkpoint import CheckpointError
from ga.cmaes import default_population
from ga.config import STRATEGIES, EvolutionConfig
from ga.evolve import EvolutionState
from ga.executors import LocalExecutor
from ga.fleet.errors import EvaluationError
from ga.toolbox import make_statistics, make_toolbox
from game import DEFAULT_TRACK, TrackError
from game.bounds import lap_lower_bound
from game.pursuit import pursuit_lap
from game.tracklist import Purpose, held_out_range
from servicekit import atomic

PROG = "ga.run"
DEFAULT_GENERATIONS = 50  # with --resume of a run that stored no limit
DEFAULT_BUDGET = 6_528
"""Laps of a run when neither --budget nor --generations is given (see docs/optimizer.md)."""
DEFAULT_STRATEGY = "cma"
# pycma with its defaults (lambda = 4 + 3 ln n: 19 for the 172-gene MLP). IPOP restarts are an option
# (--restarts N): at 6,528 laps on circuit they did not beat plain pycma over 8 seeds (docs/optimizer.md).
DEFAULT_POPULATION = {"ga": 128, "cma": 64}
"""cma 64, not pycma's own default (19 for the 172-gene MLP): ``--generations 50``, the README's main command,
then drives 3,264 laps and finishes circuit (at 19 it drove 969 laps and did not finish a lap); population
19 against 64 measured no different at equal laps (10 seeds each on circuit, Mann-Whitney p = 0.73).
``--population 0`` is not allowed; pycma's default is ``ga.cmaes.default_population``."""
DEFAULT_RESTARTS = 0
DEFAULT_HIDDEN = (8,)
SEGMENT_FRAMES = 10

# Options that define the run's course: fixed once a run exists (refused with --resume).
COURSE_OPTIONS = ("strategy", "population", "restarts", "stall_laps", "restart_sigma", "track", "generated",
                  "controller", "hidden", "seed", "max_frames", "ray_noise", "latency", "start_offset", "start_heading")
# Perturbation options and the task fields they set.
PERTURBATION_OPTIONS = {"ray_noise": "ray_noise", "latency": "latency_frames", "start_offset": "start_offset_m",
                        "start_heading": "start_heading_deg"}
LOOPS = {"ga": genetic, "cma": cmaes}
"""The module holding each strategy's ``initial_generation``, ``next_generation`` and ``next_size``."""


class UsageError(Exception):
    """Bad command-line input: reported as one line, exit status 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``, a Job's deletion): stop as on Ctrl-C, checkpoint kept."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog=f"python -m {PROG}", description="Evolve a racing controller with a genetic algorithm.")
    p.add_argument("--generations", type=int, default=None,
                   help="stop after this many generations after the initial one, in total")
    p.add_argument("--budget", type=int, default=None,
                   help=f"stop before a generation would drive more than this many laps in total, all tracks "
                   f"counted (default {DEFAULT_BUDGET} when --generations is not given either)")
    p.add_argument("--strategy", default=None,
                   help="cma (pycma's CMA-ES, optionally with IPOP restarts) or ga (genetic algorithm) "
                   f"(default {DEFAULT_STRATEGY})")
    p.add_argument("--population", type=int, default=None,
                   help="individuals per generation, for CMA-ES the first restart's (default: 128 for ga, "
                   "pycma's 4 + 3 ln(genes) for cma)")
    p.add_argument("--restarts", type=int, default=None,
                   help="cma: at most this many IPOP restarts, each with twice the population, when a run "
                   f"stalls (default {DEFAULT_RESTARTS}: plain pycma)")
    p.add_argument("--stall-laps", dest="stall_laps", type=int, default=None,
                   help="cma: restart when the best fitness gained less than 0.05 over this many laps "
                   "(at least 10 generations) (default 1000)")
    p.add_argument("--restart-sigma", dest="restart_sigma", type=float, default=None,
                   help="cma: restart around the best genome so far with this step size (default: from scratch)")
    p.add_argument("--track", default=None,
                   help="comma list of bundled names, 'all', JSON paths, random-SEED or random-A..B; not the "
                   f"held-out {held_out_range()} (default {DEFAULT_TRACK})")
    p.add_argument("--generated", type=int, default=None,
                   help=f"also drive this many generated tracks, random-S*{tracksets.TRAINING_SEED_STRIDE}.. for "
                   "--seed S")
    p.add_argument("--controller", default=None, help="mlp (default) or schedule")
    p.add_argument("--hidden", default=None,
                   help="MLP hidden layer sizes, comma separated "
                   f"(default {','.join(map(str, DEFAULT_HIDDEN))})")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--max-frames", dest="max_frames", type=int, default=None,
                   help="frame limit per lap (default: 1.5 x the baseline lap)")
    p.add_argument("--ray-noise", dest="ray_noise", type=float, default=None,
                   help="evolve with noisy rays: relative std-dev of the noise, e.g. 0.05")
    p.add_argument("--latency", type=int, default=None,
                   help="evolve with this many frames between choosing keys and their effect")
    p.add_argument("--start-offset", dest="start_offset", type=float, default=None,
                   help="evolve from starts shifted sideways by up to this many metres")
    p.add_argument("--start-heading", dest="start_heading", type=float, default=None,
                   help="evolve from starts turned by up to this many degrees")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    p.add_argument("--out", default=None, help="run folder (default runs/<track>-<controller>-s<seed>)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR in place")
    p.add_argument("--evaluators", default=os.environ.get("RRP_EVALUATORS") or None,
                   help="evaluator pods: URLs, dns://SVC:PORT or k8s://NS/SVC (env RRP_EVALUATORS)")
    return p


# --- configuration -------------------------------------------------------------------------------


def _parse_hidden(text: str | None) -> tuple[int, ...]:
    if text is None:
        return DEFAULT_HIDDEN
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UsageError(f"--hidden must be comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--hidden sizes must be positive integers, got {text!r}")
    return sizes


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else err["msg"]


def _perturbation(args: argparse.Namespace, seed: int) -> Perturbation | None:
    """The perturbation the options ask for (None: nominal conditions); its seed is set per track."""
    fields = {field: getattr(args, option) for option, field in PERTURBATION_OPTIONS.items()
              if getattr(args, option) is not None}
    if not any(fields.values()):
        return None
    try:
        return Perturbation(seed=seed, **fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        option = next(o for o, f in PERTURBATION_OPTIONS.items() if f == err["loc"][0])
        raise UsageError(f"--{option.replace('_', '-')}: {err['msg']}") from None


def new_config(args: argparse.Namespace) -> tuple[EvolutionConfig, list[float | None]]:
    """The configuration of a new run and the baseline lap time on each of its tracks."""
    strategy = args.strategy or DEFAULT_STRATEGY
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    population = DEFAULT_POPULATION[strategy] if args.population is None else args.population
    if population is not None and population < 2:
        raise UsageError(f"--population must be at least 2, got {population}")
    restarts = DEFAULT_RESTARTS if args.restarts is None else args.restarts
    if restarts < 0:
        raise UsageError(f"--restarts must be at least 0, got {restarts}")
    if (args.restarts is not None or args.stall_laps is not None) and strategy != "cma":
        raise UsageError("--restarts and --stall-laps apply to --strategy cma only")
    if args.stall_laps is not None and args.stall_laps < 1:
        raise UsageError(f"--stall-laps must be at least 1, got {args.stall_laps}")
    stall = {} if args.stall_laps is None else {"stall_laps": args.stall_laps}
    if args.restart_sigma is not None:
        if strategy != "cma" or not args.restart_sigma > 0:
            raise UsageError("--restart-sigma applies to --strategy cma and must be positive")
        stall["restart_sigma"] = args.restart_sigma
    kind = args.controller or "mlp"
    if kind not in CONTROLLER_KINDS:
        raise UsageError(f"unknown controller {kind!r}; choose from {', '.join(CONTROLLER_KINDS)}")
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be at least 1, got {args.max_frames}")
    seed = 0 if args.seed is None else args.seed
    if seed < 0:
        raise UsageError(f"--seed must be at least 0, got {seed}")
    try:
        entries, label = tracksets.parse(args.track or DEFAULT_TRACK, Purpose.TRAINING, args.generated or 0, seed)
    except TrackError:
        raise
    except ValueError as exc:
        raise UsageError(f"--track{'/--generated' if args.generated else ''}: {exc}") from None
    if kind == "schedule" and len(entries) > 1:
        raise UsageError("--controller schedule drives one track only (its commands are open-loop)")
    perturbation = _perturbation(args, seed * tracksets.TRAINING_SEED_STRIDE)
    baselines = [pursuit_lap(entry.track) for entry in entries]
    tasks = []
    for i, (entry, baseline) in enumerate(zip(entries, baselines, strict=True)):
        max_frames = args.max_frames or default_max_frames(baseline)
        try:
            if kind == "schedule":
                # One command per SEGMENT_FRAMES frames, enough of them to cover the whole lap.
                spec = ControllerSpec(kind=kind, segment_frames=SEGMENT_FRAMES,
                                      segments=math.ceil(max_frames / SEGMENT_FRAMES))
            else:
                spec = ControllerSpec(kind=kind, hidden=_parse_hidden(args.hidden))
        except ValidationError as exc:
            raise UsageError(f"invalid controller: {_first_error(exc)}") from None
        # Each track draws its own perturbations, all derived from the run's seed.
        track_perturbation = None if perturbation is None else perturbation.model_copy(
            update={"seed": perturbation.seed + i})
        try:
            tasks.append(EvaluationTask(track=entry.ref, max_frames=max_frames, controller=spec,
                                        perturbation=track_perturbation).resolved())
        except ValidationError as exc:
            raise UsageError(f"invalid evaluation task: {_first_error(exc)}") from None
    if population is None:
        population = default_population(tasks[0].controller.genome_length())
    config = EvolutionConfig(seed=seed, strategy=strategy, population=population, tasks=tuple(tasks),
                             track_label=label, restarts=restarts, **stall)
    return config, [b.lap_time_s for b in baselines]


def default_out(config: EvolutionConfig) -> Path:
    strategy = "" if config.strategy == DEFAULT_STRATEGY else f"-{config.strategy}"
    return Path("runs") / f"{config.track_label}-{config.controller.kind}{strategy}-s{config.seed}"


def write_config(run_dir: Path, config: EvolutionConfig, limits: Limits) -> None:
    atomic.write_json(run_dir / "config.json", {
        "generations": limits.generations,
        "budget": limits.budget,
        "evolution": config.model_dump(mode="json"),
    })


def _stored(run_dir: Path, key: str) -> int | None:
    try:
        value = json.loads((run_dir / "config.json").read_text()).get(key)
        return None if value is None else int(value)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class Limits:
    """Where a run stops: after ``generations`` generations and/or before exceeding ``budget`` laps."""

    def __init__(self, generations: int | None, budget: int | None) -> None:
        self.generations = generations
        self.budget = budget

    def reached(self, config: EvolutionConfig, state: EvolutionState) -> bool:
        if self.generations is not None and state.generation >= self.generations:
            return True
        if self.budget is not None:
            upcoming = LOOPS[config.strategy].next_size(state) * len(config.tasks)
            return laps_driven(config, state) + upcoming > self.budget
        return False

    def describe(self) -> str:
        parts = ([f"{self.generations} generations"] if self.generations is not None else []) + (
            [f"budget {self.budget:,} laps"] if self.budget is not None else [])
        return " or ".join(parts)


def laps_driven(config: EvolutionConfig, state: EvolutionState) -> int:
    """Laps the run has driven so far (evaluations x tracks; elites are not driven again)."""
    return sum(int(e["nevals"]) for e in state.logbook) * len(config.tasks)


# --- executor ------------------------------------------------------------------------------------


def show_fleet_changes() -> None:
    """Print each evaluator's changes of state (unreachable, up, benched, gone) on stderr, one line
    each: a fleet that cannot be reached is said at once, not after the 120 s it is waited for."""
    for name in ("ga.fleet", "ga.http_executor"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False


def make_executor(args: argparse.Namespace) -> tuple[Executor, str]:
    """The executor behind ``toolbox.map`` and a short description for the header line."""
    if args.evaluators:
        try:
            from ga.http_executor import HttpExecutor
        except ImportError as exc:
            raise UsageError(f"--evaluators needs the HTTP executor, which is not available: {exc}") from None
        show_fleet_changes()
        try:
            return HttpExecutor(args.evaluators), f"evaluators {args.evaluators}"
        except ValueError as exc:  # a malformed endpoint spec
            raise UsageError(f"--evaluators: {exc}") from None
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    executor = LocalExecutor(args.workers)
    return executor, f"{executor.workers} local worker{'s' if executor.workers != 1 else ''}"


# --- output --------------------------------------------------------------------------------------


class Bar:
    """tqdm progress bar for the evaluations of one generation (hidden when not a terminal)."""

    def __init__(self) -> None:
        self.generation = 0
        self._bar: tqdm | None = None

    def start(self, total: int) -> None:
        self.close()
        self._bar = tqdm(total=total, desc=f"gen {self.generation}", unit="lap", leave=False,
                         file=sys.stderr, disable=None, dynamic_ncols=True)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _lap(value: float | None) -> str:
    return "     -  " if value is None else f"{value:7.2f}s"


def summary_line(entry: dict, evals_per_s: float) -> str:
    """``gen  12  best   31.24s  mean   35.80s  finished  62%  evals/s  143``"""
    return (f"gen {entry['gen']:3d}  best {_lap(entry['best_lap'])}  mean {_lap(entry['mean_lap'])}"
            f"  finished {100 * entry['finished']:3.0f}%  evals/s {evals_per_s:6.0f}")


def best_record(config: EvolutionConfig, state: EvolutionState) -> BestRecord:
    """``best.json``: deterministic (no timings), enough to re-drive the laps anywhere.

    ``task`` and ``result`` are those of the run's first track (what a one-track replay
    drives); ``tracks`` lists every track's task and lap result.
    """
    best = state.halloffame[0]
    # Perturbed runs draw new conditions every generation: the tasks the best genome was driven on.
    tasks = config.tasks if best.generation is None else config.generation_tasks(best.generation)
    return BestRecord(
        genome=list(best), task=tasks[0], result=best.results[0], fitness=best.fitness.values[0],
        track=config.track_label, strategy=config.strategy,
        tracks=[TrackLap(track=tracksets.task_label(task), task=task, result=result)
                for task, result in zip(tasks, best.results, strict=True)])


# --- the run -------------------------------------------------------------------------------------


class Run:
    """One run folder being evolved: checkpoint, best.json and log after every generation."""

    def __init__(self, run_dir: Path, config: EvolutionConfig, wall: list[dict]) -> None:
        self.dir = run_dir
        self.config = config
        self.wall = wall

    def refresh(self, state: EvolutionState) -> None:
        """Rewrite best.json and log.csv from a loaded checkpoint (a kill may have landed
        between the checkpoint and these files)."""
        best_record(self.config, state).write(self.dir / "best.json")
        report.write_log_csv(self.dir / "log.csv", list(state.logbook), self.wall)

    def save(self, state: EvolutionState, seconds: float, nevals: int) -> float:
        """Persist the generation just finished; return its laps per second (all tracks)."""
        rate = nevals * len(self.config.tasks) / seconds if seconds > 0 else 0.0
        self.wall = [w for w in self.wall if w["gen"] < state.generation]
        self.wall.append({"gen": state.generation, "seconds": round(seconds, 4),
                          "evals_per_s": round(rate, 2)})
        # The RNG states are taken here, after every draw of this generation.
        checkpoint.save(self.dir / "checkpoint.json", self.config, state, random.getstate(), self.wall)
        best_record(self.config, state).write(self.dir / "best.json")
        report.write_log_csv(self.dir / "log.csv", list(state.logbook), self.wall)
        return rate


def restart_line(state: EvolutionState) -> str | None:
    """``restart 1 at generation 57: stall: ... -> population 38`` when one began at this generation."""
    restart = state.strategy.restart_at(state.generation) if state.strategy is not None else None
    if restart is None:
        return None
    index = state.strategy.restarts.index(restart)
    return f"restart {index} at generation {restart.generation}: {restart.reason} -> population {restart.population}"


def evolve(run: Run, state: EvolutionState | None, limits: Limits, executor: Executor,
           bar: Bar) -> EvolutionState:
    """Evolve up to ``limits``, starting fresh (``state`` None) or from a checkpoint."""
    config = run.config
    loop = LOOPS[config.strategy]
    toolbox = make_toolbox(config, executor)
    stats = make_statistics()
    resumed = state is not None
    if state is None:
        random.seed(config.seed)
        np.random.seed(config.seed)
        bar.generation = 0
        t0 = time.perf_counter()
        state = loop.initial_generation(config, toolbox, stats, bar)
        bar.close()
        rate = run.save(state, time.perf_counter() - t0, state.logbook[-1]["nevals"])
        print(summary_line(state.logbook[-1], rate), flush=True)
    else:
        run.refresh(state)
    first = state.generation
    while not limits.reached(config, state):
        bar.generation = state.generation + 1
        t0 = time.perf_counter()
        try:
            nevals = loop.next_generation(state, config, toolbox, stats, bar)
            bar.close()
            rate = run.save(state, time.perf_counter() - t0, nevals)
        except ValueError as exc:
            # The first generation from a checkpoint is where a state that passed validation but cannot
            # be continued shows (genes that are not finite, a strategy state that will not save again):
            # the checkpoint's fault, said in one line; the checkpoint on disk is unchanged (it is written
            # last, whole or not at all). Later, and in a new run, a ValueError is a bug: its traceback stays.
            if not resumed:
                raise
            raise CheckpointError(f"{run.dir}: cannot continue from its checkpoint (generation {first}): "
                                  f"{exc}") from exc
        resumed = False
        line = restart_line(state)
        if line:
            print(line, flush=True)
        print(summary_line(state.logbook[-1], rate), flush=True)
    return state


def _verdict(lap: float, baseline: float) -> str:
    gain = 100 * (baseline - lap) / baseline
    return f"{abs(gain):.1f}% {'faster' if gain > 0 else 'slower'}"


def finish(run: Run, state: EvolutionState, baselines: list[float | None]) -> None:
    """Draw the reports and compare the best laps with the baseline and the lower bound, track by track."""
    cfg = run.config
    bounds = [lap_lower_bound(task.load_track()) for task in cfg.tasks]
    title = f"{cfg.track_label}, {cfg.controller.kind} controller, {cfg.strategy}, seed {cfg.seed}"
    total_baseline = None if None in baselines else math.fsum(baselines)
    report.plot_fitness(run.dir / "fitness.png", list(state.logbook), total_baseline, title)
    report.plot_best_lap(run.dir / "best_lap.png", cfg.tasks[0], list(state.halloffame[0]), title)
    results = state.halloffame[0].results
    for task, best, baseline_lap, bound in zip(cfg.tasks, results, baselines, bounds, strict=True):
        where = f"{tracksets.task_label(task)}: " if len(cfg.tasks) > 1 else ""
        if not best.finished:
            print(f"{where}best car did not finish: {100 * best.progress:.0f}% of the lap in {best.frames} frames"
                  + ("" if baseline_lap is None else f" (baseline pursuit lap {baseline_lap:.2f}s)"))
        elif baseline_lap is None:
            print(f"{where}best lap {best.lap_time_s:.2f}s (the baseline pursuit driver does not finish this track)")
        else:
            print(f"{where}best lap {best.lap_time_s:.2f}s vs baseline pursuit {baseline_lap:.2f}s: "
                  f"{_verdict(best.lap_time_s, baseline_lap)} (x{best.lap_time_s / baseline_lap:.2f}), "
                  f"{best.collisions} wall contacts; lower bound {bound:.2f}s (x{best.lap_time_s / bound:.2f})")
    if len(cfg.tasks) > 1 and total_baseline is not None and all(r.finished for r in results):
        total = math.fsum(r.lap_time_s for r in results)
        print(f"all {len(results)} tracks: {total:.2f}s vs baseline pursuit {total_baseline:.2f}s: "
              f"{_verdict(total, total_baseline)}")
    print(f"{laps_driven(cfg, state):,} laps driven in {state.generation + 1} generations")
    print(f"run folder: {run.dir}  (replay: python -m ga.replay {run.dir}; "
          f"unseen tracks: python -m ga.report {run.dir})")


def prepare(args: argparse.Namespace):
    """Resolve the run folder, configuration and starting state from the command line."""
    if args.generations is not None and args.generations < 1:
        raise UsageError(f"--generations must be at least 1, got {args.generations}")
    if args.budget is not None and args.budget < 1:
        raise UsageError(f"--budget must be at least 1, got {args.budget}")
    if args.resume:
        given = [o for o in COURSE_OPTIONS if getattr(args, o) is not None]
        if given:
            raise UsageError(f"--{given[0].replace('_', '-')} cannot be changed on --resume (the run's "
                             "configuration is in its checkpoint)")
        if args.out is not None:
            raise UsageError("--out cannot be combined with --resume (the run continues in place)")
        run_dir = Path(args.resume)
        if not run_dir.is_dir():
            raise UsageError(f"no run folder at {run_dir}")
        cp = checkpoint.load(run_dir / "checkpoint.json")
        atomic.remove_leftovers(run_dir)  # half-written files of a killed run
        if args.generations is not None or args.budget is not None:
            limits = Limits(args.generations, args.budget)
        else:
            limits = Limits(_stored(run_dir, "generations"), _stored(run_dir, "budget"))
            if limits.generations is None and limits.budget is None:
                limits.generations = DEFAULT_GENERATIONS
        cp.restore_rng()
        baselines = [pursuit_lap(task.load_track()).lap_time_s for task in cp.config.tasks]
        return Run(run_dir, cp.config, cp.wall), cp.state, limits, baselines
    config, baselines = new_config(args)
    run_dir = Path(args.out) if args.out else default_out(config)
    if (run_dir / "checkpoint.json").exists():
        raise UsageError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                         "or choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # /proc/x, a read-only or foreign folder, a file of that name
        raise UsageError(f"cannot create the run folder {run_dir}: {exc.strerror or exc}") from None
    budget = DEFAULT_BUDGET if args.budget is None and args.generations is None else args.budget
    return Run(run_dir, config, []), None, Limits(args.generations, budget), baselines


def header(run: Run, state: EvolutionState | None, limits: Limits, baselines: list[float | None],
           where: str) -> str:
    """The first line of a run: what is evolved, against which baseline, where it goes."""
    cfg = run.config
    start = "new run" if state is None else f"resuming after generation {state.generation}"
    if len(cfg.tasks) == 1:
        base = "does not finish" if baselines[0] is None else f"{baselines[0]:.2f}s"
        tracks = f"track {cfg.track_label} (pursuit baseline {base})"
    else:
        base = "does not finish every track" if None in baselines else f"{math.fsum(baselines):.2f}s in all"
        tracks = f"{len(cfg.tasks)} tracks {cfg.track_label} (pursuit baseline {base})"
    perturbation = cfg.tasks[0].perturbation
    conditions = "" if perturbation is None else f", evolved under {perturbation.describe()}"
    restarts = f" (up to {cfg.restarts} IPOP restarts)" if cfg.strategy == "cma" and cfg.restarts else ""
    frames = sorted({t.max_frames for t in cfg.tasks})
    limit = f"{frames[0]}" if len(frames) == 1 else f"{frames[0]}-{frames[-1]}"
    return (f"{start}: {tracks}{conditions}, "
            f"controller {cfg.controller.kind} ({cfg.genome_length()} genes), strategy {cfg.strategy}, "
            f"population {cfg.population}{restarts}, {limits.describe()}, "
            f"max {limit} frames, {where} -> {run.dir}")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; SIGTERM is handled like Ctrl-C while it runs."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        return _main(argv)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None) -> int:
    bar = Bar()
    run: Run | None = None
    executor: Executor | None = None

    def stop() -> None:
        """Abandon the generation in flight; the last checkpoint stays as it is."""
        bar.close()
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    try:
        args = build_parser().parse_args(argv)
        run, state, limits, baselines = prepare(args)
        if state is not None and limits.generations is not None and state.generation > limits.generations:
            limits.generations = state.generation  # a run is never cut back; it already has them
        write_config(run.dir, run.config, limits)
        executor, where = make_executor(args)
        print(header(run, state, limits, baselines, where), flush=True)
        state = evolve(run, state, limits, executor, bar)
        executor.shutdown()
        executor = None
        finish(run, state, baselines)
        return 0
    except KeyboardInterrupt as exc:
        stop()
        resumable = run is not None and (run.dir / "checkpoint.json").exists()
        where = f"; resume with: python -m {PROG} --resume {run.dir}" if resumable else ""
        terminated = isinstance(exc, Terminated)
        print(f"{PROG}: {'terminated' if terminated else 'interrupted'}{where}", file=sys.stderr)
        return 128 + (signal.SIGTERM if terminated else signal.SIGINT)
    except (UsageError, CheckpointError, TrackError) as exc:
        stop()
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # Output piped into e.g. `head` that went away: stop quietly.
        stop()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except BrokenProcessPool as exc:
        stop()
        print(f"{PROG}: error: a worker process died ({exc}); resume with: python -m {PROG} --resume "
              f"{run.dir if run else 'RUN_DIR'}", file=sys.stderr)
        return 1
    except EvaluationError as exc:
        # The evaluator fleet failing for good (e.g. no pod reachable) is an operational error,
        # reported in one line like the others; anything else is a bug and keeps its traceback.
        stop()
        print(f"{PROG}: error: evaluation failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
