"""Many chase cameras drawn in one pass: the same image bytes as the one-camera path, car by car.

``UrsinaRenderer.draw_many`` (one offscreen buffer per car, camera masks so a camera sees only its own car),
the camera vector environment built on it, data collection's batched episodes and the batched evaluation
laps of ``pilot.drive``: each must give exactly what one car alone gives. Real offscreen rendering, in a
child process (Panda3D allows one renderer per process).
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

BATCH = """
import json, math, sys
import gymnasium
import numpy as np
sys.path.insert(0, sys.argv[3])
import game
from game.camera_env import RallyRoboPilotCameraEnv, RallyRoboPilotCameraVectorEnv
from game.rollout import rollout
from game.scene import UrsinaRenderer
from game.state import CarView
from pilot.collect import drive_batch, drive_episode, plan_run, random_pose
from pilot.tracks import track_by_name
out, report = {}, {}
renderer = UrsinaRenderer(track_by_name("hairpins"), headless=True, frame_size=(96, 72), hud=False)

def alone(pose):
    renderer.draw(pose)
    return renderer.capture()

# 1. draw_many against draw + capture: random poses, batches of 1..33 (more than one pass), two tracks, and
#    cars packed close together (each would be in the others' pictures if the cameras saw every car)
for name in ("hairpins", "random-4"):
    track = track_by_name(name)
    renderer.set_track(track)
    rng = np.random.default_rng(5)
    poses = [CarView(*random_pose(track, rng)) for _ in range(33)]
    x, y, h, _ = random_pose(track, rng)
    packed = [CarView(x + 4.0 * k * math.cos(h), y + 4.0 * k * math.sin(h), h + 0.02 * k, 0.0) for k in range(6)]
    batches = [poses[:1], poses[1:4], poses[4:11], poses, packed, packed[::-1]]
    out[f"{name}/many"] = np.concatenate([renderer.draw_many(b) for b in batches])
    out[f"{name}/alone"] = np.stack([alone(p) for b in batches for p in b])
    out[f"{name}/after"] = np.stack([alone(p) for p in packed])  # the views' cars never reach the one-camera path

# 2. the camera vector environment: N scripted cars (one ends its lap early) against each car alone
class Scripted:
    def __init__(self, race, turns):
        self.race, self.turns = race, turns
    def act(self, observation):
        k = self.race.frame
        keys = np.array([[k < 40, k >= 50, k % t < 5, t <= k % (2 * t) < t + 4] for t in self.turns])
        return keys if keys.shape[0] > 1 else keys[0]

track = track_by_name("hairpins")
x, y = track.centerline[40]
poses = [(x, y, 0.3, 12.0), None, (x, y, 2.0, 30.0)]  # the last faces the wrong way: a wall soon
turns, limits = [7, 11, 13], 70
vec = gymnasium.make_vec("RallyRoboPilotCamera-v0", num_envs=3, vectorization_mode="vector_entry_point", track=track,
                         renderer=renderer, max_frames=limits, stall_frames=25)
report["vector_space"] = str(vec.observation_space)
frames = []
results = rollout(vec, Scripted(vec.race, turns), lambda o, k: frames.append(o["image"].copy()),
                  options={"poses": poses})
report["vector_laps"] = [r.to_dict() for r in results]
out["vector"] = np.stack(frames)
report["single_laps"] = []
for car in range(3):
    env = RallyRoboPilotCameraEnv(track=track, renderer=renderer, max_frames=limits, stall_frames=25)
    images = []
    lap = rollout(env, Scripted(env.race, turns[car:car + 1]), lambda o, k: images.append(o["image"]),
                  options={"poses": [poses[car]]})
    report["single_laps"].append(lap[0].to_dict())
    out[f"single{car}"] = np.stack(images)

# 3. collection: episodes in batches against one at a time
episodes = plan_run("b", ["hairpins"], episodes=4, frames=30, seed=2)
for e in episodes:
    for k, v in drive_episode(renderer, e).items():
        out[f"one/{e.index}/{k}"] = v
for part in (episodes[:3], episodes[3:]):
    for e, rows in zip(part, drive_batch(renderer, part)):
        for k, v in rows.items():
            out[f"batch/{e.index}/{k}"] = v
# the frames are the one-camera path's at the recorded poses (today's renderer)
e = episodes[0]
out["redrawn"] = np.stack([alone(CarView(float(px), float(py), float(ph), 0.0)) for px, py, ph in
                          zip(out[f"batch/0/x"], out[f"batch/0/y"], out[f"batch/0/heading"])])

# 4. pilot.drive: the delays of a track driven together, against each lap alone
from pilot.drive import drive_lap, drive_laps
from pilot.runtime import PilotModel
model = PilotModel.load(sys.argv[2])
together = drive_laps(renderer, track_by_name("oval"), model, [0, 2, 4], max_frames=300)
report["drive_together"] = [lap.to_dict() for lap in together]
report["drive_alone"] = [drive_lap(renderer, track_by_name("oval"), model, delay=d, max_frames=300).to_dict()
                         for d in (0, 2, 4)]
np.savez(sys.argv[1], **out)
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def batch_run(tmp_path_factory):
    from pilot_models import write_model

    tmp = tmp_path_factory.mktemp("camera-batch")
    model = write_model(tmp / "model", "batch-1", size=(96, 72))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", BATCH, str(tmp / "out.npz"), str(model), str(ROOT / "tests")],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), np.load(tmp / "out.npz")


def test_many_cameras_in_one_pass_give_the_one_camera_paths_bytes(batch_run):
    _, out = batch_run
    for name in ("hairpins", "random-4"):
        many, alone = out[f"{name}/many"], out[f"{name}/alone"]
        assert many.shape == alone.shape == (1 + 3 + 7 + 33 + 6 + 6, 72, 96, 3)
        assert np.array_equal(many, alone)
        assert np.array_equal(out[f"{name}/after"], alone[-6:][::-1])
        # the packed cars see different pictures (the test can tell a car in front from none)
        assert (alone[-12] != alone[-11]).mean() > 0.05


def test_camera_vector_env_is_each_car_alone_bit_for_bit(batch_run):
    report, out = batch_run
    assert report["vector_space"] == ("Dict('image': Box(0, 255, (3, 72, 96, 3), uint8), "
                                      "'speed': Box(-15.0, 50.0, (3, 1), float64))")
    assert report["vector_laps"] == report["single_laps"]
    vector = out["vector"]
    lengths = [len(out[f"single{car}"]) for car in range(3)]
    assert len(set(lengths)) > 1 and len(vector) == max(lengths)  # one car's lap ended before the others'
    for car, n in enumerate(lengths):
        assert np.array_equal(vector[:n, car], out[f"single{car}"])
        assert (vector[n:, car] == vector[n - 1, car]).all()  # an ended car keeps its last frame


def test_collection_batches_give_each_episodes_frames_and_labels(batch_run):
    _, out = batch_run
    keys = [k for k in out.files if k.startswith("one/")]
    assert len(keys) == 4 * 11  # 4 episodes x (image, labels, keys, pose, rays, contacts, who labelled)
    for key in keys:
        a, b = out[key], out["batch/" + key[4:]]
        assert a.dtype == b.dtype and np.array_equal(a, b), key
    assert out["one/0/image"].shape == (30, 72, 96, 3)
    assert np.array_equal(out["batch/0/image"], out["redrawn"])


def test_evaluation_laps_driven_together_are_the_laps_driven_alone(batch_run):
    report, _ = batch_run
    assert report["drive_together"] == report["drive_alone"]
    assert len({json.dumps(lap) for lap in report["drive_alone"]}) > 1  # the delays drive different laps
