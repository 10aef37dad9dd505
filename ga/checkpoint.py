"""JSON checkpoints: a run can stop after any generation and resume exactly where it was.

A checkpoint holds everything the loop carries between generations: the population with
fitnesses and lap results, the hall of fame, the logbook, the generation number, the
configuration, the CMA-ES strategy's record (``ga.cmaes``: its restarts and the fitness values told
after every generation, replayed on load; each restart's generator is seeded from the run's seed)
and the states of python's ``random`` (the GA's draws) and numpy's global generator, taken after
the generation's last draw. No pickle: the file is plain JSON,
validated on load, so a corrupt or foreign file is refused with a clear message rather
than resumed into nonsense.

Wall-clock timings ride along under ``wall`` for the log table; they are the only
non-deterministic part and nothing in the evolution reads them.

``digest`` is the SHA-256 of everything else (canonical JSON: sorted keys, no spaces). A changed
gene, fitness, RNG word, seed or frame limit would resume "successfully" into another run than
the one recorded; the digest makes any such edit, or a flipped bit on disk, a refusal instead.
It is an integrity check, not a signature: someone who recomputes it can still forge a file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from deap import tools
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError

from ga.cmaes import StrategyState, strategy_from_json, strategy_to_json
from ga.config import EvolutionConfig
from ga.evolve import EvolutionState
from ga.toolbox import make_individual, make_logbook
from game import LapResult
from servicekit import atomic

FORMAT = "rallyrobopilot-ga-checkpoint"
VERSION = 4


class CheckpointError(Exception):
    """A checkpoint that cannot be resumed (missing, corrupt, foreign, inconsistent)."""


class _Individual(BaseModel):
    model_config = ConfigDict(extra="forbid")
    genome: list[FiniteFloat]
    fitness: FiniteFloat
    results: list[dict] = Field(min_length=1)
    generation: int | None = Field(default=None, ge=0)


class _Wall(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gen: int = Field(ge=0)
    seconds: FiniteFloat
    evals_per_s: FiniteFloat | None = None


class _Checkpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["rallyrobopilot-ga-checkpoint"]
    version: Literal[4]
    generation: int
    config: EvolutionConfig
    population: list[_Individual]
    hall_of_fame: list[_Individual] = Field(min_length=1)
    logbook: list[dict]
    rng_state: tuple[int, list[int], FiniteFloat | None]
    numpy_rng_state: tuple[Literal["MT19937"], list[int], int, int, FiniteFloat]
    strategy: StrategyState | None = None
    wall: list[_Wall] = []
    digest: str


@dataclass
class Checkpoint:
    """A loaded checkpoint, ready to continue."""

    config: EvolutionConfig
    state: EvolutionState
    rng_state: tuple
    numpy_rng_state: tuple
    wall: list[dict] = field(default_factory=list)

    def restore_rng(self) -> None:
        """Put python's ``random`` and numpy's global generator back where the run left them."""
        random.setstate(self.rng_state)
        np.random.set_state(self.numpy_rng_state)


def _dump_individual(ind) -> dict:
    return {"genome": list(ind), "fitness": ind.fitness.values[0], "results": [r.to_dict() for r in ind.results],
            "generation": ind.generation}


def _load_individual(data: _Individual):
    return make_individual(data.genome, data.fitness, [LapResult.from_dict(r) for r in data.results],
                           data.generation)


def content_digest(doc: dict) -> str:
    """SHA-256 of the document without ``digest`` and ``wall`` (see the module docstring)."""
    content = {k: v for k, v in doc.items() if k not in ("digest", "wall")}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def to_json(config: EvolutionConfig, state: EvolutionState, rng_state: tuple, wall: list[dict],
            numpy_rng_state: tuple | None = None) -> dict:
    """The checkpoint document for ``state`` (``rng_state`` from ``random.getstate()``,
    ``numpy_rng_state`` from ``numpy.random.get_state()``, taken now when not given)."""
    version, internal, gauss_next = rng_state
    kind, keys, pos, has_gauss, cached = np.random.get_state() if numpy_rng_state is None else numpy_rng_state
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "generation": state.generation,
        "config": config.model_dump(mode="json"),
        "population": [_dump_individual(ind) for ind in state.population],
        "hall_of_fame": [_dump_individual(ind) for ind in state.halloffame],
        "logbook": [dict(entry) for entry in state.logbook],
        "rng_state": [version, list(internal), gauss_next],
        "numpy_rng_state": [kind, [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
        "strategy": None if state.strategy is None else strategy_to_json(state.strategy),
        "wall": list(wall),
    }
    doc["digest"] = content_digest(doc)
    return doc


def save(path: str | os.PathLike, config: EvolutionConfig, state: EvolutionState,
         rng_state: tuple, wall: list[dict]) -> None:
    """Write the checkpoint atomically (temp file + rename); numpy's generator state is taken now."""
    atomic.write_json(path, to_json(config, state, rng_state, wall))


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "document"
    return f"{where}: {err['msg']}"


