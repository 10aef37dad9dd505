"""The declared evaluation task: what the GA sends to an evaluator instead of Python code.

A task names a track, a frame limit and a controller spec; called on a genome (or a batch of
genomes) it drives full laps from the start line and returns ``LapResult``s. It is plain data
(a pydantic model), so it travels as JSON and every evaluator validates it before running it.
A batch runs as one batched ``Race``, and since cars never interact, a genome's result is the
same bit for bit whatever batch, process or pod it lands in.

A task may also carry a :class:`Perturbation` (ray noise, action latency, a shifted start) for
evolving and judging controllers that survive imperfect conditions. Its randomness comes from
the task's own seed and is the same for every car of a race, so an evaluator stays stateless and
the result still does not depend on the batch, process or pod.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from evaluator.controllers import ControllerSpec, make_controller
from game import DEFAULT_TRACK, RAY_RANGE, LapResult, Race, Track, bundled_tracks, load_bundled_track, load_track
from game.physics import CAR_RADIUS
from game.track_data import TrackData


class Perturbation(BaseModel):
    """Imperfect driving conditions, drawn from ``seed``: the same draws for every car of a race.

    * ``ray_noise``: every ray distance is multiplied by ``1 + ray_noise x N(0, 1)`` (one draw per
      ray and frame), then clipped to the sensor's range;
    * ``latency_frames``: the keys a controller chooses at frame k act at frame k + latency (the
      car rolls with no key held meanwhile);
    * ``start_offset_m`` / ``start_heading_deg``: the start is moved sideways by up to that many
      metres and turned by up to that many degrees (uniform draws).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="seeds every random draw of the perturbation")
    ray_noise: float = Field(default=0.0, ge=0.0, le=1.0, description="relative std-dev of the ray noise")
    latency_frames: int = Field(default=0, ge=0, le=25, description="frames between choosing and applying keys")
    start_offset_m: float = Field(default=0.0, ge=0.0, le=3.0, description="largest sideways start offset (m)")
    start_heading_deg: float = Field(default=0.0, ge=0.0, le=15.0, description="largest start heading offset")

    def start_offset(self, track: Track) -> tuple[float, float]:
        """(metres to the left, radians) for this seed, kept on the road of ``track``."""
        rng = np.random.default_rng([self.seed, 0])
        side, turn = rng.uniform(-1.0, 1.0, 2)
        room = max(0.0, track.width / 2 - CAR_RADIUS - 0.5)
        return float(np.clip(side * self.start_offset_m, -room, room)), float(np.radians(turn * self.start_heading_deg))

    def ray_noise_stream(self):
        """A generator whose k-th draw is the multiplicative noise of frame k (shape (15,))."""
        return np.random.default_rng([self.seed, 1])

    def describe(self) -> str:
        parts = [f"{100 * self.ray_noise:g}% ray noise" if self.ray_noise else "",
                 f"{self.latency_frames} frame(s) of latency" if self.latency_frames else "",
                 f"start shifted up to {self.start_offset_m:g} m / {self.start_heading_deg:g} deg"
                 if self.start_offset_m or self.start_heading_deg else ""]
        return ", ".join(p for p in parts if p) or "nominal"


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

    def evaluate_batch(self, genomes: Sequence[Sequence[float]], *, track: Track | None = None) -> list[LapResult]:
        """One lap per genome, all in one batched race; results in input order."""
        population = self.genome_array(genomes)
        if len(population) == 0:
            return []
        race = Race(track or self.load_track(), len(population), max_frames=self.max_frames,
                    stall_frames=self.stall_frames)
        controller = make_controller(self.controller, population)
        p = self.perturbation
        if p is None:
            observation = race.observation
            while not race.all_done:
                observation = race.step(controller.act(observation, race.frame))
            return race.results()
        observation = race.reset(offset=p.start_offset(race.track))
        noise = p.ray_noise_stream()
        pending = deque(np.zeros((p.latency_frames, len(population), 4), dtype=bool))
        while not race.all_done:
            if p.ray_noise:
                factor = 1.0 + p.ray_noise * noise.standard_normal(observation.rays.shape[1])
                observation = observation._replace(rays=np.clip(observation.rays * factor, 0.0, RAY_RANGE))
            pending.append(controller.act(observation, race.frame))
            observation = race.step(pending.popleft())
        return race.results()

    def __call__(self, genome: Sequence[float]) -> LapResult:
        return self.evaluate_batch([genome])[0]
