"""The chase camera's image is a function of the car's pose and the track only (real offscreen rendering).

Frames recorded for the vision pilot are labelled with the pose they were taken at; if the camera
carried state from earlier frames (roll accumulated by ``look_at`` with the camera's own up vector),
the same pose would give different images and the labels would lie.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

# Panda3D allows one window per process: the renderer runs in a child process of its own.
RENDER_AFTER_TWO_HISTORIES = """
import math, sys
import numpy as np
from game import load_track
from game.scene import UrsinaRenderer
from game.state import CarView

track = load_track("hairpins")
renderer = UrsinaRenderer(track, headless=True, frame_size=(96, 72), hud=False)
x, y, heading = track.start

def image_at(px, py, ph):
    pose = CarView(px, py, ph, 0.0)
    renderer.draw(pose)
    renderer.draw(pose)
    return renderer.capture()

fresh = image_at(x, y, heading)
centre = np.asarray(track.centerline)
for i in range(0, len(centre) - 1, 2):  # once round the track: three hairpins, every turn
    dx, dy = centre[i + 1] - centre[i]
    image_at(*centre[i], math.atan2(dy, dx))
after_a_lap = image_at(x, y, heading)
turned = image_at(x, y, heading + 0.5)
np.savez(sys.argv[1], fresh=fresh, after_a_lap=after_a_lap, turned=turned)
"""


def test_same_pose_gives_the_same_image_whatever_was_driven_before(tmp_path):
    out = tmp_path / "images.npz"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", RENDER_AFTER_TWO_HISTORIES, str(out)], cwd=tmp_path, env=env,
                   check=True, capture_output=True, timeout=300)
    images = np.load(out)
    assert images["fresh"].shape == (72, 96, 3)
    assert np.array_equal(images["fresh"], images["after_a_lap"])
    # and the comparison can tell poses apart: another heading is another picture
    assert (images["fresh"] != images["turned"]).mean() > 0.2
