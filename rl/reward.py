"""The reward as data: named terms, each weighted from the command line, never edited in code.

``--reward progress=1,time=0.002,wall=0.05,lap=1,fitness=0`` gives, for every frame of every car::

    progress x (share of the lap gained this frame: the environment's own reward, 0..1 over a lap)
  - time     x 1                          (per frame driven: speed pays)
  - wall     x (new wall contacts this frame)
  + lap      x 1                          (on the frame the lap is completed)
  + fitness  x evaluator.metrics.fitness(lap) / 1000   (on the lap's last frame: the GA's own judge)

The fitness term is the project's fitness scaled by ``FINISHED_BASE`` (1000): a finished lap is worth
1 - lap time / 1000 s, an unfinished one at most 0.1. With ``fitness=1`` alone, PPO optimises the same
number CMA-ES and the GA do (a sparse reward, one value per lap).

The DeepRacer-style recipe "follow the centre line first, then speed": train with ``progress=1`` only,
then continue from that policy (``--init RUN_DIR``) with a time penalty and a lap bonus
(``progress=1,time=0.002,lap=1``); docs/rl.md has the commands.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from evaluator.metrics import FINISHED_BASE, fitness
from game import LapResult


class RewardWeights(BaseModel):
    """One weight per reward term (the defaults are the progress-then-speed recipe's second stage)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    progress: float = Field(default=1.0, description="x share of the lap gained this frame")
    time: float = Field(default=0.0, ge=0.0, description="penalty per frame driven")
    wall: float = Field(default=0.0, ge=0.0, description="penalty per new wall contact")
    lap: float = Field(default=0.0, ge=0.0, description="bonus on completing the lap")
    fitness: float = Field(default=0.0, ge=0.0, description="x the project's fitness / 1000 at the lap's end")

    @classmethod
    def parse(cls, spec: str) -> RewardWeights:
        """``"progress=1,time=0.002"`` (terms not named keep their defaults; ``""`` is all defaults)."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, sep, number = part.partition("=")
            if not sep:
                raise ValueError(f"reward term {part!r} needs a weight: NAME=NUMBER")
            name = name.strip()
            if name not in cls.model_fields:
                raise ValueError(f"unknown reward term {name!r} (terms: {', '.join(cls.model_fields)})")
            try:
                values[name] = float(number)
            except ValueError:
                raise ValueError(f"reward weight {part!r} is not a number") from None
        return cls(**values)

    def describe(self) -> str:
        return ",".join(f"{k}={v:g}" for k, v in self.model_dump().items())


def frame_reward(weights: RewardWeights, progress: np.ndarray, live: np.ndarray, new_contacts: np.ndarray,
                 finished_now: np.ndarray, laps: dict[int, LapResult]) -> np.ndarray:
    """The reward of one frame for every car.

    ``progress``: the environment's reward; ``live``: the car drove this frame; ``new_contacts``: wall
    contacts started this frame; ``finished_now``: the lap was completed this frame; ``laps``: car ->
    its :class:`LapResult`, for the cars whose lap ended this frame.
    """
    r = weights.progress * progress
    r = r - weights.time * live - weights.wall * new_contacts + weights.lap * finished_now
    if weights.fitness and laps:
        r = r.copy()
        for car, lap in laps.items():
            r[car] += weights.fitness * fitness(lap) / FINISHED_BASE
    return np.where(live, r, 0.0)
