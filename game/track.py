"""Tracks are data: a closed loop of control points and a road width.

A closed centripetal Catmull-Rom spline through the control points gives the centre line,
resampled every metre. The walls are the centre line offset by half the width on each side.
Validation rejects anything the simulation could not honour: tighter curves than the road
width allows (the inner wall would fold) and parts of the loop that come so close that a car
could jump from one to the other in one step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from game import geometry

MIN_WIDTH = 6.0
MAX_WIDTH = 40.0
MIN_LENGTH = 200.0
MAX_LENGTH = 20_000.0
MAX_COORD = 10_000.0
MAX_POINTS = 1_000
SAMPLE_SPACING = 1.0  # metres between centre-line samples
CLEARANCE = 4.0  # metres of wall between two distant parts of the road (> one step at top speed)
CURVE_MARGIN = 1.0  # the inner wall keeps at least this radius
BAND = 6.0  # metres around the road where the grid is precomputed
MAX_GRID_CELLS = 8_000_000
"""The precomputed grid covers the track's bounding box every 0.5 m (8 bytes a node, twice that
while it is built), so memory grows with the box, not the road: a 20 km circle would need 3 GB.
8 million nodes (64 MB; a box of about 1.4 x 1.4 km) is 8 times the largest bundled track."""
CHECKPOINT_SPACING = 100.0  # metres between ordered checkpoints
TRACK_KEYS = ("name", "width", "points", "description")


class TrackError(ValueError):
    """A track that cannot be loaded or driven; the message says which track and why."""


@dataclass(frozen=True, eq=False)
class Track:
    """An immutable, validated track with its precomputed geometry.

    Build one with ``Track.from_json`` (validates) or ``game.load_track``.
    """

    name: str
    width: float
    points: np.ndarray  # (M, 2) control points of the closed centre line, metres
    description: str = ""

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_json(cls, data: Any, *, source: str = "track") -> Track:
        """Validate a parsed JSON document and build the track; TrackError names the problem."""
        if not isinstance(data, dict):
            raise TrackError(f"{source}: expected a JSON object with 'name', 'width' and 'points'")
        unknown = sorted(str(k) for k in data if k not in TRACK_KEYS)
        if unknown:
            raise TrackError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; a track has "
                             "'name', 'width', 'points' and optionally 'description'")
        missing = [k for k in ("width", "points") if k not in data]
        if missing:
            raise TrackError(f"{source}: missing {' and '.join(map(repr, missing))} (a track needs a 'width' "
                             "in metres and 'points', a list of [x, y] pairs)")
        name = data.get("name", Path(source).stem)
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise TrackError(f"{source}: 'name' must be a non-empty string of at most 64 characters")
        label = f"track '{name}'"
        width = data.get("width")
        if isinstance(width, bool) or not isinstance(width, int | float) or not math.isfinite(width):
            raise TrackError(f"{label}: 'width' must be a number of metres, got {width!r}")
        if not MIN_WIDTH <= width <= MAX_WIDTH:
            raise TrackError(f"{label}: 'width' {width} m is outside {MIN_WIDTH:g}..{MAX_WIDTH:g} m")
        points = data.get("points")
        if not isinstance(points, list) or not 4 <= len(points) <= MAX_POINTS:
            raise TrackError(f"{label}: 'points' must be a list of 4 to {MAX_POINTS} [x, y] pairs")
        for i, p in enumerate(points):
            if (
                not isinstance(p, list | tuple)
                or len(p) != 2
                or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in p)
            ):
                raise TrackError(f"{label}: points[{i}] must be a pair of numbers [x, y], got {p!r}")
            if not all(math.isfinite(c) and abs(c) <= MAX_COORD for c in p):
                raise TrackError(f"{label}: points[{i}] = {p!r} is not finite or beyond +-{MAX_COORD:g} m")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise TrackError(f"{label}: 'description' must be a string")
        track = cls(name=name, width=float(width), points=np.asarray(points, dtype=np.float64),
                    description=description)
        track._validate()
        return track

    @classmethod
    def from_file(cls, path: str | Path) -> Track:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise TrackError(f"cannot read track file {path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrackError(f"track file {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
        return cls.from_json(data, source=str(path))

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"name": self.name, "width": self.width}
        if self.description:
            doc["description"] = self.description
        doc["points"] = [[float(x), float(y)] for x, y in self.points]
        return doc

    # ------------------------------------------------------------- validation
    def _validate(self) -> None:
        label = f"track '{self.name}'"
        gaps = np.linalg.norm(np.diff(np.vstack([self.points, self.points[:1]]), axis=0), axis=1)
        if gaps.min() < 1.0:
            i = int(gaps.argmin())
            raise TrackError(f"{label}: points[{i}] and the next point are less than 1 m apart")
        length = self.length
        if not MIN_LENGTH <= length <= MAX_LENGTH:
            raise TrackError(f"{label}: length {length:.0f} m is outside {MIN_LENGTH:g}..{MAX_LENGTH:g} m")
        _, _, nx, ny = self.grid_shape
        if nx * ny > MAX_GRID_CELLS:
            w, h = (nx - 1) * geometry.GRID_STEP, (ny - 1) * geometry.GRID_STEP
            raise TrackError(
                f"{label}: its bounding box of {w:.0f} x {h:.0f} m needs {nx * ny:,} grid cells, over the limit "
                f"of {MAX_GRID_CELLS:,} (about {math.sqrt(MAX_GRID_CELLS) * geometry.GRID_STEP:.0f} m square); "
                "make the track more compact"
            )
        radius = self.curve_radius
        need = self.width / 2 + CURVE_MARGIN
        if radius.min() < need:
            i = int(radius.argmin())
            raise TrackError(
                f"{label}: the curve at {self.arc[i]:.0f} m has radius {radius[i]:.1f} m, tighter than the "
                f"{need:.1f} m a {self.width:g} m wide road needs"
            )
        d, a, b = geometry.closest_overlap(self._cx, self._cy, self.arc, length, self.width + CLEARANCE)
        if math.isfinite(d):
            raise TrackError(
                f"{label}: the road at {a:.0f} m comes within {d:.1f} m of the road at {b:.0f} m "
                f"(self-intersecting or too close; centre lines must stay {self.width + CLEARANCE:.0f} m apart)"
            )

    # ------------------------------------------------------ derived geometry
    @cached_property
    def centerline(self) -> np.ndarray:
        """(K, 2) samples of the closed centre line about 1 m apart; sample 0 is the start line."""
        return _resample_closed(_catmull_rom_closed(self.points), SAMPLE_SPACING)

    @cached_property
    def _closed(self) -> np.ndarray:
        return np.vstack([self.centerline, self.centerline[:1]])

    @property
    def _cx(self) -> np.ndarray:
        return np.ascontiguousarray(self._closed[:, 0])

    @property
    def _cy(self) -> np.ndarray:
        return np.ascontiguousarray(self._closed[:, 1])

    @cached_property
    def segment_lengths(self) -> np.ndarray:
        return np.linalg.norm(np.diff(self._closed, axis=0), axis=1)

    @cached_property
    def arc(self) -> np.ndarray:
        """Arc length at every centre-line sample, and the full length at the closing sample."""
        return np.concatenate([[0.0], np.cumsum(self.segment_lengths)])

    @property
    def length(self) -> float:
        return float(self.arc[-1])

    @cached_property
    def tangents(self) -> np.ndarray:
        nxt = np.roll(self.centerline, -1, axis=0)
        prv = np.roll(self.centerline, 1, axis=0)
        t = nxt - prv
        return t / np.linalg.norm(t, axis=1, keepdims=True)

    @cached_property
    def left_wall(self) -> np.ndarray:
        normal = np.stack([-self.tangents[:, 1], self.tangents[:, 0]], axis=1)
        return self.centerline + normal * (self.width / 2)

    @cached_property
    def right_wall(self) -> np.ndarray:
        normal = np.stack([-self.tangents[:, 1], self.tangents[:, 0]], axis=1)
        return self.centerline - normal * (self.width / 2)

    @cached_property
    def curve_radius(self) -> np.ndarray:
        """Radius of curvature at every sample (circumradius of samples 3 m either side)."""
        p0 = np.roll(self.centerline, 3, axis=0)
        p1 = self.centerline
        p2 = np.roll(self.centerline, -3, axis=0)
        a = np.linalg.norm(p1 - p0, axis=1)
        b = np.linalg.norm(p2 - p1, axis=1)
        c = np.linalg.norm(p2 - p0, axis=1)
        cross = np.abs((p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (p2[:, 0] - p0[:, 0]))
        with np.errstate(divide="ignore"):
            return np.where(cross > 1e-9, a * b * c / (2 * np.maximum(cross, 1e-12)), np.inf)

    @cached_property
    def checkpoints(self) -> np.ndarray:
        """Arc lengths of the ordered checkpoints a lap must pass before the finish line."""
        count = max(3, int(self.length // CHECKPOINT_SPACING))
        return np.arange(1, count) * (self.length / count)

    @property
    def start(self) -> tuple[float, float, float]:
        """Base state on the start line: x, y, heading (radians, counter-clockwise from +x)."""
        x, y = self.centerline[0]
        tx, ty = self.tangents[0]
        return float(x), float(y), math.atan2(ty, tx)

    @cached_property
    def grid_shape(self) -> tuple[float, float, int, int]:
        """Origin and node counts of the precomputed grid (bounding box plus the band)."""
        return geometry.grid_origin_and_shape(self._cx, self._cy, self.width / 2 + BAND + 2.0)

    @property
    def memory_bytes(self) -> int:
        """What the track holds once it has been driven: the grid (8 bytes a node) and the centre line."""
        _, _, nx, ny = self.grid_shape
        return nx * ny * 8 + self._cx.nbytes * 8

    @cached_property
    def kernel_data(self) -> tuple[np.ndarray, ...]:
        """Arrays the compiled kernels read: cx, cy, segment lengths, arc, node segment, sdf, grid."""
        cx, cy = self._cx, self._cy
        ox, oy, nx, ny = self.grid_shape
        node_seg, sdf = geometry.build_grid(cx, cy, self.width / 2, BAND, ox, oy, geometry.GRID_STEP, nx, ny)
        grid = np.array([ox, oy, 1.0 / geometry.GRID_STEP, nx, ny, self.width / 2, self.length])
        return cx, cy, np.ascontiguousarray(self.segment_lengths), np.ascontiguousarray(self.arc), node_seg, sdf, grid


def _length(v: np.ndarray) -> float:
    """Euclidean length computed the same way on every CPU (no BLAS)."""
    return float(np.sqrt(np.sum(np.square(v))))


def _catmull_rom_closed(points: np.ndarray, samples_per_span: int = 32) -> np.ndarray:
    """Dense points on the closed centripetal Catmull-Rom spline through ``points``.

    Centripetal parameterisation never makes cusps or loops inside a span, which keeps
    hand-written and generated tracks honest.
    """
    p = np.asarray(points, dtype=np.float64)
    n = len(p)
    out = []
    u = np.linspace(0.0, 1.0, samples_per_span, endpoint=False)[:, None]
    for i in range(n):
        p0, p1, p2, p3 = p[(i - 1) % n], p[i], p[(i + 1) % n], p[(i + 2) % n]
        t0 = 0.0
        # sqrt(sum of squares), not np.linalg.norm: a vector's norm goes through BLAS's ddot, whose last
        # bits depend on the CPU's kernel, and the whole track's geometry (hence every lap) follows from here.
        t1 = t0 + _length(p1 - p0) ** 0.5
        t2 = t1 + _length(p2 - p1) ** 0.5
        t3 = t2 + _length(p3 - p2) ** 0.5
        t = t1 + u * (t2 - t1)
        a1 = (t1 - t) / (t1 - t0) * p0 + (t - t0) / (t1 - t0) * p1
        a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
        a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
        b1 = (t2 - t) / (t2 - t0) * a1 + (t - t0) / (t2 - t0) * a2
        b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
        out.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
    return np.vstack(out)


def _resample_closed(dense: np.ndarray, spacing: float) -> np.ndarray:
    closed = np.vstack([dense, dense[:1]])
    cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(closed, axis=0), axis=1))])
    count = max(8, int(round(cum[-1] / spacing)))
    s = np.linspace(0.0, cum[-1], count, endpoint=False)
    return np.stack([np.interp(s, cum, closed[:, 0]), np.interp(s, cum, closed[:, 1])], axis=1)
