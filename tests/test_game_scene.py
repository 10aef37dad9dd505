"""The 3D scene's geometry comes from the track data (pure functions; no OpenGL needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from game import bundled_tracks, load_track
from game.scene import road_mesh_data, scenery_mesh_data, tree_positions, wall_mesh_data

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", bundled_tracks())
def test_meshes_follow_the_track(name):
    track = load_track(name)
    k = len(track.left_wall)
    verts, tris, cols = road_mesh_data(track)
    assert len(verts) == 2 * k and len(cols) == len(verts)
    assert max(max(t) for t in tris) < len(verts)
    # the road's edges are the walls, mapped from track (x, y) to Ursina (x, z)
    v = np.array(verts)
    assert np.allclose(v[0::2][:, [0, 2]], track.left_wall) and np.allclose(v[1::2][:, [0, 2]], track.right_wall)
    for wall in (track.left_wall, track.right_wall):
        wv, wt, wc = wall_mesh_data(wall)
        assert len(wv) == 4 * len(wall) and len(wc) == len(wv) and max(max(t) for t in wt) < len(wv)
        assert {round(p[1], 3) for p in wv} == {0.0, 1.2}
    sv, st, sc = scenery_mesh_data(track)
    assert len(sv) == len(sc) and max(max(t) for t in st) < len(sv)


@pytest.mark.parametrize("name", bundled_tracks())
def test_trees_stand_off_the_road(name):
    track = load_track(name)
    trees = tree_positions(track, n=100, clearance=6.0)
    assert len(trees) > 50
    c = np.asarray(track.centerline)
    d = np.sqrt(((trees[:, None, :] - c[None, :, :]) ** 2).sum(-1)).min(1)
    assert (d > track.width / 2 + 5.0).all()  # dense centre line vs every other sample used to place them
    assert np.array_equal(trees, tree_positions(track, n=100, clearance=6.0))  # seeded


def test_start_line_lies_across_the_start_pose():
    track = load_track("oval")
    sv, _, sc = scenery_mesh_data(track, n_trees=0)
    x, y, h = track.start
    # chequered squares: the vertices at height 0.05, within half a width of the start point
    line = np.array([p for p in sv if abs(p[1] - 0.05) < 1e-9])
    assert len(line) == 8 * 2 * 4
    rel = line[:, [0, 2]] - (x, y)
    along = rel @ (math.cos(h), math.sin(h))
    across = rel @ (-math.sin(h), math.cos(h))
    assert np.abs(across).max() == pytest.approx(track.width / 2)
    assert np.abs(along).max() <= track.width / 8 + 1e-9
