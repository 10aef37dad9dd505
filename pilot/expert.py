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
GENOME_HORIZON = 10  # frames: a key driver's target speed is the speed it reaches this much later


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

    def __init__(self, track: Track, best_json: str, horizon: int | None = None) -> None:
        from evaluator import make_controller
        from evaluator.best import load_best
        from game.env import RallyRoboPilotVectorEnv

        task, genome, _ = load_best(best_json)
        if task.controller.kind != "mlp":
            raise ValueError(f"{best_json}: a {task.controller.describe()} replays a fixed lap from the start "
                             "line and cannot label other poses; use an mlp run's best.json")
        self.controller = make_controller(task.controller, task.genome_array([genome]))
        self.track = track
        self.horizon = horizon = GENOME_HORIZON if horizon is None else horizon
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


IDLE_SPEED = 0.5  # m/s: a frame standing still that is still standing ``horizon`` frames later teaches nothing


def keys_labels(frame: np.ndarray, controls: np.ndarray, speed: np.ndarray,
                horizon: int = GENOME_HORIZON) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels for frames driven with the keys (a person at the keyboard, any key driver), as
    :class:`GenomeExpert` labels its own driving: ``(keep, steering, target_speed)`` for one stretch of
    a game session (``frame`` increasing; ``controls`` (n, 4) forward, back, left, right: the keys of the
    step that led to each frame, as the game records them).

    - steering: the keys pressed after the frame was shown, +1 left, -1 right, 0 (both or none): those of
      the next frame's record when it was recorded, else the frame's own (held keys rarely change between
      two frames);
    - target speed: the speed reached ``horizon`` frames later (interpolated between recorded frames when
      the game recorded every k-th frame), at least 0;
    - ``keep``: False for the last ``horizon`` frames (their later speed is not known) and for frames
      standing still that are still standing ``horizon`` frames on (before the driver set off: the start
      line's picture with a target of 0 would teach the pilot to stay there).
    """
    frame = np.asarray(frame, dtype=np.int64)
    controls = np.asarray(controls, dtype=bool).reshape(-1, 4)
    speed = np.asarray(speed, dtype=np.float64)
    n = len(frame)
    if not n == len(controls) == len(speed):
        raise ValueError("frame, controls and speed must have one length")
    if n and (np.diff(frame) <= 0).any():
        raise ValueError("frames of one stretch must increase")
    following = np.arange(n)
    if n > 1:
        consecutive = np.diff(frame) == 1
        following[:-1][consecutive] += 1
    keys = controls[following]
    steering = keys[:, 2].astype(np.float64) - keys[:, 3].astype(np.float64)
    if n == 0:
        return np.zeros(0, bool), steering, np.zeros(0)
    later = frame + horizon
    target = np.maximum(0.0, np.interp(later, frame, speed))
    keep = (later <= frame[-1]) & ~((np.abs(speed) < IDLE_SPEED) & (target < IDLE_SPEED))
    return keep, steering, target


def make_expert(spec: str, track: Track) -> PursuitExpert | GenomeExpert:
    """``"pursuit"``, or the path of a GA run's ``best.json``."""
    return PursuitExpert(track) if spec == "pursuit" else GenomeExpert(track, spec)
