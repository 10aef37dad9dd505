"""The windowed game on a real X server (Xvfb), driven with real key presses (xdotool)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from support import die_with_parent, poll

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WAIT = 60.0


def test_keyboard_drives_the_car_in_a_window(tmp_path, x_display):
    env = dict(os.environ, DISPLAY=x_display, PYTHONPATH=str(ROOT))
    env.pop("RRP_REDIS", None)
    game = subprocess.Popen([sys.executable, "-m", "game", "--port", "0", "--track", "oval"], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=die_with_parent)
    try:
        info = None
        for line in game.stdout:
            if line.startswith("{"):
                info = json.loads(line)
                break
        assert info and info["render"] == "window"
        c = httpx.Client(base_url=info["url"], timeout=10)
        xenv = dict(os.environ, DISPLAY=x_display)
        wid = poll(lambda: subprocess.run(["xdotool", "search", "--name", "RallyRoboPilot"], env=xenv,
                                          capture_output=True, text=True).stdout.split(), WAIT, "the game window")[0]
        subprocess.run(["xdotool", "windowfocus", "--sync", wid], env=xenv, check=True, timeout=30)
        subprocess.run(["xdotool", "keydown", "w"], env=xenv, check=True, timeout=30)
        st = poll(lambda: (s := c.get("/v1/state").json())["speed"] > 5 and s, WAIT, "the car to speed up")
        assert st["controls"]["forward"] is True
        subprocess.run(["xdotool", "keydown", "a"], env=xenv, check=True, timeout=30)
        st = poll(lambda: (s := c.get("/v1/state").json())["car"]["heading"] > 0.3 and s, WAIT, "a left turn")
        subprocess.run(["xdotool", "keyup", "a", "keyup", "w"], env=xenv, check=True, timeout=30)
        poll(lambda: not any(c.get("/v1/state").json()["controls"].values()), WAIT, "the keys to be released")
        frame = c.get("/v1/frame")
        assert frame.status_code == 200 and frame.content[:8] == b"\x89PNG\r\n\x1a\n"
        c.close()
    finally:
        game.terminate()
        try:
            game.wait(20)
        except subprocess.TimeoutExpired:
            game.kill()
    assert game.returncode == 0
