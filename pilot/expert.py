"""The expert that labels frames: what the pursuit driver would do at a pose, as steering and target speed.

Labels are a function of the car's pose (x, y, heading, speed) and the track only, so the expert can
label any frame: one it drove itself, one after a random restart, or one the learning pilot drove
(DAgger). Its steering is the pursuit driver's angle to the look-ahead point scaled so that the runtime's
dead band is exactly the pursuit's, which makes ``keys_from(label)`` the pursuit driver's own keys.
"""

from __future__ import annotations

import numpy as np

from game import geometry, pursuit
from game.track import Track
from pilot import runtime

# The pursuit holds a steering key beyond 0.03 rad; the runtime beyond |steering| 0.1: 0.3 rad is full lock.
STEER_FULL_ANGLE = pursuit.STEER_DEADBAND / runtime.STEER_DEADBAND


def arc_of(track: Track, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each point's position along the centre line (metres from the start line, 0..length)."""
    cx, cy, seg_len, cum, node_seg, _sdf, grid = track.kernel_data
    return np.array([geometry.nearest_on_centerline(float(px), float(py), cx, cy, seg_len, cum, node_seg, grid)[1]
                     for px, py in zip(np.atleast_1d(x), np.atleast_1d(y), strict=True)])


class PursuitExpert:
    """``steering, target_speed = expert.label(x, y, heading, speed)`` for cars on one track."""

    def __init__(self, track: Track) -> None:
        self.track = track
        self.driver = pursuit.PursuitDriver(track)

    def label(self, x, y, heading, speed) -> tuple[np.ndarray, np.ndarray]:
        """Steering in [-1, 1] (+ = left) and target speed in m/s for each pose."""
        alpha, target = self.driver.plan(x, y, heading, speed, arc_of(self.track, x, y))
        return np.clip(alpha / STEER_FULL_ANGLE, -1.0, 1.0), target


class GenomeExpert:
    """An evolved MLP controller (a GA run's ``best.json``) as the expert, on any track its rays can drive.

    It has keys, not an angle or a speed plan, so its labels are its steering key (+1 left, -1 right, 0)
    and, as target speed, the speed it reaches ``horizon`` frames later driving on from the pose: held
    against the measured speed by ``keys_from``, that reproduces its pedal work without copying its
    frame-by-frame key presses (which a camera model cannot learn, see ``pilot.runtime``).
    """

    def __init__(self, track: Track, best_json: str, horizon: int = 10) -> None:
        from evaluator import make_controller
        from evaluator.best import load_best
        from game.env import RallyRoboPilotVectorEnv

        task, genome, _ = load_best(best_json)
        if task.controller.kind != "mlp":
            raise ValueError(f"{best_json}: a {task.controller.describe()} replays a fixed lap from the start "
                             "line and cannot label other poses; use an mlp run's best.json")
        self.controller = make_controller(task.controller, task.genome_array([genome]))
        self.track = track
        self.horizon = horizon
        # from the pose, ``horizon`` frames of the controller's own driving, then the lap is over
        self._env = RallyRoboPilotVectorEnv(1, track=track, max_frames=horizon, stall_frames=None, continuous=True)

    def label(self, x, y, heading, speed) -> tuple[np.ndarray, np.ndarray]:
        from game.rollout import rollout

        steering, target, keys = [], [], []
        for pose in zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(heading), np.atleast_1d(speed),
                        strict=True):
            first = len(keys)
            rollout(self._env, self.controller, lambda _, k: keys.append(k[0]), options={"poses": [pose]})
            steering.append(float(keys[first][2]) - float(keys[first][3]))
            target.append(max(0.0, float(self._env.race.state.speed[0])))
        return np.array(steering), np.array(target)


def make_expert(spec: str, track: Track) -> PursuitExpert | GenomeExpert:
    """``"pursuit"``, or the path of a GA run's ``best.json``."""
    return PursuitExpert(track) if spec == "pursuit" else GenomeExpert(track, spec)
