"""The game's HTTP control API (FastAPI), served by uvicorn in a background thread.

Endpoints (JSON unless noted; errors are the services' one format, ``{"detail": "...", "errors":
[{"field", "message"}]}``, with a 4xx/5xx status, see :mod:`servicekit.errors`):

- ``GET  /healthz``            200 ``{"status": "ok", ...}`` once the game loop runs, 503 while starting
- ``GET  /v1/state``           frame, car pose, speed, rays, controls, lap state
- ``POST /v1/controls``        ``{"keys": {...} | [...], "frame": k?}``: hold these keys from frame k
                               (default: the next frame); a frame in the past -> 409
- ``GET  /v1/controls/{id}``   when a command was scheduled and at which frame it was applied
- ``POST /v1/step``            lock-step mode: ``{"keys": ..., "steps": n}`` -> state after n frames
- ``POST /v1/reset``           ``{"track": name?, "max_frames": n?, "continuous": bool?}``
- ``GET  /v1/frame``           latest camera image (``?format=png|jpeg``)
- ``GET  /metrics``            Prometheus text format
- ``GET  /v1/tracks``          bundled track names

The server is up before the game loop, so a request during start-up gets a clean 503 with
``Retry-After`` instead of an error or a crash.
"""

from __future__ import annotations

import math
import threading
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from game import KEYS, TrackError, bundled_tracks, load_bundled_track
from game.app import GameRunner, NotReady
from game.controls import GameError
from game.prometheus import CONTENT_TYPE, exposition, registry_of
from game.state import CarView, LapView
from game.track_data import TrackData
from servicekit.errors import error_response
from servicekit.guards import Admission, BodyPolicy, ByteBudget
from servicekit.http import HEADER_TIMEOUT_S

MAX_BODY = 64 * 1024
BODY_TIMEOUT_S = 10.0
BODY_BUDGET = 256 * MAX_BODY  # bytes of request bodies being received at once, all clients together
MAX_STEPS = 25 * 600
Key = Literal["forward", "back", "left", "right"]


class KeyMap(BaseModel):
    model_config = ConfigDict(extra="forbid")
    forward: bool = False
    back: bool = False
    left: bool = False
    right: bool = False


KeysField = Annotated[
    KeyMap | list[Key],
    Field(description='held keys: {"forward": true, "left": true} or ["forward", "left"]'),
]


class ControlsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: KeysField
    frame: int | None = Field(None, ge=0, description="frame whose step first uses these keys; default next")


class StepIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keys: KeysField = Field(default_factory=list)
    steps: int = Field(1, ge=1, le=MAX_STEPS, description="frames to advance holding these keys")


class ResetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    track: str | None = Field(None, max_length=100, description="bundled track name (default: current track)")
    track_data: TrackData | None = Field(None, description="an inline track instead of a bundled name")
    max_frames: int | None = Field(None, ge=1, le=10_000_000, description="end the lap after this many frames")
    stall_frames: int | None = Field(None, ge=0, le=10_000_000, description="end the lap without progress")
    continuous: bool = Field(True, description="keep lapping after the line (false: one lap, as evaluated)")
    start_offset: tuple[float, float] = Field(
        (0.0, 0.0), description="[metres to the left, radians of heading]: where the car starts relative to the "
        "start line (a perturbed task's shifted start)")

    @field_validator("start_offset")
    @classmethod
    def _on_the_road(cls, value: tuple[float, float]) -> tuple[float, float]:
        side, turn = value
        if not (math.isfinite(side) and math.isfinite(turn)) or abs(side) > 10.0 or abs(turn) > math.pi / 2:
            raise ValueError("start_offset must be finite, within 10 m sideways and pi/2 rad of heading")
        return value


class CommandOut(BaseModel):
    id: int
    keys: dict[str, bool]
    frame: int
    received_frame: int
    applied_frame: int | None
    status: Literal["pending", "applied", "cancelled"]


class StateOut(BaseModel):
    frame: int
    time_s: float
    clock_s: float = Field(description="the game's monotonic clock when this state was read (seconds)")
    mode: str
    track: str
    reset_count: int
    car: CarView  # the frozen state's own types: one definition of what a car and a lap show
    speed: float
    rays: list[float]
    controls: dict[str, bool]
    held_keys: dict[str, bool]
    lap: LapView
    done: bool
    result: dict[str, Any] | None
    pending_commands: int
    steps_taken: int | None = None
    cancelled_commands: int | None = None


def _keys(keys: KeyMap | list[str]) -> Any:
    return keys.model_dump() if isinstance(keys, KeyMap) else list(keys)


