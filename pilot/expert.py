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
