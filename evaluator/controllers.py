"""Genome decoders: a flat vector of floats becomes a controller that presses the four keys.

Two kinds, chosen by a ``ControllerSpec``:

* ``mlp``: a small neural network from what the car senses (15 rays, speed) to the four keys,
  a key being held when its output is positive. It reacts to the road, so it can drive tracks
  it was not evolved on.
* ``schedule``: an open-loop list of (throttle, steering) commands, one per segment of a few
  frames. Valid because every lap starts from the same state; it can only drive its own track.

Both decode a whole population at once, so one batched ``Race`` evaluates a chunk of genomes.
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from game import N_RAYS
from game.env import OBSERVATION_SCALE

N_INPUTS = N_RAYS + 1  # rays and speed
N_KEYS = 4
DEADZONE = 0.33  # schedule commands within +-DEADZONE press no key


ControllerKind = Literal["mlp", "schedule"]
CONTROLLER_KINDS: tuple[str, ...] = get_args(ControllerKind)
"""Every decoder, the one list (the evaluator's ``/v1/info``, the GA's ``--controller``, warm-up)."""


class ControllerSpec(BaseModel):
    """Which decoder turns a genome into a driver, and its size (this fixes the genome length)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ControllerKind = "mlp"
    hidden: tuple[int, ...] = Field(default=(8,), max_length=3, description="mlp hidden layer sizes")
    segments: int = Field(default=100, ge=1, le=2_000, description="schedule: number of commands")
    segment_frames: int = Field(default=10, ge=1, le=250, description="schedule: frames per command")

    def model_post_init(self, _context: object) -> None:
        if any(not 1 <= h <= 64 for h in self.hidden):
            raise ValueError("hidden layer sizes must be between 1 and 64")

    def genome_length(self) -> int:
        if self.kind == "schedule":
            return 2 * self.segments
        sizes = self.layer_sizes()
        return sum((a + 1) * b for a, b in zip(sizes, sizes[1:], strict=False))

    def layer_sizes(self) -> list[int]:
        return [N_INPUTS, *self.hidden, N_KEYS]

    def describe(self) -> str:
        if self.kind == "schedule":
            return f"schedule of {self.segments} commands x {self.segment_frames} frames"
        return "mlp " + "-".join(str(s) for s in self.layer_sizes())


class MLPController:
    """One small network per car, evaluated together: tanh hidden layers, keys held when > 0."""

    def __init__(self, spec: ControllerSpec, genomes: np.ndarray) -> None:
        self.layers: list[tuple[np.ndarray, np.ndarray]] = []
        sizes = spec.layer_sizes()
        offset = 0
        for a, b in zip(sizes, sizes[1:], strict=False):
            w = genomes[:, offset : offset + a * b].reshape(-1, a, b)
            offset += a * b
            bias = genomes[:, offset : offset + b]
            offset += b
            self.layers.append((np.ascontiguousarray(w), np.ascontiguousarray(bias)))

    def act(self, observation: np.ndarray) -> np.ndarray:
        """``(n, 16)`` rays and speed (the vector environment's observation) -> ``(n, 4)`` keys."""
        x = observation / OBSERVATION_SCALE
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            x = np.einsum("ni,nij->nj", x, w) + b
            if i < last:
                x = np.tanh(x)
        return x > 0.0


class ScheduleController:
    """Open-loop commands: segment k of the lap applies (throttle, steering) pair k."""

    def __init__(self, spec: ControllerSpec, genomes: np.ndarray) -> None:
        self.segment_frames = spec.segment_frames
        commands = genomes.reshape(len(genomes), spec.segments, 2)
        throttle, steering = commands[:, :, 0], commands[:, :, 1]
        keys = np.stack([throttle > DEADZONE, throttle < -DEADZONE, steering > DEADZONE, steering < -DEADZONE], axis=2)
        # One extra all-released segment for frames past the end of the schedule.
        self.keys = np.concatenate([keys, np.zeros((len(genomes), 1, N_KEYS), dtype=bool)], axis=1)
        self.frame = 0

    def reset(self) -> None:
        """Back to the first command: a roll-out calls this before the first frame."""
        self.frame = 0

    def act(self, observation: np.ndarray) -> np.ndarray:
        segment = min(self.frame // self.segment_frames, self.keys.shape[1] - 1)
        self.frame += 1
        return self.keys[:, segment, :]


def make_controller(spec: ControllerSpec, genomes: np.ndarray) -> MLPController | ScheduleController:
    """Decode a (n, genome_length) array into a batched :class:`game.rollout.Policy`."""
    genomes = np.atleast_2d(np.asarray(genomes, dtype=np.float64))
    if genomes.shape[1] != spec.genome_length():
        raise ValueError(f"genome length {genomes.shape[1]} does not match {spec.describe()} "
                         f"(needs {spec.genome_length()})")
    if spec.kind == "schedule":
        return ScheduleController(spec, genomes)
    return MLPController(spec, genomes)
