"""The classical baseline: pure pursuit on the centre line with a curvature speed policy.

Every evolved lap is compared with this driver. It steers towards a point a speed-dependent
distance ahead on the centre line, and keeps to the speed at which the car's own turning
radius fits every curve within braking distance, with a safety margin. It finishes every
valid track but drives the centre line, not a racing line, so a good controller beats it.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from game import physics as P
from game.race import Race
from game.track import Track

SAFETY = 0.8  # use this share of the curve radius
BRAKE_PLAN = 35.0  # m/s^2 assumed when planning, below the car's 50 for margin


def corner_speeds(track: Track, safety: float = SAFETY) -> np.ndarray:
    """Highest speed at every centre-line sample whose path radius fits the local curve.

    The car's path radius is twice its turning radius (it turns by t/2 per step), so at speed
    v it follows a circle of 2 * (1.5 + 23.5 * (v / 50)^1.5) metres.
    """
    radius = np.minimum.reduce([np.roll(track.curve_radius, k) for k in range(-6, 7)])
    usable = (safety * radius / 2 - P.MIN_TURN_RADIUS) / (P.MAX_TURN_RADIUS - P.MIN_TURN_RADIUS)
    return np.clip(P.MAX_SPEED * np.clip(usable, 0.0, 1.0) ** (2 / 3), 6.0, P.MAX_SPEED)


@njit(cache=True)
def _pursue(state, cx, cy, arc, length, vmax, out):
    n_samples = vmax.shape[0]
    for i in range(state.shape[0]):
        x, y, h, v = state[i, P.X], state[i, P.Y], state[i, P.HEADING], state[i, P.SPEED]
        s = state[i, P.ARC] - length * math.floor(state[i, P.ARC] / length)
        look = s + 4.0 + 0.3 * abs(v)
        look -= length * math.floor(look / length)
        j = min(n_samples - 1, np.searchsorted(arc, look) - 1)
        f = (look - arc[j]) / (arc[j + 1] - arc[j])
        tx = cx[j] + f * (cx[j + 1] - cx[j])
        ty = cy[j] + f * (cy[j + 1] - cy[j])
        alpha = math.atan2(ty - y, tx - x) - h
        alpha = (alpha + math.pi) % (2.0 * math.pi) - math.pi
        out[i, 2] = alpha > 0.03
        out[i, 3] = alpha < -0.03

        k0 = min(n_samples - 1, np.searchsorted(arc, s))
        horizon = int(v * v / (2.0 * BRAKE_PLAN)) + 10
        target = P.MAX_SPEED
        for k in range(horizon):
            a = vmax[(k0 + k) % n_samples]
            allowed = math.sqrt(a * a + 2.0 * BRAKE_PLAN * k)
            if allowed < target:
                target = allowed
        out[i, 0] = v < target - 0.5
        out[i, 1] = v > target + 1.0


class PursuitDriver:
    """Baseline driver for any number of cars of a ``Race``: ``controls = driver.act(race)``."""

    def __init__(self, track: Track, safety: float = SAFETY) -> None:
        self.track = track
        closed = np.vstack([track.centerline, track.centerline[:1]])
        self._cx = np.ascontiguousarray(closed[:, 0])
        self._cy = np.ascontiguousarray(closed[:, 1])
        self._arc = np.ascontiguousarray(track.arc)
        self._vmax = corner_speeds(track, safety)

    def act(self, race: Race) -> np.ndarray:
        out = np.zeros((race.n_cars, 4), dtype=np.bool_)
        _pursue(race._state, self._cx, self._cy, self._arc, self.track.length, self._vmax, out)
        return out
