"""Training and export: the ONNX file drives exactly like the trained Keras model, and training is seeded.

A tiny real pipeline: frames collected by the real renderer into a real redis-server, exported,
trained for one epoch (seconds), exported with tf2onnx, then both models drive.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import RedisServer

from game.tracklist import HELD_OUT_SEEDS
from pilot.collect import collect, plan_run
from pilot.dataset import export_run, load
from pilot.runtime import PilotModel, keys_from

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
UNSEEN_TRACK = f"random-{HELD_OUT_SEEDS.start}"  # the first track of every judging default

# The ONNX pilot drives a lap in a child process (one renderer per process; and TensorFlow cannot share a
# process with Mesa's renderer), saving every image and speed it saw with the keys it chose.
ONNX_LAP = """
import json, sys
import numpy as np
from game.scene import UrsinaRenderer
from pilot.drive import drive_lap
from pilot.runtime import PilotModel
from pilot.tracks import track_by_name

pilot = PilotModel.load(sys.argv[1])
track = track_by_name("oval")
renderer = UrsinaRenderer(track, headless=True, frame_size=pilot.input_size, hud=False)
seen = {"image": [], "speed": [], "keys": []}

def record(observation, keys):
    seen["image"].append(observation["image"]); seen["speed"].append(observation["speed"][0]); seen["keys"].append(keys)

