"""Re-drive one genome frame by frame, recording where the car was and how fast.

Evaluation only returns lap results; the best-lap picture needs the path. The lap is
driven with the same decoder, the same simulation and the same limits as
``EvaluationTask.evaluate_batch``, so the recorded lap ends with the result the evaluator
reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evaluator import EvaluationTask, make_controller
from game import LapResult, Race, Track


@dataclass
class LapTrace:
    """Positions and speeds of one car, one entry per frame (frame 0 = start line)."""

    x: np.ndarray
    y: np.ndarray
    speed: np.ndarray


def drive_recorded(task: EvaluationTask, genome: Sequence[float]) -> tuple[Track, LapResult, LapTrace]:
    """Drive ``genome`` under ``task`` and return the track, the lap result and the trace."""
    track = task.load_track()
    controller = make_controller(task.controller, task.genome_array([genome]))
    race = Race(track, 1, max_frames=task.max_frames, stall_frames=task.stall_frames)
    observation = race.observation
    xs, ys, vs = [], [], []

    def record() -> None:
        s = race.state
        xs.append(float(s.x[0]))
        ys.append(float(s.y[0]))
        vs.append(abs(float(s.speed[0])))

    record()
    while not race.all_done:
        observation = race.step(controller.act(observation, race.frame))
        record()
    return track, race.results()[0], LapTrace(np.array(xs), np.array(ys), np.array(vs))
