"""The declared evaluation task: what the GA sends to an evaluator instead of Python code.

A task names a track, a frame limit and a controller spec; called on a genome (or a batch of
genomes) it drives full laps from the start line and returns ``LapResult``s. It is plain data
(a pydantic model), so it travels as JSON and every evaluator validates it before running it.
A batch runs as one batched ``Race``, and since cars never interact, a genome's result is the
same bit for bit whatever batch, process or pod it lands in.

A task may also carry a :class:`~game.perturbation.Perturbation` (ray noise, action latency, a
shifted start) for evolving and judging controllers that survive imperfect conditions; it wraps the
task's environment (:meth:`EvaluationTask.environment`), which every place that drives a task's lap
uses, so the evaluator, the run's pictures and a remote game drive the same lap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from evaluator.controllers import ControllerSpec, make_controller
from game import DEFAULT_TRACK, LapResult, Track, bundled_tracks, load_bundled_track, load_track
from game.env import RallyRoboPilotVectorEnv
from game.perturbation import Perturbation, perturbed
from game.rollout import rollout
from game.track_data import TrackData


class EvaluationTask(BaseModel):
    """Drive one lap per genome on ``track`` with a ``controller``, for at most ``max_frames``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    track: str | TrackData = Field(default=DEFAULT_TRACK, description="bundled track name, JSON path, or inline")
    max_frames: int = Field(default=2_500, ge=1, le=30_000, description="frames before an unfinished lap ends")
    stall_frames: int = Field(default=125, ge=0, le=30_000, description="end a lap after this long without progress")
    controller: ControllerSpec = ControllerSpec()
    perturbation: Perturbation | None = Field(default=None, description="imperfect conditions; none = nominal")

    def load_track(self) -> Track:
        if isinstance(self.track, TrackData):
            return self.track.to_track()
        return load_track(self.track)

    def load_track_for_network(self) -> Track:
        """The track for a task that arrived over the network: never read a path from this disk.

        Built afresh: the caller (an evaluator worker) caches it within its byte budget, and a second,
        separate cache here would keep other large tracks alive beside it."""
        if isinstance(self.track, TrackData):
            return self.track.to_track(cached=False)
        return load_bundled_track(self.track)

    def resolved(self) -> EvaluationTask:
        """This task with a file-path track replaced by its inline data, ready to ship to a pod."""
        if isinstance(self.track, TrackData) or self.track in bundled_tracks():
            return self
        return self.model_copy(update={"track": TrackData.from_track(load_track(self.track))})

    def genome_array(self, genomes: Sequence[Sequence[float]]) -> np.ndarray:
        """Genomes as a (n, length) float array; ValueError says which genome is wrong and how."""
        length = self.controller.genome_length()
        rows = []
        for i, genome in enumerate(genomes):
            row = np.asarray(genome, dtype=np.float64)
            if row.ndim != 1 or row.shape[0] != length:
                raise ValueError(f"genomes[{i}] has {row.size} genes; {self.controller.describe()} needs {length}")
            if not np.isfinite(row).all():
                raise ValueError(f"genomes[{i}] contains NaN or infinite genes")
            rows.append(row)
        if not rows:
            return np.zeros((0, length))
        return np.stack(rows)

    def environment(self, n_cars: int = 1, *, track: Track | None = None) -> Any:
        """The Gymnasium vector environment this task's laps are driven in, perturbed as the task says."""
        env = RallyRoboPilotVectorEnv(n_cars, track=track or self.load_track(), max_frames=self.max_frames,
                                      stall_frames=self.stall_frames)
        return perturbed(env, self.perturbation)

    def evaluate_batch(self, genomes: Sequence[Sequence[float]], *, track: Track | None = None) -> list[LapResult]:
        """One lap per genome, all in one batched race; results in input order."""
        population = self.genome_array(genomes)
        if len(population) == 0:
            return []
        return rollout(self.environment(len(population), track=track), make_controller(self.controller, population))

    def __call__(self, genome: Sequence[float]) -> LapResult:
        return self.evaluate_batch([genome])[0]
