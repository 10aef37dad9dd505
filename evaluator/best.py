"""``best.json`` of a GA run: its record model, its one writer and its one reader.

Written by ``ga.run`` after every generation; read by ``python -m ga.replay`` (re-drive it, watch it in
the game), ``ga.remote`` (drive it through a game's API), ``ga.report`` and the vision pilot's genome
expert, so it lives in the layer all of them may import.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evaluator.task import EvaluationTask
from game import LapResult
from servicekit.records import Record, RecordError


class BestFileError(RecordError):
    """A best.json (or run folder) that cannot be read; the message names the file and the problem."""


class TrackLap(BaseModel):
    """The best genome's lap on one of the run's tracks."""

    model_config = ConfigDict(extra="forbid")
    track: str
    task: EvaluationTask
    result: LapResult


class BestRecord(Record):
    """The run's best genome with the task that drives it (controller included) and its laps."""

    NAME = "best.json"
    REMEDY = "rewrite it from the run's checkpoint with python -m ga.run --resume RUN_DIR"

    schema_version: Literal[1] = 1
    genome: list[float]
    task: EvaluationTask = Field(description="the first track's task: what a one-track replay drives")
    result: LapResult | None = Field(None, description="the genome's lap on that task")
    fitness: float | None = None
    track: str | None = Field(None, description="the run's track label")
    strategy: str | None = None
    tracks: list[TrackLap] = Field(default_factory=list, description="every track's task and lap")

    @model_validator(mode="after")
    def _genome_fits_the_controller(self) -> Self:
        need = self.task.controller.genome_length()
        if len(self.genome) != need:
            raise ValueError(f"genome has {len(self.genome)} genes, the controller needs {need}")
        return self


def read_best(run: str | os.PathLike) -> BestRecord:
    """The one reader: ``RUN_DIR/best.json`` (``run`` is the run folder or the file itself), validated."""
    run = Path(run)
    path = run if run.suffix == ".json" else run / "best.json"
    try:
        return BestRecord.read(path)
    except FileNotFoundError:
        raise BestFileError(f"no best.json in {path.parent} (is it a ga.run folder?)") from None
    except RecordError as exc:
        raise BestFileError(str(exc)) from None


def load_best(run: str | os.PathLike) -> tuple[EvaluationTask, list[float], LapResult | None]:
    """The task, genome and stored result of :func:`read_best`."""
    best = read_best(run)
    return best.task, best.genome, best.result