def load(path: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint; raise CheckpointError with a one-line reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON (corrupt checkpoint?): {exc}") from None
    except RecursionError:
        raise CheckpointError(f"{path} is nested too deeply to be a checkpoint") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a RallyRoboPilot GA checkpoint")
    if raw.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {raw.get('version')!r}, expected {VERSION}")
    try:
        doc = _Checkpoint.model_validate(raw)
    except ValidationError as exc:
        raise CheckpointError(f"{path} is an invalid checkpoint: {_first_error(exc)}") from None
    except RecursionError:
        raise CheckpointError(f"{path} is nested too deeply to be a checkpoint") from None
    checkpoint = _restore(doc, path)
    try:
        expected = content_digest(raw)
    except (ValueError, RecursionError):  # e.g. 1e999 in a free-form field: not what save() writes
        expected = None
    if not hmac.compare_digest(doc.digest, expected or ""):
        raise CheckpointError(f"{path}: content does not match its digest (the checkpoint was changed "
                              "after it was written); refusing to resume a different run")
    if doc.strategy is not None:  # replayed once the document is known to be the one written
        checkpoint.state.strategy = _replay(doc, path)
    return checkpoint


def _replay(doc: _Checkpoint, path: Path):
    """The CMA-ES strategy the record describes, checked against the stored population."""
    if doc.strategy.told[-1] != [i.fitness for i in doc.population]:
        raise CheckpointError(f"{path}: CMA-ES record of the last generation differs from the population's fitness")
    try:
        strategy = strategy_from_json(doc.config, doc.strategy)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    if [list(map(float, x)) for x in strategy.asked] != [i.genome for i in doc.population]:
        raise CheckpointError(f"{path}: replaying the CMA-ES record does not give the stored population "
                              "(another pycma version or other arithmetic); refusing to resume a different run")
    return strategy


def _restore(doc: _Checkpoint, path: Path) -> Checkpoint:
    config = doc.config
    n_genes = config.genome_length()
    if config.strategy == "ga" and len(doc.population) != config.population:
        raise CheckpointError(
            f"{path}: population has {len(doc.population)} individuals, config says {config.population}"
        )
    for ind in (*doc.population, *doc.hall_of_fame):
        if len(ind.genome) != n_genes:
            raise CheckpointError(
                f"{path}: a genome has {len(ind.genome)} genes, the controller needs {n_genes}"
            )
        if len(ind.results) != len(config.tasks):
            raise CheckpointError(
                f"{path}: an individual has {len(ind.results)} lap results, the run has {len(config.tasks)} tracks"
            )
    if len(doc.logbook) != doc.generation + 1 or any(
        e.get("gen") != g for g, e in enumerate(doc.logbook)
    ):
        raise CheckpointError(f"{path}: logbook does not match generation {doc.generation}")
    version, internal, gauss_next = doc.rng_state
    rng_state = (version, tuple(internal), gauss_next)
    try:
        random.Random().setstate(rng_state)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CheckpointError(f"{path}: invalid RNG state: {exc}") from None
    kind, keys, pos, has_gauss, cached = doc.numpy_rng_state
    numpy_rng_state = (kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached)
    try:
        if len(keys) != 624 or not all(0 <= k < 2**32 for k in keys):
            raise ValueError("expected 624 words of 32 bits")
        np.random.RandomState().set_state(numpy_rng_state)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: invalid numpy RNG state: {exc}") from None
    if (doc.strategy is None) != (config.strategy == "ga"):
        raise CheckpointError(f"{path}: strategy state does not match the {config.strategy!r} strategy")
    if doc.strategy is not None and len(doc.strategy.told) != doc.generation + 1:
        raise CheckpointError(f"{path}: CMA-ES record has {len(doc.strategy.told)} generations, "
                              f"the checkpoint {doc.generation + 1}")
    strategy = None  # replayed in load(), after the digest check
    try:
        population = [_load_individual(i) for i in doc.population]
        hof_items = [_load_individual(i) for i in doc.hall_of_fame]
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: invalid lap result: {exc}") from None

    halloffame = tools.HallOfFame(config.hof_size)
    # Restore order exactly: items best-first, keys ascending (DEAP's invariant).
    halloffame.items = hof_items
    halloffame.keys = [ind.fitness for ind in reversed(hof_items)]
    logbook = make_logbook()
    for entry in doc.logbook:
        logbook.record(**entry)
    state = EvolutionState(doc.generation, population, halloffame, logbook, strategy)
    return Checkpoint(config, state, rng_state, numpy_rng_state, [w.model_dump(exclude_none=True) for w in doc.wall])
