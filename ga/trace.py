"""Re-drive one genome frame by frame, recording where the car was and how fast.

Evaluation only returns lap results; the best-lap picture needs the path. The lap is driven in
the task's own environment (its perturbation included) through the one roll-out, so the picture
shows the lap the evaluator scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evaluator import EvaluationTask, make_controller
from game import LapResult, Track
from game.rollout import rollout


@dataclass
class LapTrace:
    """Positions and speeds of one car, one entry per frame (frame 0 = start line)."""

    x: np.ndarray
    y: np.ndarray
    speed: np.ndarray


def drive_recorded(task: EvaluationTask, genome: Sequence[float]) -> tuple[Track, LapResult, LapTrace]:
    """Drive ``genome`` under ``task`` and return the track, the lap result and the trace."""
    env = task.environment(1)
    race = env.unwrapped.race
    poses: list[tuple[float, float, float]] = []

    def record(_observation=None, _keys=None) -> None:
        s = race.state
        poses.append((float(s.x[0]), float(s.y[0]), abs(float(s.speed[0]))))

    result = rollout(env, make_controller(task.controller, task.genome_array([genome])), record)[0]
    record()
    x, y, speed = np.array(poses).T
    return race.track, result, LapTrace(x, y, speed)