lap = drive_lap(renderer, track, pilot, max_frames=300, on_frame=record)
np.savez(sys.argv[2], **{k: np.asarray(v) for k, v in seen.items()})
print(json.dumps(lap.to_dict()))
"""


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pilot-data")
    server = RedisServer(tmp)
    server.start()
    try:
        collect(plan_run("tiny", ["oval", "hairpins"], episodes=4, frames=60, seed=3), server.url, workers=2,
                progress=False)
        export_run(server.url, "tiny", tmp / "tiny")
    finally:
        server.stop()
    return tmp / "tiny"


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    from pilot.train import train

    out = tmp_path_factory.mktemp("models") / "tiny"
    card = train([str(tiny_dataset)], out, epochs=1, batch=32, seed=5, verbose=0)
    return out, card.to_doc()


def test_the_model_card_says_what_the_runtime_and_a_reader_need(trained):
    out, card = trained
    on_disk = json.loads((out / "model.json").read_text())
    assert on_disk == card and card["schema_version"] == 1
    assert card["input"]["width"] == 96 and card["input"]["height"] == 72
    assert card["version"].startswith("tiny-")
    assert card["data"]["frames"] == 240 and card["data"]["train_frames"] + card["data"]["validation_frames"] == 240
    assert 150_000 < card["architecture"]["parameters"] < 300_000
    assert {"val_loss", "val_steering_mae", "val_target_speed_mae_m_s", "val_same_keys"} <= set(card["metrics"])


def test_exported_model_gives_the_trained_models_keys_on_every_frame(trained, tiny_dataset):
    import keras

    from pilot.train import KerasPilot

    out, _ = trained
    frames = load([tiny_dataset])
    onnx_pilot = PilotModel.load(out)
    keras_pilot = KerasPilot(keras.models.load_model(out / "model.keras"), onnx_pilot.input_size)
    a = onnx_pilot.predict(frames.images, frames.speed)
    b = keras_pilot.predict(frames.images, frames.speed)
    np.testing.assert_allclose(a.steering, b.steering, atol=1e-4)
    np.testing.assert_allclose(a.target_speed, b.target_speed, atol=5e-3)
    assert (keys_from(*a, frames.speed) == keys_from(*b, frames.speed)).all()


def test_exported_model_drives_the_same_lap_as_the_trained_one(trained, tmp_path):
    """The trained model chooses the exported model's keys at every frame of its lap, so it drives that lap.

    Same start, same keys at every frame: the simulation and the renderer are deterministic, so the
    trained model would see the same frames and finish with the identical lap result.
    """
    import keras

    from pilot.train import KerasPilot

    out, _ = trained
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", ONNX_LAP, str(out), str(tmp_path / "lap.npz")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lap = json.loads(proc.stdout.strip().splitlines()[-1])
    seen = np.load(tmp_path / "lap.npz")
    assert len(seen["keys"]) > 50 and lap["frames"] <= len(seen["keys"])
    keras_pilot = KerasPilot(keras.models.load_model(out / "model.keras"), (96, 72))
    p = keras_pilot.predict(seen["image"], seen["speed"])
    assert (keys_from(p.steering, p.target_speed, seen["speed"]) == seen["keys"]).all()


def test_training_is_seeded(trained, tiny_dataset, tmp_path):
    from pilot.train import train

    out, card = trained
    again = train([str(tiny_dataset)], tmp_path / "again", epochs=1, batch=32, seed=5, verbose=0)
    assert again.history == card["history"]
    frames = load([tiny_dataset])
    a = PilotModel.load(out).predict(frames.images[:50], frames.speed[:50])
    b = PilotModel.load(tmp_path / "again").predict(frames.images[:50], frames.speed[:50])
    assert np.array_equal(a.steering, b.steering) and np.array_equal(a.target_speed, b.target_speed)


def test_train_cli_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "pilot.train", str(tmp_path), "--out", str(tmp_path / "m")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "is not a dataset" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_train_cli_refuses_a_dataset_with_frames_of_a_held_out_track(tmp_path, capsys):
    from pilot.records import DatasetManifest
    from pilot.train import main

    DatasetManifest(run="r", frames=0, width=96, height=72, tracks=["oval", UNSEEN_TRACK],
                    episodes=[]).write(tmp_path / "dataset.json")  # through the manifest's one writer
    assert main([str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{UNSEEN_TRACK} is held out" in err and not (tmp_path / "m").exists()


def test_drive_cli_evaluates_records_and_updates_the_card(trained, tmp_path):
    """``pilot.drive --pilot``: a row per (track, delay) against the pursuit lap; a single lap writes GIF and sheet."""
    from PIL import Image

    out, _ = trained
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    report_path = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, "-m", "pilot.drive", str(out), "--pilot", "--tracks", f"oval,{UNSEEN_TRACK}",
                           "--delays", "0,2", "--workers", "2", "--max-frames", "200", "--json", str(report_path),
                           "--update-card"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert [(r["track"], r["delay"]) for r in report["rows"]] == [("oval", 0), ("oval", 2), (UNSEEN_TRACK, 0),
                                                                  (UNSEEN_TRACK, 2)]
    for r in report["rows"]:
        assert r["pursuit_lap_s"] > 0 and r["frames"] <= 200
        assert r["trained_on"] == (r["track"] == "oval")  # the tiny dataset drove oval and hairpins
    assert {(s["delay"], s["tracks"]) for s in report["summary"]} == {(0, "trained"), (0, "unseen"), (2, "trained"),
                                                                      (2, "unseen")}
    card = json.loads((out / "model.json").read_text())
    assert card["evaluation"]["summary"] == report["summary"]
    assert PilotModel.load(out).version == card["version"]  # the card still loads

    proc = subprocess.run([sys.executable, "-m", "pilot.drive", str(out), "--track", "hairpins", "--max-frames", "60",
                           "--video", str(tmp_path / "lap.gif"), "--sheet", str(tmp_path / "sheet.png")],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "hairpins:" in proc.stdout and "wall contacts" in proc.stdout
    with Image.open(tmp_path / "lap.gif") as gif:
        assert gif.n_frames == 30  # every 2nd of 60 frames
    with Image.open(tmp_path / "sheet.png") as sheet:
        assert sheet.size == (4 * 96 * 4, 2 * 72 * 4)

    proc = subprocess.run([sys.executable, "-m", "pilot.drive", str(out), "--video", "lap.mp4"], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --video writes an animated GIF: give a path ending in .gif"


def test_watching_in_a_window_drives_the_same_lap_as_offscreen(trained, tmp_path, x_display):
    """``--watch`` on a real X server (Xvfb): a window, real-time pacing, and still the lock-step lap."""
    out, _ = trained
    runs = {}
    for mode in ("offscreen", "watch"):
        env = dict(os.environ, PYTHONPATH=str(ROOT), DISPLAY=x_display)
        extra = ["--watch"] if mode == "watch" else []
        proc = subprocess.run([sys.executable, "-m", "pilot.drive", str(out), "--track", "oval", "--max-frames",
                               "50", *extra], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        line = proc.stdout.strip().splitlines()[-1]
        runs[mode] = line.split(" frames/s closed loop")[0].rsplit(",", 1)[0]  # the lap, without the rate
    assert runs["watch"] == runs["offscreen"] and runs["watch"].startswith("oval: ")
