"""The lap-time lower bound: shortest on-road path at top speed plus the launch."""

import numpy as np
import pytest

from game import bundled_tracks, load_track
from game.bounds import LAUNCH_S, lap_lower_bound, shortest_lap_path
from game.physics import CAR_RADIUS, MAX_SPEED
from game.pursuit import pursuit_lap


def test_circuit_bound():
    assert lap_lower_bound(load_track("circuit")) == pytest.approx(19.54, abs=0.01)
    assert LAUNCH_S == 1.0


@pytest.mark.parametrize("name", bundled_tracks())
def test_bound_is_below_every_lap_and_the_path_stays_on_the_road(name):
    track = load_track(name)
    length, path = shortest_lap_path(track)
    bound = lap_lower_bound(track)
    assert bound == pytest.approx(length / MAX_SPEED + 1.0)
    assert length < track.length  # cutting corners beats the centre line
    assert bound < pursuit_lap(track).lap_time_s
    # every point is within reach of the car's centre: at most half the width minus its radius off the line
    d = np.min(np.hypot(*(path[:, None, :] - track.centerline[None, :, :]).transpose(2, 0, 1)), axis=1)
    assert d.max() <= track.width / 2 - CAR_RADIUS + 1e-6
    assert np.allclose(path[0], track.centerline[0])  # it starts where the car starts
    # a finer set of gates changes the length by well under a metre
    assert shortest_lap_path(track, spacing=1.0)[0] == pytest.approx(length, abs=0.5)
