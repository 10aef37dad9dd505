"""The windowed game on a real X server (Xvfb), driven with real key presses (xdotool)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def _start_xvfb() -> tuple[subprocess.Popen, str]:
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(w)
    with os.fdopen(r) as fh:
        number = fh.readline().strip()
    assert number, "Xvfb did not report a display"
    return proc, f":{number}"


def _until(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_keyboard_drives_the_car_in_a_window(tmp_path):
    xvfb, display = _start_xvfb()
    env = dict(os.environ, DISPLAY=display, PYTHONPATH=str(ROOT))
    env.pop("RRP_REDIS", None)
    game = subprocess.Popen([sys.executable, "-m", "game", "--port", "0", "--track", "oval"], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        info = None
        for line in game.stdout:
            if line.startswith("{"):
                info = json.loads(line)
                break
        assert info and info["render"] == "window"
        c = httpx.Client(base_url=info["url"], timeout=10)
        xenv = dict(os.environ, DISPLAY=display)
        wid = _until(lambda: subprocess.run(["xdotool", "search", "--name", "RallyRoboPilot"], env=xenv,
                                            capture_output=True, text=True).stdout.split(), "the game window")[0]
        subprocess.run(["xdotool", "windowfocus", "--sync", wid], env=xenv, check=True, timeout=30)
        subprocess.run(["xdotool", "keydown", "w"], env=xenv, check=True, timeout=30)
        st = _until(lambda: (s := c.get("/v1/state").json())["speed"] > 5 and s, "the car to speed up")
        assert st["controls"]["forward"] is True
        subprocess.run(["xdotool", "keydown", "a"], env=xenv, check=True, timeout=30)
        st = _until(lambda: (s := c.get("/v1/state").json())["car"]["heading"] > 0.3 and s, "a left turn")
        subprocess.run(["xdotool", "keyup", "a", "keyup", "w"], env=xenv, check=True, timeout=30)
        _until(lambda: not any(c.get("/v1/state").json()["controls"].values()), "the keys to be released")
        frame = c.get("/v1/frame")
        assert frame.status_code == 200 and frame.content[:8] == b"\x89PNG\r\n\x1a\n"
        c.close()
    finally:
        game.terminate()
        try:
            game.wait(20)
        except subprocess.TimeoutExpired:
            game.kill()
        xvfb.terminate()
        xvfb.wait(10)
    assert game.returncode == 0
