"""The real game process: headless Ursina rendering (EGL + Mesa), HTTP API, frames to a real Redis."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
from PIL import Image
from support import die_with_parent, free_port, write_best_json

from game.recorder import stream_key

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


class GameProcess:
    """``python -m game --headless --port 0 ...`` in a subprocess; reads its 'ready' line for the URL.
    ``command``: another command line that ends in the game's flags (``-m ga.replay RUN --watch --``)."""

    def __init__(self, *args: str, tmp_path: Path, command: tuple[str, ...] = ("-m", "game")):
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        env.pop("RRP_REDIS", None)
        self.log = open(tmp_path / "game.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, *command, "--headless", "--port", "0", *args],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=self.log, text=True, preexec_fn=die_with_parent,
        )
        first = self.proc.stdout.readline()  # stdout is machine-readable: Ursina's banners go to stderr
        if not first:
            raise RuntimeError(f"game did not start: {(tmp_path / 'game.log').read_text()[-2000:]}")
        self.info = json.loads(first)
        assert self.info["event"] == "ready"
        self.url = self.info["url"]
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def metrics(self) -> dict[str, float]:
        out = {}
        for line in self.client.get("/metrics").text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.split()
                out[name] = float(value)
        return out

    def wait_metric(self, name: str, above: float, timeout: float = 60.0) -> dict[str, float]:
        """Poll the game's own counters until ``name`` > ``above`` (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            m = self.metrics()
            if m.get(name, 0.0) > above:
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} stayed at {m.get(name)} (wanted > {above}); metrics: {m}")
            time.sleep(0.05)

    def stop(self) -> str:
        self.client.close()
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.log.close()
        return out


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def assert_real_picture(img: np.ndarray) -> None:
    assert img.shape == (240, 320, 3)
    assert img.std() > 20, "frame is (nearly) uniform"
    colours = {tuple(c) for c in img.reshape(-1, 3)[::7] // 16}
    assert len(colours) > 12, f"only {len(colours)} colour groups"
    top, bottom = img[:30].reshape(-1, 3).mean(0), img[-40:].reshape(-1, 3).mean(0)
    assert top[2] > top[0] + 40, f"no sky at the top: {top}"       # blue sky
    assert abs(bottom[0] - bottom[2]) < 40 and bottom.mean() < 160, f"no road at the bottom: {bottom}"
    # the red car sits in the lower middle of the chase view
    mid = img[130:220, 110:210].reshape(-1, 3).astype(int)
    assert ((mid[:, 0] > 150) & (mid[:, 1] < 80) & (mid[:, 2] < 80)).sum() > 200, "no red car in view"


def test_headless_game_renders_real_frames(tmp_path):
    game = GameProcess("--mode", "lockstep", "--track", "circuit", tmp_path=tmp_path)
    try:
        assert game.info["render"] == "headless"
        r = game.client.post("/v1/step", json={"keys": ["forward"], "steps": 40})
        assert r.status_code == 200 and r.json()["frame"] == 40
        r = game.client.get("/v1/frame")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.headers["x-frame"] == "40"
        (tmp_path / "frame.png").write_bytes(r.content)
        img = _decode(r.content)
        assert_real_picture(img)
        r = game.client.get("/v1/frame", params={"format": "jpeg"})
        assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
        assert_real_picture(_decode(r.content))
        # the picture follows the game: after driving on, the frame changes
        game.client.post("/v1/step", json={"keys": ["forward", "left"], "steps": 20})
        img2 = _decode(game.client.get("/v1/frame").content)
        assert np.abs(img2.astype(int) - img.astype(int)).mean() > 5
        # bad input is refused and the game keeps running
        assert game.client.get("/v1/frame", params={"format": "gif"}).status_code == 422
        assert game.client.post("/v1/reset", json={"track": "nowhere"}).status_code == 422
        assert game.client.post("/v1/reset", json={"track": "oval"}).json()["track"] == "oval"
        assert_real_picture(_decode(game.client.get("/v1/frame").content))
    finally:
        game.stop()
    assert game.proc.returncode == 0


def test_realtime_recording_survives_redis_restart(tmp_path, redis_server):
    game = GameProcess("--mode", "realtime", "--driver", "pursuit", "--redis", redis_server.url,
                       "--session", "rt1", "--record-every", "1", tmp_path=tmp_path)
    try:
        m = game.wait_metric("rrp_recorder_frames_written_total", 25)
        assert m["rrp_recorder_frames_dropped_redis_total"] == 0
        r = redis.Redis.from_url(redis_server.url)
        entries = r.xrevrange(stream_key("rt1"), count=1)
        f = entries[0][1]
        assert_real_picture(_decode(f[b"image"]))
        assert len(json.loads(f[b"rays"])) == 15 and json.loads(f[b"controls"])["forward"] in (True, False)
        r.close()

        redis_server.stop()
        frame_at_kill = game.metrics()["rrp_game_frame"]
        m = game.wait_metric("rrp_recorder_frames_dropped_redis_total", 25)
        assert m["rrp_recorder_connected"] == 0
        assert m["rrp_game_frame"] > frame_at_kill  # the game keeps running without Redis
        assert game.client.get("/healthz").status_code == 200

        redis_server.start()
        written = m["rrp_recorder_frames_written_total"]
        m = game.wait_metric("rrp_recorder_frames_written_total", written + 25)
        assert m["rrp_recorder_connected"] == 1 and m["rrp_recorder_reconnects_total"] == 1
        r = redis.Redis.from_url(redis_server.url)
        assert r.xlen(stream_key("rt1")) > 0
        r.close()
    finally:
        out = game.stop()
    summary = [json.loads(line) for line in out.splitlines() if line.startswith('{"event": "recorded"')]
    assert summary and summary[0]["session"] == "rt1" and summary[0]["dropped"] > 0


def test_startup_errors_are_clear(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "game", "--headless", "--track", "atlantis"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "atlantis" in r.stderr
    r = subprocess.run([sys.executable, "-m", "ga.replay", str(tmp_path / "none"), "--watch", "--", "--headless"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "no best.json" in r.stderr
    r = subprocess.run([sys.executable, "-m", "game", "--no-render"], cwd=tmp_path, env=dict(env, RRP_PORT="abc"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "RRP_PORT must be an integer, got 'abc'" in r.stderr


def test_replay_drives_the_evolved_controller(tmp_path):
    """ga.replay --watch: the game's own lap with the decoded controller equals the evaluator's lap."""
    from evaluator import ControllerSpec, EvaluationTask

    task = EvaluationTask(track="oval", max_frames=600, stall_frames=100, controller=ControllerSpec(kind="mlp"))
    genome = list(np.random.default_rng(3).normal(0, 0.3, task.controller.genome_length()))
    genome[-4], genome[-3] = 2.0, -2.0
    result = write_best_json(tmp_path, task, genome)
    watch = ("-m", "ga.replay", str(tmp_path), "--watch", "--")
    game = GameProcess("--mode", "lockstep", tmp_path=tmp_path, command=watch)
    try:
        assert game.info["track"] == "oval" and "replaying" in game.info["driver"]
        r = game.client.post("/v1/reset", json={"max_frames": task.max_frames, "stall_frames": task.stall_frames,
                                                "continuous": False})
        assert r.status_code == 200
        # the keys sent are ignored: the evolved controller drives
        st = game.client.post("/v1/step", json={"keys": ["back"], "steps": task.max_frames}).json()
        assert st["done"] and st["result"] == result.to_dict()
        assert result.distance_m > 10
        assert_real_picture(_decode(game.client.get("/v1/frame").content))
    finally:
        game.stop()


def test_requests_during_startup_do_not_hurt_the_game(tmp_path):
    """Hammer the API while the game process starts: answers are 503 'starting' or 200, never a crash."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("RRP_REDIS", None)
    proc = subprocess.Popen([sys.executable, "-m", "game", "--headless", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
    statuses = []
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    r = c.post("/v1/controls", json={"keys": ["forward"]})
                except httpx.TransportError:
                    continue  # not listening yet
                statuses.append(r.status_code)
                if r.status_code == 503:
                    assert "starting" in r.json()["detail"]
                if r.status_code == 200:
                    break
            assert proc.poll() is None, "the game died"
            assert statuses and statuses[-1] == 200 and set(statuses) <= {200, 503}
            assert c.get("/healthz").json()["status"] == "ok"
    finally:
        proc.terminate()
        proc.wait(20)


def test_export_after_reset_keeps_every_frame_and_names_each_track(tmp_path, redis_server, capsys):
    """Frame indices restart at 0 on /v1/reset: the export must neither overwrite images nor
    forget which track each episode drove."""
    from game import frames as frames_cli

    game = GameProcess("--mode", "lockstep", "--track", "circuit", "--redis", redis_server.url,
                       "--session", "twotracks", "--image-format", "png", tmp_path=tmp_path)
    try:
        game.client.post("/v1/step", json={"keys": ["forward"], "steps": 30})
        assert game.client.post("/v1/reset", json={"track": "oval"}).status_code == 200
        game.client.post("/v1/step", json={"keys": ["forward"], "steps": 20})
    finally:
        game.stop()
    out = tmp_path / "ds"
    assert frames_cli.main(["export", "--redis", redis_server.url, "--session", "twotracks", "--out", str(out)]) == 0
    with open(out / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    images = {p.name for p in (out / "images").iterdir()}
    assert len(rows) == len(images) == len({r["image"] for r in rows})  # one image per row, none overwritten
    assert [r["track"] for r in rows[:2]] == ["circuit", "circuit"] and rows[-1]["track"] == "oval"
    assert rows[0]["episode"] != rows[-1]["episode"]
    session = json.loads((out / "session.json").read_text())
    assert session["tracks"] == ["circuit", "oval"]
    assert [e["track"] for e in session["episodes"]] == ["circuit", "oval"]
    assert sum(e["frames"] for e in session["episodes"]) == len(rows)
    capsys.readouterr()
    assert frames_cli.main(["ls", "--redis", redis_server.url]) == 0
    assert "circuit,oval" in capsys.readouterr().out


def test_without_a_display_the_game_says_what_to_do_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = subprocess.run([sys.executable, "-m", "game", "--port", "0"], cwd=tmp_path,
                          env=dict(env, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--headless" in lines[0] and "xvfb-run" in lines[0], proc.stderr
