"""The game service: one simulation, paced at 25 FPS of wall time or stepped on request.

``GameRunner`` owns the simulation's environment of one car (``game.env.RallyRoboPilotVectorEnv``,
``continuous=True`` while playing) and is the only thing that advances it. It
is engine-agnostic: a renderer (``game.scene.UrsinaRenderer``, imported lazily by ``game.__main__``)
only draws the state the runner hands it, and the frame recorder is a hook called after each frame.

Modes
- ``realtime``: frame k is due at ``t0 + k/25`` on the runner's clock (no drift: every due time is
  computed from t0, never by adding up intervals). Controls sent over HTTP apply at the next frame
  or at exactly the frame they name.
- ``lockstep``: the game waits; ``advance(keys, n)`` (``POST /v1/step``) advances n frames and returns the state.

Frame numbering: ``frame`` is the number of steps taken since the last reset. Controls "for frame k"
are the keys used by the step that advances the game from frame k to frame k+1; they stay held until
changed. A command for a frame below the current one is in the past and is refused.

Threads: the loop (``run``) runs on one thread (the main thread when Ursina renders); HTTP handlers
call ``submit_controls``/``snapshot`` directly (under a lock) and hand anything that changes the
simulation or needs the renderer to the loop thread with ``call``.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

import numpy as np

from game import FPS, KEYS, Track
from game.controls import NO_KEYS, ControlSchedule, GameError, Keys, keys_tuple
from game.env import RallyRoboPilotVectorEnv
from game.rollout import PolicyFor
from game.state import CarView, GameState, LapView

CATCH_UP_CAPTURE = 5  # when more frames than this are overdue, skip capturing the ones in between


class NotReady(GameError):
    status = 503


class Clock(Protocol):
    def __call__(self) -> float: ...


class Pacer:
    """Drift-free frame pacing: frame ``base + k`` is due at ``t0 + k / fps``."""

    def __init__(self, fps: float = FPS, clock: Clock = time.monotonic):
        self.fps = fps
        self.clock = clock
        self.t0 = clock()
        self.base = 0

    def start(self, frame: int = 0, now: float | None = None) -> None:
        self.t0 = self.clock() if now is None else now
        self.base = frame

    def due(self, frame: int) -> float:
        """Wall-clock time at which ``frame`` (frames completed since reset) is due."""
        return self.t0 + (frame - self.base) / self.fps

    def target(self, now: float | None = None) -> int:
        """How many frames should have been completed at ``now``."""
        now = self.clock() if now is None else now
        return self.base + max(0, math.floor((now - self.t0) * self.fps + 1e-6))


class Renderer(Protocol):
    def set_track(self, track: Track) -> None: ...
    def draw(self, car: CarView, lap: LapView | None = None, frame: int = 0) -> None: ...
    def capture(self) -> np.ndarray | None: ...
    def keyboard(self) -> tuple[bool, bool, bool, bool] | None: ...
    def close(self) -> None: ...


class GameRunner:
    """Owns the race, the control schedule, the pacing and the per-frame hooks."""

    def __init__(
        self,
        track: Track,
        mode: str = "realtime",
        *,
        clock: Clock = time.monotonic,
        renderer: Renderer | None = None,
        recorder: Any = None,
        driver: PolicyFor | None = None,
    ):
        if mode not in ("realtime", "lockstep"):
            raise ValueError(f"mode must be 'realtime' or 'lockstep', not {mode!r}")
        self.mode = mode
        self.clock = clock
        self.pacer = Pacer(FPS, clock)
        self.renderer = renderer
        self.recorder = recorder
        self.driver = driver          # builds the policy at the wheel of each race; None: keyboard and HTTP
        self.lock = threading.RLock()
        self.ready = threading.Event()
        self.stopped = threading.Event()
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future]] = queue.Queue()
        self.controls = ControlSchedule()
        self._keys: Keys = NO_KEYS
        self._image: np.ndarray | None = None
        self._image_frame = -1
        self._dirty = True
        self.resets = 0
        self.counters = {
            "frames_stepped": 0, "frames_rendered": 0, "frames_late": 0, "commands": 0,
            "commands_applied": 0, "commands_refused": 0, "laps": 0,
        }
        self.max_lag_s = 0.0
        self._new_race(track, None, True, None)

    # -- race ------------------------------------------------------------------------------------
    def _new_race(self, track: Track, max_frames: int | None, continuous: bool, stall_frames: int | None,
                  start_offset: tuple[float, float] = (0.0, 0.0)) -> None:
        self.track = track
        self.env = RallyRoboPilotVectorEnv(1, track=track, max_frames=max_frames, stall_frames=stall_frames,
                                           continuous=continuous)
        self.race = self.env.race
        self.obs, _ = self.env.reset(options={"start_offset": start_offset})
        self.policy = self.driver(self.env) if self.driver is not None else None
        self.continuous = continuous
        self.max_frames = max_frames
        self._last_laps = 0
        self._last_controls = NO_KEYS
        self._dirty = True
        self._keys = NO_KEYS

    @property
    def frame(self) -> int:
        return int(self.race.frame)

    def reset(self, track: Track | None = None, max_frames: int | None = None,
              continuous: bool = True, stall_frames: int | None = None,
              start_offset: tuple[float, float] = (0.0, 0.0)) -> dict[str, Any]:
        """Back to the base state on the start line (loop thread only; HTTP uses ``call``).

        ``max_frames``/``stall_frames``/``continuous=False`` make it a single evaluated lap, exactly
        as ``EvaluationTask`` runs it in-process; ``start_offset`` (metres to the left, radians) is the
        environment's option a perturbed task's start is moved by.
        """
        with self.lock:
            cancelled = self.controls.cancel_all()
            changed = track is not None and track is not self.track
            self._new_race(track or self.track, max_frames, continuous, stall_frames, start_offset)
            self.resets += 1
            self.pacer.start(0)
        if changed and self.renderer is not None:
            self.renderer.set_track(self.track)
        if changed and self.recorder is not None:
            self.recorder.note_track(self.track.name)
        self._render(capture=self.recorder is not None)
        state = self.snapshot()
        state["cancelled_commands"] = cancelled
        return state

    # -- controls ----------------------------------------------------------------------------------
    def submit_controls(self, keys: Any, frame: int | None = None, client: str = "local") -> dict[str, Any]:
        """Set the held keys from ``frame`` on (default: the next frame). Thread-safe, never blocks."""
        k = keys_tuple(keys)
        with self.lock:
            now = self.frame
            try:
                cmd = self.controls.submit(k, now if frame is None else frame, now, client)
            except GameError:
                self.counters["commands_refused"] += 1
                raise
            self.counters["commands"] += 1
            return cmd.to_dict()

    def command(self, cmd_id: int) -> dict[str, Any]:
        with self.lock:
            return self.controls.get(cmd_id).to_dict()

    # -- stepping ------------------------------------------------------------------------------------
    def step_frame(self, capture: bool = False) -> None:
        """Advance the simulation by exactly one frame (loop thread only)."""
        with self.lock:
            f = self.frame
            for cmd in self.controls.apply(f):
                self._keys = cmd.keys
                self.counters["commands_applied"] += 1
            keys = self._keys
            if self.policy is not None:
                controls = np.asarray(self.policy.act(self.obs), dtype=bool).reshape(1, 4)
                keys = tuple(bool(v) for v in controls[0])
            elif self.mode == "realtime" and self.renderer is not None:
                kb = self.renderer.keyboard()
                if kb is not None and any(kb):
                    keys = kb
            self.obs, *_ = self.env.step(np.array([keys], dtype=bool))
            self._last_controls = keys
            self.counters["frames_stepped"] += 1
            laps = int(self.race.lap.laps[0])
            if laps != self._last_laps:
                self.counters["laps"] += laps - self._last_laps
                self._last_laps = laps
            self._dirty = True
        if capture:
            self._render(capture=True)

    def _render(self, capture: bool) -> None:
        """Draw the current state; capture and record the camera frame when asked."""
        if self.renderer is None:
            if capture and self.recorder is not None and self.recorder.wants(self.frame):
                self.recorder.count_missed(1)   # nothing to capture without a renderer
            return
        state = self.state()
        self.renderer.draw(state.car, state.lap, state.frame)
        self.counters["frames_rendered"] += 1
        self._dirty = False
        if not capture and self.recorder is None:
            return
        image = self.renderer.capture()
        if image is None:
            return
        self._image = image
        self._image_frame = state.frame
        if self.recorder is not None and self.recorder.wants(state.frame):
            self.recorder.offer(state.frame, image, state.sensing(), dict(zip(KEYS, state.controls, strict=True)))

    def tick(self, now: float | None = None) -> int:
        """Realtime: complete every frame that is due at ``now``; returns how many were stepped."""
        now = self.clock() if now is None else now
        target = self.pacer.target(now)
        n = 0
        while self.frame < target and not bool(self.race.all_done):
            overdue = target - self.frame
            last = overdue == 1
            wanted = self.recorder is not None and self.recorder.wants(self.frame + 1)
            if wanted and not last and overdue > CATCH_UP_CAPTURE:
                self.step_frame(capture=False)
                self.recorder.count_missed(1)
            else:
                # draw every frame in a window; headless, draw only frames to record (the rest on demand)
                self.step_frame(capture=wanted or (last and self._interactive))
            lag = now - self.pacer.due(self.frame)
            self.max_lag_s = max(self.max_lag_s, lag)
            n += 1
        if n > 1:
            self.counters["frames_late"] += n - 1
        return n

    def advance(self, keys: Any, n: int = 1) -> dict[str, Any]:
        """Lock-step (``POST /v1/step``): hold ``keys`` for ``n`` frames (or until the race is done); returns
        the state. Named ``advance``: ``step`` is the Gymnasium envs' ``step(action)``, of another shape."""
        k = keys_tuple(keys)
        if n < 1:
            raise GameError(f"steps must be >= 1, got {n}", 422)
        taken = 0
        with self.lock:
            self._keys = k
        for _ in range(n):
            if bool(self.race.all_done):
                break
            record = self.recorder is not None and self.recorder.wants(self.frame + 1)
            self.step_frame(capture=record)
            taken += 1
        state = self.snapshot()
        state["steps_taken"] = taken
        return state

    # -- views ---------------------------------------------------------------------------------------
    def state(self) -> GameState:
        """The game at the current frame, as one consistent frozen value."""
        with self.lock:
            race = self.race
            done = bool(race.done[0])
            return GameState(
                frame=self.frame,
                clock_s=float(self.clock()),
                mode=self.mode,
                track=self.track.name,
                reset_count=self.resets,
                car=CarView.of(race),
                speed=float(self.obs[0, -1]),
                rays=tuple(float(v) for v in self.obs[0, :-1]),
                controls=self._last_controls,
                held_keys=self._keys,
                lap=LapView.of(race),
                done=done,
                result=race.results()[0] if done else None,
                pending_commands=self.controls.pending,
            )

    def snapshot(self) -> dict[str, Any]:
        """The game state as plain JSON-able Python values (the API's ``/v1/state``)."""
        return self.state().to_json()

    def latest_image(self) -> tuple[np.ndarray | None, int]:
        with self.lock:
            return self._image, self._image_frame

    def metrics(self) -> dict[str, float]:
        with self.lock:
            m: dict[str, float] = {f"rrp_game_{k}_total": float(v) for k, v in self.counters.items()}
            m["rrp_game_frame"] = float(self.frame)
            m["rrp_game_resets_total"] = float(self.resets)
            m["rrp_game_ready"] = float(self.ready.is_set())
            m["rrp_game_max_lag_seconds"] = float(self.max_lag_s)
            m["rrp_game_pending_commands"] = float(self.controls.pending)
        if self.recorder is not None:
            s = self.recorder.snapshot()
            for k in ("offered", "written", "dropped", "dropped_full", "dropped_redis", "reconnects"):
                m[f"rrp_recorder_frames_{k}_total" if k != "reconnects" else "rrp_recorder_reconnects_total"] = (
                    float(s[k]))
            m["rrp_recorder_connected"] = float(s["connected"])
            m["rrp_recorder_queued"] = float(s["queued"])
        return m

    # -- loop ------------------------------------------------------------------------------------------
    def call(self, fn: Callable[[], Any], timeout: float = 60.0) -> Any:
        """Run ``fn`` on the loop thread and return its result (from any other thread)."""
        if not self.ready.is_set():
            raise NotReady("the game is starting; try again in a moment")
        if self.stopped.is_set():
            raise NotReady("the game is shutting down")
        fut: Future = Future()
        self._jobs.put((fn, fut))
        return fut.result(timeout)

    def run_jobs(self, timeout: float = 0.0) -> int:
        """Run queued jobs; wait up to ``timeout`` seconds for the first one. Returns jobs run."""
        n = 0
        try:
            job = self._jobs.get(timeout=timeout) if timeout > 0 else self._jobs.get_nowait()
        except queue.Empty:
            return 0
        while True:
            fn, fut = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:  # noqa: BLE001 - handed back to the caller
                    fut.set_exception(exc)
            n += 1
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return n

    def run(self, stop: threading.Event, idle_s: float = 1.0 / FPS,
            on_ready: Callable[[], None] | None = None) -> None:
        """The game loop. Realtime: paced ticks; lock-step: serve jobs, redraw when idle."""
        self._render(capture=True)  # warm-up (first draw compiles shaders) before the clock starts
        with self.lock:
            self.pacer.start(self.frame)
        self.ready.set()
        if on_ready is not None:
            on_ready()
        try:
            while not stop.is_set():
                if self.mode == "realtime":
                    self.tick()
                    wait = self.pacer.due(self.frame + 1) - self.clock()
                    if bool(self.race.all_done):
                        wait = idle_s
                    self.run_jobs(max(wait, 0.0))
                else:
                    if self.run_jobs(idle_s) == 0 and self._interactive:
                        self._render(capture=self._dirty)   # refresh the picture, keep the window alive
        finally:
            self.stopped.set()
            while True:  # nobody may wait forever on a job after the loop ended
                try:
                    _, fut = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if fut.set_running_or_notify_cancel():
                    fut.set_exception(NotReady("the game is shutting down"))

    @property
    def _interactive(self) -> bool:
        """A renderer someone watches (a window): draw every frame. Headless renderers draw on demand."""
        return self.renderer is not None and bool(getattr(self.renderer, "interactive", False))

    def render_now(self) -> tuple[np.ndarray | None, int]:
        """Loop thread: make sure the latest image shows the current frame."""
        if self.renderer is not None and (self._dirty or self._image_frame != self.frame):
            self._render(capture=True)
        return self.latest_image()
