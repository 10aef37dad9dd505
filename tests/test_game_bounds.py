"""The lap-time lower bound (game.bounds): exact on a ring, below every lap driven."""

import math

import numpy as np
import pytest

from game import physics as P
from game import tracklist
from game.bounds import LAUNCH_S, lap_lower_bound, shortest_loop
from game.pursuit import pursuit_lap
from game.track import Track


def ring(radius: float, width: float) -> Track:
    angles = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    points = [[radius * math.cos(a), radius * math.sin(a)] for a in angles]
    return Track.from_json({"name": "ring", "width": width, "points": points})


def test_the_shortest_loop_of_a_ring_hugs_its_inner_band():
    track = ring(100.0, 12.0)
    length, points = shortest_loop(track)
    inner = 2 * math.pi * (100.0 - 6.0 + P.CAR_RADIUS)
    assert length == pytest.approx(inner, rel=5e-3)
    assert lap_lower_bound(track) == pytest.approx(length / P.MAX_SPEED + LAUNCH_S)
    assert LAUNCH_S == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["circuit", "hairpins", "oval", "random-1000000000"])
def test_no_pursuit_lap_beats_the_bound_and_the_loop_stays_on_the_road(name):
    track = tracklist.load(name)
    bound = lap_lower_bound(track)
    assert bound < pursuit_lap(track).lap_time_s
    length, points = shortest_loop(track)
    assert length < track.length + track.width  # never longer than (about) the centre line
    # every point within the band the car's centre may use
    d = np.min(np.linalg.norm(points[:, None, :] - track.centerline[None, ::2, :], axis=2), axis=1)
    assert np.all(d <= track.width / 2 - P.CAR_RADIUS + 1.0)
