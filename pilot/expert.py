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
    """``steering, target_speed = expert.label(x, y, heading, speed)`` for cars on one track.

    ``sources`` names who labelled each pose of the last call (always ``"pursuit"`` here)."""

    def __init__(self, track: Track) -> None:
        self.track = track
        self.driver = pursuit.PursuitDriver(track)
        self.sources: list[str] = []

    def label(self, x, y, heading, speed) -> tuple[np.ndarray, np.ndarray]:
        """Steering in [-1, 1] (+ = left) and target speed in m/s for each pose."""
        alpha, target = self.driver.plan(x, y, heading, speed, arc_of(self.track, x, y))
        self.sources = ["pursuit"] * len(alpha)
        return np.clip(alpha / STEER_FULL_ANGLE, -1.0, 1.0), target


class GenomeExpert:
    """An evolved MLP controller (a GA run's ``best.json``) as the expert, on any track its rays can drive.

    It has keys, not an angle or a speed plan, so its labels come from what it does when it drives on from
    the pose (a short look-ahead roll-out of ``check`` frames): as steering, its steering key (+1 left, -1
    right, 0) averaged over the first ``steer_window`` frames (1: the key itself; more: the steering it
    actually holds over a short window, which a camera model can fit, where its frame-by-frame bang-bang
    keys it cannot), and as target speed the speed it reaches ``horizon`` frames later: held against the
    measured speed by ``keys_from``, that reproduces its pedal work without copying its key presses.

    A specialist only knows its racing line. From a pose off it (a restart, the noise, the learning pilot)
    it may crash or stall; with ``fallback`` set (a :class:`PursuitExpert`), a look-ahead that touches a
    wall, or advances less than ``MIN_ADVANCE_M`` along the road, hands the pose to the fallback, which
    labels the recovery. ``sources`` names who labelled each pose of the last call: ``"genome"`` or
    ``"pursuit"``.
    """

    MIN_ADVANCE_M = 0.5

    def __init__(self, track: Track, best_json: str, horizon: int = GENOME_HORIZON, *, steer_window: int = 1,
                 check: int | None = None, fallback: PursuitExpert | None = None) -> None:
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
        self.steer_window = max(1, steer_window)
        self.check = max(horizon, self.steer_window, check or horizon)
        self.fallback = fallback
        self.sources: list[str] = []
        # from the pose, ``check`` frames of the controller's own driving, then the lap is over
        self._env = RallyRoboPilotVectorEnv(1, track=track, max_frames=self.check, stall_frames=None,
                                            continuous=True)

    def label(self, x, y, heading, speed) -> tuple[np.ndarray, np.ndarray]:
        from game.rollout import rollout

        steering, target, sources = [], [], []
        race = self._env.race
        for pose in zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(heading), np.atleast_1d(speed),
                        strict=True):
            keys: list[np.ndarray] = []
            reached: list[float] = []

            def seen(_, k, keys=keys, reached=reached):
                keys.append(k[0])
                if len(keys) == self.horizon + 1:  # before the step: the speed after ``horizon`` frames
                    reached.append(float(race.state.speed[0]))

            rollout(self._env, self.controller, seen, options={"poses": [pose]})
            if len(reached) < 1:
                reached.append(float(race.state.speed[0]))
            if self.fallback is not None and self._fails(pose, int(race.lap.collisions[0])):
                s, t = self.fallback.label(*([v] for v in pose))
                steering.append(float(s[0]))
                target.append(float(t[0]))
                sources.append("pursuit")
                continue
            window = np.array(keys[:self.steer_window], dtype=float)
            steering.append(float(np.mean(window[:, 2] - window[:, 3])))
            target.append(max(0.0, reached[0]))
            sources.append("genome")
        self.sources = sources
        return np.array(steering), np.array(target)

    def _fails(self, pose: tuple, collisions: int) -> bool:
        """The look-ahead from ``pose`` touched a wall, or did not get on along the road (stalled, turned back)."""
        if collisions > 0:
            return True
        st = self._env.race.state
        start, end = arc_of(self.track, np.array([pose[0], st.x[0]]), np.array([pose[1], st.y[0]]))
        length = self.track.length
        advance = (end - start + length / 2) % length - length / 2
        return bool(advance < self.MIN_ADVANCE_M)


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


SPECIALIST = {"steer_window": 5, "check": 25}
"""How ``pilot.collect --experts`` uses a track's specialist: steering averaged over 5 frames (0.2 s),
and 25 frames (1 s) of look-ahead that must stay off the walls and get on along the road, or pursuit
labels the pose."""


def make_expert(spec: str, track: Track, *, specialist: bool = True) -> PursuitExpert | GenomeExpert:
    """``"pursuit"``, or the path of a GA run's ``best.json``, labelling as a specialist (:data:`SPECIALIST`:
    smoothed steering, pursuit where its look-ahead fails: how ``pilot.collect`` uses every evolved expert);
    ``specialist=False``: its raw first key and no fallback."""
    if spec == "pursuit":
        return PursuitExpert(track)
    if specialist:
        return GenomeExpert(track, spec, fallback=PursuitExpert(track), **SPECIALIST)
    return GenomeExpert(track, spec)
