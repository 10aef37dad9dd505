"""The game loop's pacing and control scheduling, with an injected clock (no sleeps, no timing)."""

from __future__ import annotations

import numpy as np
import pytest

from game import DT, Race, generate_track
from game.app import FPS, GameRunner, Pacer
from game.controls import GameError, keys_tuple


class FakeClock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def track():
    return generate_track(3)


class FakeRecorder:
    def __init__(self, every=1):
        self.every = every
        self.frames = []
        self.missed = 0

    def wants(self, frame):
        return frame % self.every == 0

    def offer(self, frame, image, sensing, controls):
        self.frames.append((frame, image.copy(), dict(controls), sensing["speed"]))
        return True

    def count_missed(self, n=1):
        self.missed += n

    def snapshot(self):
        return {"offered": len(self.frames), "written": len(self.frames), "dropped": self.missed,
                "dropped_full": 0, "dropped_redis": 0, "reconnects": 0, "connected": True, "queued": 0}


class FakeRenderer:
    """Stands in for Ursina: 'renders' the frame index into a tiny image."""

    def __init__(self):
        self.drawn = []
        self.kb = None

    def set_track(self, track):
        self.track = track

    def draw(self, car, lap=None, frame=0):
        self.drawn.append(frame)

    def capture(self):
        return np.full((2, 2, 3), self.drawn[-1] % 256, np.uint8)

    def keyboard(self):
        return self.kb

    def close(self):
        pass


def test_pacer_has_no_drift():
    clock = FakeClock(5.0)
    p = Pacer(25, clock)
    p.start(0)
    assert p.target() == 0
    clock.t = 5.0 + 0.0399
    assert p.target() == 0
    clock.t = 5.04
    assert p.target() == 1
    # a million frames later, accumulated by adding 1/25 each time, still exact
    t = 5.0
    for _ in range(100_000):
        t += 1 / 25
    assert p.target(t) == 100_000
    assert p.due(100_000) == 5.0 + 100_000 / 25
    assert p.target(5.0 + 3600 - 1e-3) == 25 * 3600 - 1


def test_realtime_ticks_follow_the_clock(track):
    clock = FakeClock()
    g = GameRunner(track, "realtime", clock=clock)
    g.pacer.start(0)
    assert g.tick() == 0 and g.frame == 0
    clock.t += 0.5 * DT
    assert g.tick() == 0
    clock.t += 0.5 * DT
    assert g.tick() == 1 and g.frame == 1
    clock.t += 1.0  # a stall of one second: the game catches up, it does not slow down
    assert g.tick() == 25 and g.frame == 26
    assert g.counters["frames_late"] == 24
    # 60 s in 1/25 s steps of the injected clock: exactly 25 x elapsed frames
    start_t, start_f = clock.t, g.frame
    for _ in range(60 * FPS):
        clock.t += 1 / FPS
        g.tick()
    assert g.frame - start_f == round(25 * (clock.t - start_t))


def test_scheduled_controls_apply_exactly_at_their_frame(track):
    clock = FakeClock()
    g = GameRunner(track, "realtime", clock=clock)
    g.pacer.start(0)
    a = g.submit_controls({"forward": True}, frame=10)
    b = g.submit_controls(["forward", "left"], frame=20)
    c = g.submit_controls(["back"], frame=20)  # same frame: later command wins
    assert a["status"] == "pending" and a["frame"] == 10 and a["received_frame"] == 0
    seen = []
    for _ in range(30):
        clock.t += DT
        g.tick()
        seen.append(g.snapshot()["controls"])
    # seen[i] = keys used by the step from frame i to i+1
    assert all(not any(s.values()) for s in seen[:10])
    assert all(s == {"forward": True, "back": False, "left": False, "right": False} for s in seen[10:20])
    assert all(s == {"forward": False, "back": True, "left": False, "right": False} for s in seen[20:])
    assert g.command(a["id"])["applied_frame"] == 10
    assert g.command(b["id"])["applied_frame"] == 20
    assert g.command(c["id"])["status"] == "applied"
    # the race saw exactly these controls: replay them in a fresh race and compare bit for bit
    race = Race(track, 1, continuous=True)
    race.reset()
    for s in seen:
        obs = race.step(np.array([[s[k] for k in ("forward", "back", "left", "right")]]))
    st = g.snapshot()
    assert st["rays"] == [float(v) for v in obs.rays[0]]
    assert st["car"]["x"] == float(race.state.x[0])


def test_immediate_controls_apply_at_the_next_frame(track):
    clock = FakeClock()
    g = GameRunner(track, "realtime", clock=clock)
    g.pacer.start(0)
    clock.t += 5 * DT
    g.tick()
    cmd = g.submit_controls({"forward": True})
    assert cmd["frame"] == 5
    clock.t += DT
    g.tick()
    assert g.command(cmd["id"])["applied_frame"] == 5
    assert g.snapshot()["speed"] > 0


def test_past_and_bad_commands_are_refused(track):
    clock = FakeClock()
    g = GameRunner(track, "realtime", clock=clock)
    g.pacer.start(0)
    clock.t += 40 * DT
    g.tick()
    with pytest.raises(GameError, match="frame 12 is in the past: the game is at frame 40") as e:
        g.submit_controls({"forward": True}, frame=12)
    assert e.value.status == 409
    with pytest.raises(GameError, match="unknown key") as e:
        g.submit_controls({"jump": True})
    assert e.value.status == 422
    with pytest.raises(GameError, match="too far ahead"):
        g.submit_controls([], frame=10**9)
    with pytest.raises(GameError, match="steps must be >= 1"):
        g.advance([], 0)
    with pytest.raises(GameError, match="unknown command"):
        g.command(999)
    assert g.counters["commands_refused"] == 2


