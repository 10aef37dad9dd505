"""Compiled geometry kernels shared by track validation, the simulation and the baseline driver.

The road is the tube of half-width ``hw`` around a closed, densely resampled centre line.
Everything a car needs (distance to the walls, arc-length position) follows from "the nearest
centre-line segment", so the track precomputes that segment for every node of a 0.5 m grid
once, and the per-step queries only refine it among a few neighbouring segments. Ray casting
sphere-traces a bilinear signed-distance grid (positive on the road), which costs a handful of
lookups per ray instead of a loop over every wall segment.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

GRID_STEP = 0.5  # metres between grid nodes
SEARCH_WINDOW = 4  # neighbouring segments checked around the grid's nearest-segment guess


@njit(cache=True)
def build_grid(cx, cy, half_width, band, ox, oy, step, nx, ny):
    """Nearest segment and signed wall distance for every grid node within ``band`` of the road.

    Nodes farther than the band keep segment -1 and distance ``-band`` (deep in the wall).
    """
    n_seg = cx.shape[0] - 1
    best = np.full((ny, nx), np.inf)
    seg = np.full((ny, nx), -1, dtype=np.int32)
    reach = half_width + band
    for i in range(n_seg):
        ax, ay, bx, by = cx[i], cy[i], cx[i + 1], cy[i + 1]
        dx, dy = bx - ax, by - ay
        ll = dx * dx + dy * dy
        x0 = max(0, int(math.floor((min(ax, bx) - reach - ox) / step)))
        x1 = min(nx - 1, int(math.ceil((max(ax, bx) + reach - ox) / step)))
        y0 = max(0, int(math.floor((min(ay, by) - reach - oy) / step)))
        y1 = min(ny - 1, int(math.ceil((max(ay, by) + reach - oy) / step)))
        for iy in range(y0, y1 + 1):
            py = oy + iy * step
            for ix in range(x0, x1 + 1):
                px = ox + ix * step
                t = ((px - ax) * dx + (py - ay) * dy) / ll
                t = min(1.0, max(0.0, t))
                qx = ax + t * dx - px
                qy = ay + t * dy - py
                d2 = qx * qx + qy * qy
                if d2 < best[iy, ix]:
                    best[iy, ix] = d2
                    seg[iy, ix] = i
    sdf = np.empty((ny, nx), dtype=np.float32)
    for iy in range(ny):
        for ix in range(nx):
            if seg[iy, ix] >= 0 and best[iy, ix] <= reach * reach:
                sdf[iy, ix] = half_width - math.sqrt(best[iy, ix])
            else:
                seg[iy, ix] = -1
                sdf[iy, ix] = -band
    return seg, sdf


@njit(cache=True)
def closest_overlap(cx, cy, cum, length, clearance):
    """Worst place where two distant parts of the centre line come closer than ``clearance``.

    Two points may be close only if the road between them can bend back that tightly, i.e. the
    arc between them is at most a semicircle over their distance (plus slack for sampling).
    Returns (distance, arc_a, arc_b) of the worst offending pair, or (inf, -1, -1).
    """
    n = cx.shape[0] - 1
    worst = np.inf
    wa = -1.0
    wb = -1.0
    for i in range(n):
        for j in range(i + 1, n):
            dx = cx[i] - cx[j]
            dy = cy[i] - cy[j]
            d2 = dx * dx + dy * dy
            if d2 >= clearance * clearance:
                continue
            arc = cum[j] - cum[i]
            arc = min(arc, length - arc)
            d = math.sqrt(d2)
            if arc > 0.5 * math.pi * d * 1.05 + 2.0 and d < worst:
                worst = d
                wa = cum[i]
                wb = cum[j]
    return worst, wa, wb


@njit(cache=True)
def nearest_on_centerline(px, py, cx, cy, seg_len, cum, node_seg, grid):
    """(distance to centre line, arc length, nearest point x, y) for a point near the road."""
    ox, oy, inv_step, nx, ny = grid[0], grid[1], grid[2], int(grid[3]), int(grid[4])
    n_seg = seg_len.shape[0]
    ix = min(nx - 1, max(0, int(round((px - ox) * inv_step))))
    iy = min(ny - 1, max(0, int(round((py - oy) * inv_step))))
    guess = node_seg[iy, ix]
    if guess >= 0:
        lo, hi = guess - SEARCH_WINDOW, guess + SEARCH_WINDOW + 1
    else:  # off the precomputed band: cannot happen in play, stay correct anyway
        lo, hi = 0, n_seg
    best = np.inf
    bs = 0.0
    bqx = px
    bqy = py
    for k in range(lo, hi):
        i = k % n_seg
        ax, ay = cx[i], cy[i]
        dx, dy = cx[i + 1] - ax, cy[i + 1] - ay
        t = ((px - ax) * dx + (py - ay) * dy) / (seg_len[i] * seg_len[i])
        t = min(1.0, max(0.0, t))
        qx = ax + t * dx
        qy = ay + t * dy
        d2 = (px - qx) * (px - qx) + (py - qy) * (py - qy)
        if d2 < best:
            best = d2
            bs = cum[i] + t * seg_len[i]
            bqx = qx
            bqy = qy
    return math.sqrt(best), bs, bqx, bqy


@njit(cache=True)
def wall_distance(px, py, sdf, grid):
    """Bilinear signed distance to the nearest wall (positive on the road)."""
    ox, oy, inv_step, nx, ny = grid[0], grid[1], grid[2], int(grid[3]), int(grid[4])
    fx = (px - ox) * inv_step
    fy = (py - oy) * inv_step
    if fx < 0.0 or fy < 0.0 or fx >= nx - 1 or fy >= ny - 1:
        return -1.0
    ix = int(fx)
    iy = int(fy)
    tx = fx - ix
    ty = fy - iy
    top = sdf[iy, ix] * (1.0 - tx) + sdf[iy, ix + 1] * tx
    bottom = sdf[iy + 1, ix] * (1.0 - tx) + sdf[iy + 1, ix + 1] * tx
    return top * (1.0 - ty) + bottom * ty


@njit(cache=True)
def cast_ray(px, py, dx, dy, max_range, sdf, grid):
    """Sphere-trace from (px, py) along unit (dx, dy) to the first wall, up to max_range."""
    t = 0.0
    for _ in range(96):
        d = wall_distance(px + dx * t, py + dy * t, sdf, grid)
        if d < 0.02:
            return min(t, max_range)
        t += d
        if t >= max_range:
            return max_range
    return min(t, max_range)


def grid_origin_and_shape(cx: np.ndarray, cy: np.ndarray, margin: float) -> tuple[float, float, int, int]:
    """Grid covering the centre line's bounding box plus ``margin`` metres on every side."""
    ox = float(np.floor(cx.min() - margin))
    oy = float(np.floor(cy.min() - margin))
    nx = int(np.ceil((cx.max() + margin - ox) / GRID_STEP)) + 2
    ny = int(np.ceil((cy.max() + margin - oy) / GRID_STEP)) + 2
    return ox, oy, nx, ny
