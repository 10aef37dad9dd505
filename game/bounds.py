"""A lower bound on any lap time: the shortest path the car's centre can take round the road, at top speed.

    lap_lower_bound(track) = shortest_loop(track) / MAX_SPEED + LAUNCH_S

The car's centre stays ``CAR_RADIUS`` off the walls, so the path lies in the band of half-width
``width / 2 - CAR_RADIUS`` round the centre line, and a lap is a closed loop through that band (it must
cross every checkpoint in order). The shortest such loop is a taut string: it is found here by cutting
the band with gates across the road (every ``spacing`` metres of centre line) and moving each gate's
point to where the straight line between its neighbours crosses the gate, clipped to the band
(Gauss-Seidel on a convex problem: it converges to the shortest loop through the gates), coarse gates
first, then finer ones. Fewer gates only lose constraints, so the loop found is never longer than the
true shortest one: the bound stays a bound.

``LAUNCH_S``: a lap starts from rest; at 25 m/s^2 the car reaches 50 m/s after 2 s and 50 m, which at
top speed would take 1 s, so the start costs at least one second more. Turning limits and braking are
ignored, so the bound is loose on twisty tracks (measured: 0.54x the pursuit lap on hairpins, 0.96x on oval).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from game import physics as P
from game.track import Track

LAUNCH_S = P.MAX_SPEED / P.ACCELERATION / 2  # 2 s and 50 m to top speed: 1 s more than 50 m at top speed
SPACINGS = (32, 16, 8, 4, 2)  # metres of centre line between gates, coarse to fine


def _relax(c: np.ndarray, n: np.ndarray, t: np.ndarray, half: float, sweeps: int, tol: float) -> np.ndarray:
    """Move every gate's point (``c + n * t``) onto the line between its neighbours, clipped to the band."""
    count = len(t)
    colours = [np.arange(k, count, 2) for k in (0, 1)]
    for _ in range(sweeps):
        before = t.copy()
        for idx in colours:
            p = c + n * t[:, None]
            a, b = p[(idx - 1) % count], p[(idx + 1) % count]
            d = b - a
            ci, ni = c[idx], n[idx]
            den = ni[:, 0] * d[:, 1] - ni[:, 1] * d[:, 0]
            num = (a[:, 0] - ci[:, 0]) * d[:, 1] - (a[:, 1] - ci[:, 1]) * d[:, 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                new = np.where(np.abs(den) > 1e-12, num / den, t[idx])
            t[idx] = np.clip(new, -half, half)
        if np.max(np.abs(t - before)) < tol:
            break
    return t


def shortest_loop(track: Track, spacings: tuple[int, ...] = SPACINGS) -> tuple[float, np.ndarray]:
    """Length (m) of the shortest closed path of the car's centre round ``track``, and its points (K, 2)."""
    half = track.width / 2 - P.CAR_RADIUS
    centre, tangent = track.centerline, track.tangents
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    t_prev, idx_prev = None, None
    for spacing in spacings:
        idx = np.arange(0, len(centre), spacing)
        if t_prev is None:
            t = np.zeros(len(idx))
        else:  # start from the coarser solution, interpolated along the centre line (closed)
            xp = np.concatenate([idx_prev, [len(centre)]])
            t = np.interp(idx, xp, np.concatenate([t_prev, t_prev[:1]]))
        t = _relax(centre[idx], normal[idx], t, half, sweeps=20_000, tol=1e-7)
        t_prev, idx_prev = t, idx
    points = centre[idx_prev] + normal[idx_prev] * t_prev[:, None]
    closed = np.vstack([points, points[:1]])
    return float(np.sum(np.linalg.norm(np.diff(closed, axis=0), axis=1))), points


@lru_cache(maxsize=128)
def _bound(track: Track) -> float:
    return shortest_loop(track)[0] / P.MAX_SPEED + LAUNCH_S


def lap_lower_bound(track: Track) -> float:
    """Seconds no lap of ``track`` can beat: the shortest in-road loop at top speed plus the 1 s launch."""
    try:
        return _bound(track)
    except TypeError:  # an unhashable track: no cache
        return shortest_loop(track)[0] / P.MAX_SPEED + LAUNCH_S