def create_api(runner: GameRunner, *, allow_track_change: bool = True, token: str | None = None) -> FastAPI:
    app = FastAPI(
        title="RallyRoboPilot game",
        version="1",
        description="Drive the game: real-time controls at 25 FPS, lock-step stepping, camera frames.",
    )
    app.state.runner = runner

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        # Only where and what: the offending input is not echoed (it may be NaN or Infinity, which
        # JSON cannot carry, or simply large).
        errors = [(".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body", str(e.get("msg")))
                  for e in exc.errors()]
        return error_response(422, errors or [("body", "invalid request")])

    @app.exception_handler(GameError)
    async def _game_error(_: Request, exc: GameError):
        headers = {"Retry-After": "1"} if isinstance(exc, NotReady) else None
        return error_response(exc.status, [("", str(exc))], headers)

    def need_ready() -> None:
        if not runner.ready.is_set():
            raise NotReady("the game is starting; try again in a moment")
        if runner.stopped.is_set():
            raise NotReady("the game is shutting down")

    @app.get("/healthz")
    def healthz():
        if runner.stopped.is_set():
            return JSONResponse({"status": "stopped"}, status_code=503)
        if not runner.ready.is_set():
            return JSONResponse({"status": "starting"}, status_code=503, headers={"Retry-After": "1"})
        body = {"status": "ok", "mode": runner.mode, "frame": runner.frame, "track": runner.track.name}
        if runner.recorder is not None:  # recording trouble is reported, not fatal: the game plays on
            s = runner.recorder.snapshot()
            body["recorder"] = {k: s[k] for k in ("connected", "last_error", "written", "dropped", "session")}
            if not runner.recorder.running:  # the writer thread is gone: every frame would be dropped
                body["status"] = "recorder stopped"
                return JSONResponse(body, status_code=503)
        return body

    @app.get("/v1/state", response_model=StateOut)
    def state():
        need_ready()
        return runner.snapshot()

    @app.post("/v1/controls", response_model=CommandOut)
    def controls(body: ControlsIn, request: Request):
        need_ready()
        client = request.client.host if request.client else "unknown"
        return runner.submit_controls(_keys(body.keys), body.frame, client=client)

    @app.get("/v1/controls/{cmd_id}", response_model=CommandOut)
    def command(cmd_id: int):
        need_ready()
        return runner.command(cmd_id)

    @app.post("/v1/step", response_model=StateOut)
    def step(body: StepIn):
        need_ready()
        if runner.mode != "lockstep":
            raise GameError("POST /v1/step needs lock-step mode (start the game with --mode lockstep); "
                            "in real-time mode use POST /v1/controls", 409)
        keys = _keys(body.keys)
        return runner.call(lambda: runner.advance(keys, body.steps))

    @app.post("/v1/reset", response_model=StateOut)
    def reset(body: ResetIn | None = None):
        need_ready()
        body = body or ResetIn()
        track = None
        if body.track is not None and body.track_data is not None:
            raise GameError("give either track (a bundled name) or track_data (an inline track), not both", 422)
        if (body.track is not None or body.track_data is not None) and not allow_track_change:
            raise GameError("changing the track is disabled on this game", 403)
        if body.track is not None:
            try:
                track = load_bundled_track(body.track)
            except TrackError as exc:
                raise GameError(str(exc), 422) from None  # the message lists the bundled tracks
        elif body.track_data is not None:
            try:
                track = body.track_data.to_track(source="track_data")
            except TrackError as exc:
                raise GameError(f"invalid track_data: {exc}", 422) from None
        return runner.call(lambda: runner.reset(track, body.max_frames, body.continuous, body.stall_frames,
                                                body.start_offset))

    @app.get("/v1/frame", responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}})
    def frame(format: Literal["png", "jpeg"] = Query("png", description="image encoding")):  # noqa: A002
        need_ready()
        if runner.renderer is None:
            raise GameError("this game runs without a renderer (no camera frames)", 404)
        image, frame_index = runner.call(runner.render_now)
        if image is None:
            raise GameError("no camera frame rendered yet", 503)
        from game.recorder import encode_image

        return Response(encode_image(image, format), media_type=f"image/{format}",
                        headers={"X-Frame": str(frame_index)})

    @app.get("/v1/tracks")
    def tracks():
        return {"tracks": bundled_tracks(), "current": runner.track.name, "keys": list(KEYS)}

    metrics_registry = registry_of(runner.metrics)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics():
        return Response(exposition(metrics_registry), media_type=CONTENT_TYPE)

    # Token on /v1/ (probes, metrics and the docs stay open), then the body, whole, before any route runs: a
    # slow client never holds a worker thread or the game loop (servicekit.guards).
    return Admission(app, BodyPolicy(MAX_BODY, BODY_TIMEOUT_S), budget=ByteBudget(BODY_BUDGET),  # type: ignore
                     token=token, protected=lambda method, path: path.startswith("/v1/"))


class ApiServer:
    """uvicorn in a daemon thread; ``start`` returns once the socket listens."""

    def __init__(self, runner: GameRunner, host: str = "127.0.0.1", port: int = 8200, *,
                 header_timeout_s: float = HEADER_TIMEOUT_S, forwarded_allow_ips: str | None = None, **api_kwargs):
        import uvicorn

        from servicekit.launch import uvicorn_config

        self.app = create_api(runner, **api_kwargs)
        # X-Forwarded-For names the client (and so its command limit) only from forwarded_allow_ips
        self.config = uvicorn_config(self.app, host=host, port=port, forwarded_allow_ips=forwarded_allow_ips,
                                     header_timeout_s=header_timeout_s, lifespan="off", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="game-api", daemon=True)

    @property
    def port(self) -> int:
        servers = getattr(self.server, "servers", None) or []
        for srv in servers:
            for sock in srv.sockets:
                return sock.getsockname()[1]
        return self.config.port

    def start(self, timeout: float = 30.0) -> ApiServer:
        self.thread.start()
        import time

        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the HTTP API could not start on {self.config.host}:{self.config.port}")
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTP API did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
