"""The classical baseline: pure pursuit on the centre line with a curvature speed policy.

Every evolved lap is compared with this driver. It steers towards a point a speed-dependent
distance ahead on the centre line, and keeps to the speed at which the car's own turning
radius fits every curve within braking distance, with a safety margin. It finishes every
valid track but drives the centre line, not a racing line, so a good controller beats it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from numba import njit

from game import physics as P
from game.track import Track

if TYPE_CHECKING:  # (race.py's command line drives with this module: no import back at run time)
    from game.race import Race

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


STEER_DEADBAND = 0.03  # rad: the look-ahead point this far off the heading or less holds no steering key
ACCELERATE_BELOW = 0.5  # m/s under the target speed: hold forward
BRAKE_ABOVE = 1.0  # m/s over the target speed: hold back


@njit(cache=True, inline="always")
def _plan_car(x, y, heading, v, arc, cx, cy, arc_table, length, vmax):
    """(angle to the look-ahead point, target speed) for one car."""
    n_samples = vmax.shape[0]
    s = arc - length * math.floor(arc / length)
    look = s + 4.0 + 0.3 * abs(v)
    look -= length * math.floor(look / length)
    j = min(n_samples - 1, np.searchsorted(arc_table, look) - 1)
    f = (look - arc_table[j]) / (arc_table[j + 1] - arc_table[j])
    tx = cx[j] + f * (cx[j + 1] - cx[j])
    ty = cy[j] + f * (cy[j + 1] - cy[j])
    alpha = math.atan2(ty - y, tx - x) - heading
    alpha = (alpha + math.pi) % (2.0 * math.pi) - math.pi

    k0 = min(n_samples - 1, np.searchsorted(arc_table, s))
    horizon = int(v * v / (2.0 * BRAKE_PLAN)) + 10
    target = P.MAX_SPEED
    for k in range(horizon):
        a = vmax[(k0 + k) % n_samples]
        allowed = math.sqrt(a * a + 2.0 * BRAKE_PLAN * k)
        if allowed < target:
            target = allowed
    return alpha, target


@njit(cache=True)
def _plan(x, y, heading, speed, arc, cx, cy, arc_table, length, vmax, out):
    for i in range(x.shape[0]):
        out[i, 0], out[i, 1] = _plan_car(x[i], y[i], heading[i], speed[i], arc[i], cx, cy, arc_table, length, vmax)


@njit(cache=True)
def _keys(cars, cx, cy, arc_table, length, vmax, keys):
    """The keys of every car from its row of the race's state (one compiled call for the batch)."""
    for i in range(cars.shape[0]):
        v = cars[i, P.SPEED]
        alpha, target = _plan_car(cars[i, P.X], cars[i, P.Y], cars[i, P.HEADING], v, cars[i, P.ARC],
                                  cx, cy, arc_table, length, vmax)
        keys[i, 0] = v < target - ACCELERATE_BELOW
        keys[i, 1] = v > target + BRAKE_ABOVE
        keys[i, 2] = alpha > STEER_DEADBAND
        keys[i, 3] = alpha < -STEER_DEADBAND


class Plan(NamedTuple):
    """What the pursuit driver wants for each car, before it is turned into keys."""

    alpha: np.ndarray  # rad, from the heading to the look-ahead point, positive = left
    target_speed: np.ndarray  # m/s, the fastest speed that still brakes in time for every curve ahead


class PursuitDriver:
    """Baseline driver for any number of cars of a ``Race``: ``controls = driver.keys(race)``."""

    def __init__(self, track: Track, safety: float = SAFETY) -> None:
        self.track = track
        closed = np.vstack([track.centerline, track.centerline[:1]])
        self._cx = np.ascontiguousarray(closed[:, 0])
        self._cy = np.ascontiguousarray(closed[:, 1])
        self._arc = np.ascontiguousarray(track.arc)
        self._vmax = corner_speeds(track, safety)

    def plan(self, x, y, heading, speed, arc) -> Plan:
        """The steering angle and target speed for cars at these poses (arrays of one length).

        ``arc`` is each car's position along the centre line in metres (any whole number of laps
        added); this is all the driver looks at, so it also labels poses no race has reached.
        """
        arrays = [np.ascontiguousarray(np.atleast_1d(a), dtype=np.float64) for a in (x, y, heading, speed, arc)]
        out = np.empty((arrays[0].shape[0], 2))
        _plan(*arrays, self._cx, self._cy, self._arc, self.track.length, self._vmax, out)
        return Plan(out[:, 0], out[:, 1])

    def keys(self, race: Race) -> np.ndarray:
        """``(n_cars, 4)`` keys for the cars of ``race``, read from its public state table."""
        keys = np.empty((race.n_cars, 4), dtype=np.bool_)
        _keys(race.table, self._cx, self._cy, self._arc, self.track.length, self._vmax, keys)
        return keys


class PursuitPolicy:
    """The baseline as a :class:`game.rollout.Policy` for the cars of ``race``.

    It plans from the cars' poses on the centre line, not from the observation, so it needs the race
    it drives (a vector environment's ``race``)."""

    def __init__(self, race: Race, safety: float = SAFETY) -> None:
        self.race = race
        self.driver = PursuitDriver(race.track, safety)

    def act(self, observation: object = None) -> np.ndarray:
        return self.driver.keys(self.race)


STALL_FRAMES = 250
"""10 s without progress ends the baseline's lap: it never stalls on a valid track, so this only
bounds a broken one."""


def pursuit_lap(track: Track, *, max_frames: int = 10_000, on_frame=None):
    """One lap of the baseline from the start line (the lap every evolved or learned lap is compared with)."""
    from game.env import RallyRoboPilotVectorEnv
    from game.rollout import rollout

    env = RallyRoboPilotVectorEnv(1, track=track, max_frames=max_frames, stall_frames=STALL_FRAMES)
    return rollout(env, PursuitPolicy(env.race), on_frame)[0]