def test_keys_forms():
    assert keys_tuple({"left": True}) == (False, False, True, False)
    assert keys_tuple(["forward", "right"]) == (True, False, False, True)
    assert keys_tuple([1, 0, 0, 1]) == (True, False, False, True)
    assert keys_tuple(None) == (False,) * 4
    with pytest.raises(GameError):
        keys_tuple([1, 0])


def test_reset_cancels_pending_and_restarts_pacing(track):
    clock = FakeClock()
    g = GameRunner(track, "realtime", clock=clock)
    g.pacer.start(0)
    cmd = g.submit_controls(["forward"], frame=100)
    clock.t += 2.0
    g.tick()
    assert g.frame == 50
    state = g.reset()
    assert state["frame"] == 0 and state["cancelled_commands"] == 1 and state["reset_count"] == 1
    assert g.command(cmd["id"])["status"] == "cancelled"
    clock.t += DT
    assert g.tick() == 1 and g.frame == 1


def test_lockstep_matches_an_in_process_race(track):
    g = GameRunner(track, "lockstep", clock=FakeClock())
    race = Race(track, 1, continuous=True)
    race.reset()
    rng = np.random.default_rng(0)
    for _ in range(40):
        keys = rng.random(4) < np.array([0.8, 0.1, 0.3, 0.3])
        n = int(rng.integers(1, 5))
        st = g.advance([bool(k) for k in keys], n)
        for _ in range(n):
            obs = race.step(keys[None, :])
        assert st["steps_taken"] == n
        assert st["rays"] == [float(v) for v in obs.rays[0]]
        assert st["speed"] == float(obs.speed[0])
    assert st["frame"] == race.frame


def test_lockstep_handler_is_advance_not_a_second_step_shape():
    """``step`` is the Gymnasium envs' ``step(action)``; the lock-step handler (and its HTTP client) is
    ``advance(keys, n)``, so no object in the game answers ``step`` with another signature."""
    from game.remote import RemoteGame

    assert hasattr(GameRunner, "advance") and not hasattr(GameRunner, "step")
    assert hasattr(RemoteGame, "advance") and not hasattr(RemoteGame, "step")


def test_one_lap_race_stops_and_reports_result(track):
    g = GameRunner(track, "lockstep", clock=FakeClock())
    g.reset(None, max_frames=30, continuous=False)
    st = g.advance(["forward"], 100)
    assert st["steps_taken"] == 30 and st["done"] and st["result"]["frames"] >= 0
    assert g.advance(["forward"], 5)["steps_taken"] == 0


def test_recorder_hook_gets_every_frame_with_its_controls(track):
    clock = FakeClock()
    rec = FakeRecorder(every=2)
    ren = FakeRenderer()
    g = GameRunner(track, "realtime", clock=clock, renderer=ren, recorder=rec)
    g.pacer.start(0)
    g.submit_controls(["forward"], frame=3)
    for _ in range(10):
        clock.t += DT
        g.tick()
    assert [f for f, *_ in rec.frames] == [2, 4, 6, 8, 10]
    assert [int(img[0, 0, 0]) for _, img, *_ in rec.frames] == [2, 4, 6, 8, 10]  # image of that frame
    assert rec.frames[0][2]["forward"] is False and rec.frames[1][2]["forward"] is True
    # a long stall: frames far behind are stepped without capture and counted as missed
    clock.t += 1.0
    g.tick()
    assert g.frame == 35
    assert rec.missed > 0
    assert rec.missed + len(rec.frames) == 35 // 2


def test_keyboard_overrides_api_keys_in_realtime(track):
    clock = FakeClock()
    ren = FakeRenderer()
    g = GameRunner(track, "realtime", clock=clock, renderer=ren)
    g.pacer.start(0)
    ren.kb = (True, False, False, True)
    clock.t += DT
    g.tick()
    assert g.snapshot()["controls"] == {"forward": True, "back": False, "left": False, "right": True}


def test_jobs_run_on_the_loop_thread(track):
    import threading

    g = GameRunner(track, "lockstep", clock=FakeClock())
    with pytest.raises(GameError, match="starting"):
        g.call(lambda: 1)
    stop = threading.Event()
    t = threading.Thread(target=g.run, args=(stop,), daemon=True)
    t.start()
    g.ready.wait(10)
    assert g.call(lambda: threading.current_thread().name) == t.name
    with pytest.raises(ZeroDivisionError):
        g.call(lambda: 1 / 0)
    assert g.call(lambda: g.advance(["forward"], 3))["frame"] == 3
    stop.set()
    t.join(10)
    with pytest.raises(GameError, match="shutting down"):
        g.call(lambda: 1)


def test_front_end_modules_import_ursina_lazily():
    import subprocess
    import sys

    code = ("import sys, game, game.app, game.api, game.recorder, game.frames, game.remote; "
            "bad = [m for m in ('ursina', 'panda3d', 'direct') if m in sys.modules]; "
            "assert not bad, bad; import game.race; "
            "print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_headless_draws_on_demand_and_windows_draw_every_frame(track):
    clock = FakeClock()
    ren = FakeRenderer()
    g = GameRunner(track, "realtime", clock=clock, renderer=ren)
    g.pacer.start(0)
    for _ in range(10):
        clock.t += DT
        g.tick()
    assert ren.drawn == []  # nobody watches a headless game without a recorder
    image, frame = g.render_now()
    assert frame == 10 and ren.drawn == [10] and int(image[0, 0, 0]) == 10
    assert g.render_now()[1] == 10 and ren.drawn == [10]  # not redrawn while nothing changed
    ren.interactive = True
    for _ in range(3):
        clock.t += DT
        g.tick()
    assert ren.drawn == [10, 11, 12, 13]
