"""A lower bound on the lap time of any driver: the shortest path on the road, at top speed.

No lap can be faster than :func:`lap_lower_bound`: the length of the shortest path that the car's
centre can follow from the start (the middle of the start line) round the track and back across the
line, staying at least ``CAR_RADIUS`` from both walls, driven at top speed all the way, plus the
second that the launch from standstill costs at least (0 to 50 m/s at 25 m/s^2 takes 2 s and 50 m,
which at top speed would take 1 s). It ignores the turning radius (a car cannot turn a hairpin at
50 m/s), so real laps stay well above it; evolved laps are reported as a ratio to it beside the
pursuit baseline.

The path is found on gates: every ``spacing`` metres of centre line, the segment across the road
that the car's centre may occupy. The length of a polyline through one point per gate is convex in
the points' positions along their gates, so moving each point in turn to its best position (the
crossing of its neighbours' chord with its gate, clipped to the gate) converges to the shortest
path; it is solved coarse to fine for speed. The straight pieces between gates may cut a corner's
inner wall slightly, which can only make the path shorter: the bound stays a bound.
"""

from __future__ import annotations

import math

import numpy as np

from game.physics import ACCELERATION, CAR_RADIUS, MAX_SPEED
from game.track import Track

LAUNCH_S = MAX_SPEED / ACCELERATION / 2  # 1 s: time lost accelerating from standstill to top speed


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _relax(centre: np.ndarray, across: np.ndarray, s: np.ndarray, iterations: int) -> np.ndarray:
    """Red-black coordinate descent on the open chain of gates; gate 0 stays put (the start)."""
    n = len(s)
    s = s.copy()
    for _ in range(iterations):
        for first in (1, 2):
            idx = np.arange(first, n - 1, 2)
            pts = centre + s[:, None] * across
            a, b = pts[idx - 1], pts[idx + 1]
            d = b - a
            den = _cross(across[idx], d)
            ok = np.abs(den) > 1e-12
            val = np.where(ok, _cross(a - centre[idx], d) / np.where(ok, den, 1.0), s[idx])
            s[idx] = np.clip(val, -1.0, 1.0)
        # The last gate is the start line again: the closest point of it to the previous point.
        prev = centre[-2] + s[-2] * across[-2]
        u = across[-1]
        r = prev - centre[-1]
        s[-1] = np.clip((r[0] * u[0] + r[1] * u[1]) / (u[0] * u[0] + u[1] * u[1]), -1.0, 1.0)  # no BLAS
    return s


def _length(centre: np.ndarray, across: np.ndarray, s: np.ndarray) -> float:
    pts = centre + s[:, None] * across
    return float(np.sum(np.hypot(*np.diff(pts, axis=0).T)))


def shortest_lap_path(track: Track, spacing: float = 2.0) -> tuple[float, np.ndarray]:
    """(length in metres, (N, 2) points) of the shortest start-to-finish path on ``track``'s road."""
    line = track.centerline
    normal = np.stack([-track.tangents[:, 1], track.tangents[:, 0]], axis=1)
    half = track.width / 2 - CAR_RADIUS
    k = len(line)
    s = prev_arc = None
    for level_spacing in (32.0, 16.0, 8.0, 4.0, spacing):
        n = max(8, int(round(track.length / level_spacing)))
        idx = np.linspace(0, k, n, endpoint=False).round().astype(int) % k
        idx = np.append(idx, 0)  # closed: the last gate is the start line
        centre = line[idx]
        across = normal[idx] * half
        arc = np.append(track.arc[idx[:-1]], track.length)
        s0 = np.zeros(len(idx)) if s is None else np.interp(arc, prev_arc, s)
        s0[0] = 0.0
        s = _relax(centre, across, s0, 400 if prev_arc is None else 200)
        prev_arc = arc
    return _length(centre, across, s), centre + s[:, None] * across


def lap_lower_bound(track: Track) -> float:
    """Seconds below which no lap of ``track`` can be driven (see the module docstring)."""
    length, _ = shortest_lap_path(track)
    return length / MAX_SPEED + LAUNCH_S


def ratio(lap_time_s: float | None, reference_s: float | None) -> float:
    """``lap_time_s / reference_s`` (NaN when either is missing)."""
    if lap_time_s is None or reference_s is None or not reference_s > 0:
        return math.nan
    return lap_time_s / reference_s
