"""The camera environment (RallyRoboPilotCamera-v0): Gymnasium's checker, and frames that are the renderer's.

Real offscreen rendering, in a child process (Panda3D allows one renderer per process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

CAMERA_ENV = """
import json, sys, warnings
import gymnasium
import numpy as np
from gymnasium.utils.env_checker import check_env
import game
from game.env import RallyRoboPilotEnv
from game.rollout import rollout
from game.state import CarView
from game.tracks import load_track

env = gymnasium.make("RallyRoboPilotCamera-v0", track="hairpins", frame_size=(64, 48))  # opens the renderer
renderer = game.camera_env.shared_renderer(load_track("oval"), (64, 48))  # ... which every later env shares
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    check_env(env.unwrapped)
report = {"warnings": [str(w.message) for w in caught], "space": str(env.observation_space)}

# a short lap: forward, a left then a right burst, a restart pose; images and poses as the roll-out saw them
camera = game.camera_env.RallyRoboPilotCameraEnv(track="hairpins", renderer=renderer, max_frames=60)
rays = RallyRoboPilotEnv(track="hairpins", max_frames=60)

class Scripted:
    def __init__(self, env):
        self.race = env.race
    def act(self, observation):
        k = self.race.frame
        return np.array([k < 40, k >= 50, 10 <= k < 20, 25 <= k < 35])

images, poses, speeds = [], [], []
def record(observation, keys):
    images.append(observation["image"]); poses.append(CarView.of(camera.race)); speeds.append(observation["speed"][0])
x, y = camera.track.centerline[40]
options = {"poses": [(x, y, 0.3, 12.0)]}
lap = rollout(camera, Scripted(camera), record, options=options)
rays_lap = rollout(rays, Scripted(rays), options=options)
redrawn = []
for pose in poses:
    renderer.draw(pose)
    redrawn.append(renderer.capture())
np.savez(sys.argv[1], images=np.asarray(images), redrawn=np.asarray(redrawn), speeds=np.asarray(speeds))
report.update(lap=lap[0].to_dict(), rays_lap=rays_lap[0].to_dict(), frames=len(images))
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def camera_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("camera-env")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", CAMERA_ENV, str(tmp / "lap.npz")], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), np.load(tmp / "lap.npz")


def test_gymnasiums_checker_passes_with_real_rendering(camera_run):
    report, _ = camera_run
    assert report["warnings"] == []
    assert report["space"] == ("Dict('image': Box(0, 255, (48, 64, 3), uint8), "
                               "'speed': Box(-15.0, 50.0, (1,), float64))")


def test_a_laps_images_are_the_renderers_own_for_the_same_poses(camera_run):
    report, arrays = camera_run
    assert report["frames"] == 60 and arrays["images"].shape == (60, 48, 64, 3)
    assert np.array_equal(arrays["images"], arrays["redrawn"])
    assert (arrays["images"][0] != arrays["images"][-1]).mean() > 0.05  # the camera follows the car
    # the camera environment drives the ray environment's lap: same keys, same result
    assert report["lap"] == report["rays_lap"] and report["lap"]["distance_m"] > 0
    assert arrays["speeds"][0] == 12.0
