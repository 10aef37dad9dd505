"""Seeded random tracks: the same seed always gives the same valid track.

A track is a star-shaped loop of control points around the origin (angles evenly spread and
jittered, radii random), so it is closed and cannot cross itself by construction; validation
then rejects curves too tight for the road and near-touches, and the generator draws again.
"""

from __future__ import annotations

import numpy as np

from game.track import Track, TrackError


def generate_track(
    seed: int,
    *,
    width: float = 12.0,
    n_points: int | None = None,
    mean_radius: float = 180.0,
    max_attempts: int = 200,
) -> Track:
    """A valid random track named ``random-<seed>``; raises TrackError if none is found."""
    rng = np.random.default_rng(seed)
    last_error = ""
    for _ in range(max_attempts):
        count = n_points or int(rng.integers(8, 15))
        angles = np.linspace(0.0, 2 * np.pi, count, endpoint=False)
        angles += rng.uniform(-0.3, 0.3, count) * (2 * np.pi / count)
        radii = mean_radius * rng.uniform(0.55, 1.0, count)
        points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
        doc = {"name": f"random-{seed}", "width": width, "points": np.round(points, 2).tolist(),
               "description": f"Generated from seed {seed}."}
        try:
            return Track.from_json(doc)
        except TrackError as exc:
            last_error = str(exc)
    raise TrackError(f"no valid track from seed {seed} in {max_attempts} attempts (last: {last_error})")
