"""The HTTP control API on a real uvicorn server on loopback (game loop without a renderer)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import numpy as np
import pytest
from support import BIG_CIRCLE, InProcessGame

from game import Race, bundled_tracks, generate_track, load_track
from game.controls import MAX_PENDING_PER_CLIENT
from game.recorder import FrameRecorder
from game.remote import RemoteGame


@pytest.fixture(scope="module")
def track():
    return generate_track(5)


@pytest.fixture
def lockstep(track):
    g = InProcessGame(track, "lockstep").start_loop()
    yield g
    g.close()


@pytest.fixture
def realtime(track):
    g = InProcessGame(track, "realtime").start_loop()
    yield g
    g.close()


def test_requests_during_startup_get_a_clean_503(track):
    g = InProcessGame(track, "realtime")  # HTTP up, game loop not started yet
    try:
        r = g.client.get("/healthz")
        assert r.status_code == 503 and r.json() == {"status": "starting"}
        r = g.client.get("/v1/state")
        assert r.status_code == 503 and "starting" in r.json()["detail"] and r.headers["retry-after"] == "1"
        r = g.client.post("/v1/controls", json={"keys": ["forward"]})
        assert r.status_code == 503
        g.start_loop()
        r = g.client.get("/healthz")
        assert r.status_code == 200 and r.json()["status"] == "ok"
        assert g.client.get("/v1/state").status_code == 200
    finally:
        g.close()


def test_lockstep_step_and_state(lockstep, track):
    c = lockstep.client
    r = c.post("/v1/step", json={"keys": {"forward": True}, "steps": 10})
    assert r.status_code == 200, r.text
    st = r.json()
    assert st["frame"] == 10 and st["steps_taken"] == 10 and st["speed"] == pytest.approx(10.0)
    assert len(st["rays"]) == 15 and st["controls"]["forward"] is True
    race = Race(track, 1, continuous=True)
    race.reset()
    for _ in range(10):
        obs = race.step([[True, False, False, False]])
    assert st["rays"] == [float(v) for v in obs.rays[0]]
    assert c.get("/v1/state").json()["frame"] == 10
    # nothing moves between requests in lock-step mode
    assert c.get("/v1/state").json()["frame"] == 10


def test_reset_and_track_change(lockstep):
    c = lockstep.client
    c.post("/v1/step", json={"keys": ["forward"], "steps": 5})
    r = c.post("/v1/reset")
    assert r.status_code == 200 and r.json()["frame"] == 0 and r.json()["reset_count"] == 1
    name = bundled_tracks()[0] if bundled_tracks() else None
    if name:
        r = c.post("/v1/reset", json={"track": name})
        assert r.status_code == 200 and r.json()["track"] == name
        assert r.json()["car"]["x"] == load_track(name).start[0]
    r = c.post("/v1/reset", json={"track": "no-such-track"})
    assert r.status_code == 422 and "no-such-track" in r.json()["detail"]
    r = c.post("/v1/reset", json={"track": "/etc/passwd"})
    assert r.status_code == 422
    r = c.post("/v1/reset", json={"max_frames": 20, "continuous": False})
    st = c.post("/v1/step", json={"keys": ["forward"], "steps": 50}).json()
    assert st["done"] and st["steps_taken"] == 20 and st["result"]["frames"] >= 0


def test_bad_input_gets_clear_4xx_and_the_game_keeps_running(lockstep):
    c = lockstep.client
    cases = [
        ("post", "/v1/step", {"keys": ["jump"]}, 422, "keys"),
        ("post", "/v1/step", {"keys": {"forward": True, "jump": True}}, 422, "jump"),
        ("post", "/v1/step", {"keys": [], "steps": -3}, 422, "steps"),
        ("post", "/v1/step", {"keys": [], "steps": 0}, 422, "greater than or equal to 1"),
        ("post", "/v1/step", {"keys": [], "steps": "many"}, 422, "steps"),
        ("post", "/v1/controls", {"keys": ["forward"], "frame": -1}, 422, "frame"),
        ("post", "/v1/controls", {"frame": 3}, 422, "keys: Field required"),
        ("post", "/v1/controls", {"keys": ["forward"], "colour": "red"}, 422, "colour"),
        ("post", "/v1/reset", {"track": 7}, 422, "track"),
        ("get", "/v1/controls/12345", None, 404, "unknown command"),
        ("get", "/v1/frame", None, 404, "without a renderer"),
    ]
    for method, path, body, status, text in cases:
        r = c.request(method.upper(), path, json=body)
        assert r.status_code == status, (path, body, r.text)
        assert text in r.json()["detail"], (path, body, r.json())
    r = c.post("/v1/step", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    r = c.post("/v1/step", content=b"x" * 200_000, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]
    # still alive and still correct
    st = c.post("/v1/step", json={"keys": ["forward"], "steps": 2}).json()
    assert st["frame"] == 2


def test_past_frame_is_refused_in_realtime(realtime):
    c = realtime.client
    # wait (by polling the game's own frame counter) until the game is past frame 3
    while c.get("/v1/state").json()["frame"] <= 3:
        time.sleep(0.01)
    r = c.post("/v1/controls", json={"keys": ["forward"], "frame": 1})
    assert r.status_code == 409
    assert "frame 1 is in the past" in r.json()["detail"]
    r = c.post("/v1/step", json={"keys": ["forward"]})
    assert r.status_code == 409 and "lock-step" in r.json()["detail"]


def test_realtime_command_applies_at_its_frame(realtime):
    c = realtime.client
    frame = c.get("/v1/state").json()["frame"]
    target = frame + 10
    cmd = c.post("/v1/controls", json={"keys": {"forward": True, "left": True}, "frame": target}).json()
    assert cmd["status"] == "pending" and cmd["frame"] == target
    while c.get(f"/v1/controls/{cmd['id']}").json()["status"] == "pending":
        time.sleep(0.01)
    done = c.get(f"/v1/controls/{cmd['id']}").json()
    assert done["applied_frame"] == target and done["status"] == "applied"
    assert c.get("/v1/state").json()["held_keys"]["left"] is True


def test_metrics_and_openapi(lockstep):
    c = lockstep.client
    c.post("/v1/step", json={"keys": ["forward"], "steps": 3})
    text = c.get("/metrics").text
    assert "# TYPE rrp_game_frame gauge" in text
    assert "rrp_game_frame 3" in text
    assert "rrp_game_frames_stepped_total 3" in text
    # every gauge the dashboards and benchmarks read, by its documented name
    for gauge in ("rrp_game_max_lag_seconds", "rrp_game_pending_commands", "rrp_game_ready"):
        assert f"# TYPE {gauge} gauge" in text, gauge
    helps = [line.split(" ", 3) for line in text.splitlines() if line.startswith("# HELP ")]
    assert all(len(h) == 4 and not h[3].startswith("rrp_") for h in helps), "every metric says what it means"
    spec = c.get("/openapi.json").json()
    assert {"/v1/state", "/v1/controls", "/v1/step", "/v1/reset", "/v1/frame", "/healthz", "/metrics"} <= set(
        spec["paths"])
    assert c.get("/v1/tracks").json()["keys"] == ["forward", "back", "left", "right"]


def test_concurrent_steps_are_serialised(lockstep):
    c = lockstep.client
    errors = []

    def worker():
        with httpx.Client(base_url=lockstep.url, timeout=30) as cc:
            for _ in range(20):
                r = cc.post("/v1/step", json={"keys": ["forward"], "steps": 1})
                if r.status_code != 200:
                    errors.append(r.text)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert c.get("/v1/state").json()["frame"] == 80
    assert np.isfinite(c.get("/v1/state").json()["speed"])


def test_healthz_tells_why_frames_are_not_recorded(track):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"redis://:secret@127.0.0.1:{s.getsockname()[1]}/0"
    recorder = FrameRecorder(dead, session="h1", retry_s=0.0).start()
    g = InProcessGame(track, "lockstep", recorder=recorder).start_loop()
    try:
        recorder.offer(0, np.zeros((8, 8, 3), np.uint8))
        assert recorder.flush()
        body = g.client.get("/healthz").json()
        assert body["status"] == "ok"  # the game plays on without its recorder
        assert body["recorder"]["connected"] is False and body["recorder"]["dropped"] >= 1
        assert "connect" in body["recorder"]["last_error"]
        assert "rrp_recorder_connected 0" in g.client.get("/metrics").text
    finally:
        g.close()
        recorder.close()


@pytest.mark.parametrize(("path", "raw", "field"), [
    ("/v1/reset", b'{"max_frames": NaN}', "max_frames"),
    ("/v1/controls", b'{"keys": ["forward"], "frame": Infinity}', "frame"),
    ("/v1/step", b'{"keys": [], "steps": -Infinity}', "steps"),
    ("/v1/reset", b'{"track_data": {"name": "n", "width": NaN, "points": [[0,0],[300,0],[300,300],[0,300]]}}',
     "width"),
    ("/v1/reset", b'{"track_data": {"name": "n", "width": 12, "points": [[0,0],[NaN,0],[300,300],[0,300]]}}',
     "points"),
])
def test_nan_and_infinity_are_a_clear_422(lockstep, path, raw, field):
    r = lockstep.client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert field in r.json()["detail"] and "finite" in r.json()["detail"]
    assert "NaN" not in r.text and "Infinity" not in r.text  # the input is not echoed


def chunked(total: int, piece: int = 8192):
    """A body streamed without Content-Length (chunked transfer encoding)."""
    sent = 0
    while sent < total:
        yield b" " * min(piece, total - sent)
        sent += piece


def test_streamed_body_over_the_limit_is_413(lockstep):
    r = lockstep.client.post("/v1/step", content=chunked(200_000), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]


def test_declared_big_body_is_refused_before_it_is_read(lockstep):
    """A client that declares 50 MB and sends only the headers gets its 413 at once."""
    with socket.create_connection(("127.0.0.1", lockstep.server.port), timeout=10) as s:
        s.sendall(b"POST /v1/step HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 50000000\r\n\r\n")
        reply = s.recv(4096).decode()
        assert reply.startswith("HTTP/1.1 413") and "close" in reply.lower()
        rest = s.recv(4096)  # the server closes instead of waiting for 50 MB
        while rest and b"exceeds the limit" in rest:
            rest = s.recv(4096)
        assert rest == b""


def test_a_slow_body_is_timed_out(track, monkeypatch):
    monkeypatch.setattr("game.api.BODY_TIMEOUT_S", 0.5)
    g = InProcessGame(track, "lockstep").start_loop()
    try:
        with socket.create_connection(("127.0.0.1", g.server.port), timeout=10) as s:
            s.sendall(b"POST /v1/step HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{")  # and then nothing
            assert s.recv(4096).decode().startswith("HTTP/1.1 408")
        assert g.client.post("/v1/step", json={"keys": [], "steps": 1}).status_code == 200
    finally:
        g.close()


def test_one_client_cannot_lock_the_others_out(realtime):
    far = realtime.client.get("/v1/state").json()["frame"] + 1000
    codes = [realtime.client.post("/v1/controls", json={"keys": ["left"], "frame": far}).status_code
             for _ in range(MAX_PENDING_PER_CLIENT + 5)]
    assert codes.count(200) == MAX_PENDING_PER_CLIENT and set(codes[MAX_PENDING_PER_CLIENT:]) == {429}
    # another client (another address: 127.0.0.2 is loopback too) still gets its commands in
    with httpx.Client(base_url=realtime.url, transport=httpx.HTTPTransport(local_address="127.0.0.2")) as other:
        r = other.post("/v1/controls", json={"keys": ["forward"]})
    assert r.status_code == 200, r.text


def test_commands_are_bounded_in_how_far_ahead_they_go(realtime):
    now = realtime.client.get("/v1/state").json()["frame"]
    r = realtime.client.post("/v1/controls", json={"keys": ["left"], "frame": now + 25 * 3600})
    assert r.status_code == 422 and "too far ahead" in r.json()["detail"]


def test_bearer_token_guards_the_api(track):
    g = InProcessGame(track, "lockstep", token="s3cret").start_loop()
    try:
        with httpx.Client(base_url=g.url) as c:
            assert c.get("/healthz").status_code == 200  # probes need no token
            r = c.post("/v1/step", json={"keys": [], "steps": 1})
            assert r.status_code == 401 and "bearer token" in r.json()["detail"]
            assert c.get("/v1/state", headers={"Authorization": "Bearer wrong"}).status_code == 401
            r = c.post("/v1/step", json={"keys": [], "steps": 1}, headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == 200 and r.json()["frame"] == 1
        assert RemoteGame(g.url, token="s3cret").state()["frame"] == 1
    finally:
        g.close()


def test_unknown_track_lists_the_tracks_once(lockstep):
    detail = lockstep.client.post("/v1/reset", json={"track": "nowhere"}).json()["detail"]
    assert detail.count("circuit") == 1, detail


def test_an_inline_track_too_big_to_precompute_is_a_422(lockstep):
    r = lockstep.client.post("/v1/reset", json={"track_data": BIG_CIRCLE})
    assert r.status_code == 422 and "grid cells" in r.json()["detail"], r.text


def test_slow_headers_are_timed_out_and_keep_alive_still_works(track):
    g = InProcessGame(track, "lockstep", header_timeout_s=0.5).start_loop()
    try:
        with socket.create_connection(("127.0.0.1", g.server.port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            reply = s.recv(4096)
            assert reply.startswith(b"HTTP/1.1 408"), reply
            assert s.recv(4096) == b""  # closed
        with socket.create_connection(("127.0.0.1", g.server.port), timeout=10) as s:
            for _ in range(2):  # complete requests on one connection are not cut short
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert s.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        g.close()


def test_forwarded_for_from_loopback_does_not_make_new_clients(realtime):
    """Without a configured proxy, X-Forwarded-For is ignored: a local client naming a new address in every
    request is still one client, refused past its own limit."""
    far = realtime.client.get("/v1/state").json()["frame"] + 1000
    codes = [realtime.client.post("/v1/controls", json={"keys": ["back"], "frame": far},
                                  headers={"X-Forwarded-For": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}"}
                                  ).status_code
             for i in range(MAX_PENDING_PER_CLIENT + 5)]
    assert codes.count(200) == MAX_PENDING_PER_CLIENT and set(codes[MAX_PENDING_PER_CLIENT:]) == {429}


def test_forwarded_for_is_believed_from_the_configured_proxy(track):
    g = InProcessGame(track, "realtime", forwarded_allow_ips="127.0.0.1").start_loop()
    try:
        far = g.client.get("/v1/state").json()["frame"] + 1000
        codes = {g.client.post("/v1/controls", json={"keys": ["back"], "frame": far},
                               headers={"X-Forwarded-For": f"10.0.{i // 256}.{i % 256}"}).status_code
                 for i in range(MAX_PENDING_PER_CLIENT + 5)}
        assert codes == {200}  # the proxy's clients each have their own limit
    finally:
        g.close()
