"""Your own laps as data: a game session driven with the keys, recorded by the game into a real Redis,
exported by ``pilot.dataset export --session`` with labels from the keys, and a pilot trained on it.

The game runs as a user runs it (``python -m game --headless --redis ...``, lock-step, the pursuit
baseline at the keys: a keyboard-like driver, bang-bang keys), recording every frame.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from support import die_with_parent, poll

from game.frame_records import FrameRecord
from game.recorder import KEYS, stream_key
from pilot.dataset import export_sessions, load, main, read_manifest
from pilot.expert import keys_labels
from pilot.records import GameEpisodeRecord

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SESSION = "mylaps"
OVAL_FRAMES, HAIRPINS_FRAMES = 750, 300  # a lap of oval is 567 frames for this driver: 1 lap and a piece


def test_labels_from_keys_follow_the_next_keys_and_the_speed_ten_frames_on():
    frame = np.arange(30)
    controls = np.zeros((30, 4), bool)
    controls[3:, 0] = True            # forward from frame 3 on
    controls[10:15, 2] = True         # left for 5 frames
    controls[20:22, 3] = True         # right for 2
    controls[25, 2:] = True           # both: no steering
    speed = np.concatenate([np.zeros(3), np.arange(1, 28, dtype=float)])
    keep, steering, target = keys_labels(frame, controls, speed, horizon=10)
    assert steering[9] == 1 and steering[13] == 1 and steering[14] == 0  # the keys pressed after the frame
    assert steering[19] == -1 and steering[21] == 0 and steering[24] == 0 and steering[29] == 0  # last: its own
    np.testing.assert_array_equal(target[:20], speed[10:30])
    assert not keep[20:].any(), "the last 10 frames have no later speed"
    assert keep[:20].all(), "standing at frame 0 but 7 m/s 10 frames on: a frame worth learning"
    idle = keys_labels(frame, np.zeros((30, 4), bool), np.zeros(30))[0]
    assert not idle.any(), "standing still, still standing 10 frames on: nothing to learn"
    # every 2nd frame recorded: the next keys are unknown (own keys), the later speed is interpolated
    keep2, steering2, target2 = keys_labels(frame[::2], controls[::2], speed[::2], horizon=5)
    assert steering2[5] == 1 and target2[0] == pytest.approx(np.interp(5, frame[::2], speed[::2]))
    with pytest.raises(ValueError, match="increase"):
        keys_labels(frame[::-1], controls, speed)


def start_game(redis_url: str, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RRP_")} | {"PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "game.log", "w")  # noqa: SIM115 - the process owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "game", "--headless", "--port", "0", "--mode", "lockstep", "--driver", "pursuit",
         "--track", "oval", "--frame-size", "96x72", "--image-format", "png", "--redis", redis_url,
         "--session", SESSION, "--stream-maxlen", "100000"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=log, text=True, preexec_fn=die_with_parent)
    first = proc.stdout.readline()
    assert first, (tmp_path / "game.log").read_text()[-2000:]
    return proc, json.loads(first)["url"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A real redis-server with one game session: 750 frames on oval, a reset, 300 on hairpins."""
    from support import RedisServer

    tmp = tmp_path_factory.mktemp("keys-session")
    server = RedisServer(tmp)
    server.start()
    proc, url = start_game(server.url, tmp)
    try:
        with httpx.Client(base_url=url, timeout=60) as game:
            def drive(frames: int) -> None:  # 25 frames at a time, then wait for the recorder's queue (64) to empty
                for _ in range(frames // 25):
                    assert game.post("/v1/step", json={"keys": [], "steps": 25}).status_code == 200
                    poll(lambda: "rrp_recorder_queued 0.0" in game.get("/metrics").text, 30, "recorder queue empty")

            drive(OVAL_FRAMES)
            assert game.post("/v1/reset", json={"track": "hairpins"}).status_code == 200
            drive(HAIRPINS_FRAMES)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["event"] == "recorded" and summary["dropped"] == 0
    yield server, tmp
    server.stop()


@pytest.fixture(scope="module")
def dataset(recorded):
    server, tmp = recorded
    summary = export_sessions(server.url, [SESSION], tmp / "mine")
    return tmp / "mine", summary


def test_a_game_session_becomes_labelled_laps(recorded, dataset):
    server, _ = recorded
    path, summary = dataset
    client = redis.Redis.from_url(server.url)
    key = stream_key(SESSION)
    rows = [FrameRecord.from_fields(f, key) for _, f in client.xrange(key)]
    # the start frame of each reset, and every frame stepped
    assert summary["recorded"] == len(rows) == OVAL_FRAMES + HAIRPINS_FRAMES + 2
    manifest = read_manifest(path)
    assert manifest.run == SESSION and manifest.tracks == ["hairpins", "oval"]
    assert (manifest.width, manifest.height) == (96, 72)
    assert all(isinstance(e, GameEpisodeRecord) for e in manifest.episodes)
    # oval: lap 0, then the piece of lap 1 (less the last 10 frames); hairpins: lap 0 less its last 10
    assert [(e.track, e.game_episode, e.lap) for e in manifest.episodes] == [("oval", 0, 0), ("oval", 0, 1),
                                                                             ("hairpins", 1, 0)]
    assert manifest.episodes[0].first_frame <= 1 and manifest.episodes[2].last_frame == HAIRPINS_FRAMES - 10
    by_frame = {(r.track, r.frame): r for r in rows}
    frames = load([path])
    assert len(frames) == manifest.frames == summary["frames"] > 900
    for meta in manifest.episodes:
        with np.load(path / "episodes" / f"{meta.index:05d}.npz") as ep:
            first = meta.first_frame
            n = len(ep["speed"])
            for i in range(0, n, 7):
                f = first + i
                after = by_frame[(meta.track, f + 1)]  # every frame recorded: consecutive
                assert ep["steering"][i] == int(after.controls["left"]) - int(after.controls["right"])
                assert ep["target_speed"][i] == pytest.approx(max(0.0, by_frame[(meta.track, f + 10)].speed))
                assert ep["speed"][i] == by_frame[(meta.track, f)].speed
                assert list(ep["keys"][i]) == [by_frame[(meta.track, f)].controls[k] for k in KEYS]
    assert set(np.unique(frames.steering)) == {-1.0, 0.0, 1.0}
    assert frames.target_speed.max() > 15, "the driver got going"
    client.close()


def test_ls_lists_game_sessions_and_export_names_a_missing_one(recorded, capsys, tmp_path):
    server, _ = recorded
    assert main(["ls", "--redis", server.url]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [{"session": SESSION, "frames": OVAL_FRAMES + HAIRPINS_FRAMES + 2, "tracks": ["oval", "hairpins"],
                      "size": [96, 72], "format": "png"}]
    assert main(["export", "--redis", server.url, "--session", "nobody", "--out", str(tmp_path / "x")]) == 2
    assert "no game session 'nobody'" in capsys.readouterr().err


def test_a_pilot_trained_only_on_game_laps_drives(dataset, tmp_path):
    """Tiny (~1,000 frames of one driver, 3 epochs): it trains, exports, loads and drives a lap attempt.
    At that size its target speed follows the labels and it sets off from the line; its steering is
    about the mean of the keys (it does not hold the road: lapping takes more laps, see docs/pilot.md)."""
    from pilot.runtime import PilotModel

    path, _ = dataset
    env = {k: v for k, v in os.environ.items() if not k.startswith("RRP_")} | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "pilot.train", str(path), "--out", str(tmp_path / "m"),
                           "--epochs", "3", "--batch", "32", "--val-share", "0.34"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)  # stdout: the JSON line only
    assert result["out"] == str(tmp_path / "m")
    assert re.search(r"^epoch 3/3 ", proc.stderr, re.M), "a progress line per epoch when not on a terminal"
    card = json.loads((tmp_path / "m" / "model.json").read_text())
    assert card["data"]["tracks"] == ["hairpins", "oval"] and card["data"]["datasets"][0]["run"] == SESSION
    frames = load([path])
    p = PilotModel.load(tmp_path / "m").predict(frames.images, frames.speed)
    assert np.corrcoef(p.target_speed, frames.target_speed)[0, 1] > 0.5
    start = PilotModel.load(tmp_path / "m").predict(frames.images[:1], np.zeros(1))
    assert start.target_speed[0] > 5, "standing on the line, it wants to go"
    proc = subprocess.run([sys.executable, "-m", "pilot.drive", str(tmp_path / "m"), "--track", "oval",
                           "--max-frames", "250"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and re.match(r"oval: (unfinished at \d+%|lap [\d.]+ s)", lines[0]), proc.stdout


def test_show_writes_a_contact_sheet_histograms_and_an_augmentation_preview(dataset, tmp_path, capsys):
    from PIL import Image

    path, _ = dataset
    assert main(["show", str(path), "--out", str(tmp_path / "pics")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == read_manifest(path).frames and 0 < report["steering_held"] < 1
    sizes = {}
    for name in ("contact_sheet.png", "histograms.png", "augmentation.png"):
        file = tmp_path / "pics" / name
        assert str(file) in report["files"] and file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(file) as img:
            img.load()  # a whole, decodable picture
            sizes[name] = img.size
            pixels = np.asarray(img.convert("RGB"))
            assert pixels.std() > 20, f"{name} is (nearly) blank"
    assert sizes["contact_sheet.png"] == (6 * 96 * 3, 4 * 72 * 3)  # 24 frames, 6 a row, 3x
    assert sizes["histograms.png"] == (1000, 380)
    assert sizes["augmentation.png"] == (6 * 96 * 3, 4 * 72 * 3)  # 4 frames: the original and 5 draws
