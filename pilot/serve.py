"""``python -m pilot.serve --model PATH``: the vision pilot over HTTP (FastAPI on uvicorn).

One frame or a batch in, steering, target speed and the four keys out, from the exported model on
onnxruntime (``pilot.runtime.PilotModel``; never the training framework, never a pickle). Every
answer names the ``model_version`` that produced it.

Two request forms, because a car sends one frame at a time and a data pipeline sends batches:

- ``Content-Type: image/png`` or ``image/jpeg``, the encoded image as the body and the measured speed
  as ``?speed=`` (``curl --data-binary @frame.png``), as image-classification servers take it;
- ``application/json`` ``{"frames": [{"image": "<base64 PNG/JPEG>", "speed": 12.5}, ...]}``.

Images must have the model's input size (``GET /v1/model``): a frame of another size is refused
with 422 rather than resized, because resampling here would feed the net pixels its training data
never had and hide a camera set up wrongly. Bodies are limited before they are read (413 from the
declared ``Content-Length``, or as soon as a chunked upload crosses the limit), batches too (413).

Hot reload: the model file (and its card) are polled; a new version is loaded in the background and
swapped in between requests (a request in flight finishes on the model it started with, so none is
dropped). A change is loaded once it has stayed the same for one poll, so a file still being copied
is not picked up half-written; publishing a new folder and swapping a symlink to it is atomic.
``POST /v1/reload`` loads at once. A file that does not load leaves the old model serving;
``/v1/model`` and the reload answer say why.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from pilot.runtime import CARD_FILE, MODEL_FILE, PilotModel, keys_from

log = logging.getLogger("pilot.serve")

DEFAULT_PORT = 8300
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}

Speed = Annotated[
    float,
    Field(ge=-50.0, le=50.0, allow_inf_nan=False, description="measured speed of the car, m/s (reverse < 0)"),
]


@dataclass(frozen=True)
class Settings:
    """Everything the service needs; built from flags and ``RRP_*`` variables by ``main``."""

    model: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: frames in one request
    max_batch: int = 64
    #: request bodies over this are refused (413) before they are read
    max_body_bytes: int = 8 * 1024 * 1024
    #: seconds to receive a body; a slower upload is cut with 408 (it would hold an in-flight slot)
    body_timeout_s: float = 30.0
    #: seconds to receive a request's headers (408 after; uvicorn alone waits forever)
    header_timeout_s: float = 10.0
    #: predict requests in progress at once (reading, decoding, inferring); beyond it: 503 at once, since
    #: an answer that waited in a queue is stale for a car that needs it now
    max_inflight: int = 16
    #: bearer token required on ``POST /v1/reload`` (``None``: open)
    token: str | None = None
    #: seconds between looks at the model file for a new version (0: only ``POST /v1/reload``)
    watch_interval_s: float = 2.0

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_inflight < 1 or self.max_body_bytes < 1024 or self.watch_interval_s < 0:
            raise ValueError("max_batch and max_inflight must be >= 1, max_body_bytes >= 1024, watch_interval >= 0")
        if not (self.body_timeout_s > 0 and self.header_timeout_s > 0):
            raise ValueError("body_timeout and header_timeout must be > 0")


# --- the contract ---------------------------------------------------------------------------------


class Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="PNG or JPEG bytes, base64, of the model's input size (GET /v1/model)")
    speed: Speed


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frames: list[Frame] = Field(min_length=1, description="one frame or a batch, answered in this order")


class Keys(BaseModel):
    forward: bool
    back: bool
    left: bool
    right: bool


class FramePrediction(BaseModel):
    steering: float = Field(description="-1..1, positive steers left")
    target_speed: float = Field(description="m/s the model wants to drive at")
    keys: Keys = Field(description="the game's four keys: steering with a dead band, pedals from the speeds")


class PredictResponse(BaseModel):
    model_version: str
    predictions: list[FramePrediction]


class ModelInfo(BaseModel):
    model_version: str | None = Field(description="the version serving now (None before a model loaded)")
    input: dict[str, int] | None = Field(description="{width, height} every image must have")
    card: dict[str, Any] | None = Field(description="the model card (model.json) of the serving model")
    last_error: str | None = Field(description="why the latest file at the model path was not loaded")


class ReloadResponse(BaseModel):
    model_version: str
    reloaded: bool


class ErrorResponse(BaseModel):
    detail: str
    errors: list[dict[str, str]]
    model_version: str | None = None


class ApiError(Exception):
    def __init__(self, status: int, field: str, message: str, reason: str) -> None:
        super().__init__(message)
        self.status, self.field, self.message, self.reason = status, field, message, reason


def _error(status: int, errors: Sequence[tuple[str, str]], version: str | None, headers=None) -> JSONResponse:
    detail = "; ".join(f"{f}: {m}" if f else m for f, m in errors)
    body = {"detail": detail, "errors": [{"field": f, "message": m} for f, m in errors], "model_version": version}
    return JSONResponse(body, status, headers=headers)


def _field(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# --- the model and its reloads --------------------------------------------------------------------


def _model_file(path: Path) -> Path:
    return path / MODEL_FILE if path.is_dir() else path


class ModelSlot:
    """The serving model, swapped whole when a new file at the path loads (never half-updated)."""

    def __init__(self, path: Path, metrics: Metrics) -> None:
        self.path = path
        self.metrics = metrics
        self.model: PilotModel | None = None
        self.last_error: str | None = None
        self._loaded: tuple | None = None  # signature of the files the serving model came from
        self._failed: tuple | None = None  # signature of files that did not load (not retried)
        self._pending: tuple | None = None  # a change seen once, loaded when seen again unchanged
        self._lock = asyncio.Lock()

    def signature(self) -> tuple:
        """Where the model file really is (symlinks resolved) and both files' stat; (path, None) while
        either file is missing."""
        onnx = Path(os.path.realpath(_model_file(self.path)))
        try:
            a, b = onnx.stat(), (onnx.parent / CARD_FILE).stat()
        except OSError:
            return (str(onnx), None)
        return (str(onnx), a.st_ino, a.st_size, a.st_mtime_ns, b.st_ino, b.st_size, b.st_mtime_ns)

    async def load(self) -> str | None:
        """Load whatever is at the path now; the old model stays unless the new one loads. Error or None."""
        async with self._lock:
            signature = self.signature()
            try:
                model = await run_in_threadpool(PilotModel.load, signature[0])
            except Exception as exc:  # any broken file: keep serving the old model
                self._failed, self.last_error = signature, f"{type(exc).__name__}: {exc}"
                self.metrics.reloads.labels("failed").inc()
                log.error("model at %s not loaded (%s); serving %s", self.path, self.last_error,
                          self.model.version if self.model else "nothing")
                return self.last_error
            old, self.model = self.model, model
            self._loaded, self._failed, self.last_error = signature, None, None
            self.metrics.reloads.labels("loaded").inc()
            self.metrics.model_info.clear()
            self.metrics.model_info.labels(model.version).set(1)
            log.info("serving model %s from %s (was %s)", model.version, signature[0], old.version if old else "none")
            return None

    async def watch(self, interval_s: float) -> None:
        """Poll the files; load a change once it has been seen twice in a row (a finished copy)."""
        while True:
            await asyncio.sleep(interval_s)
            signature = self.signature()
            if signature in (self._loaded, self._failed) or signature[1] is None:
                self._pending = None
            elif signature == self._pending:
                self._pending = None
                await self.load()
            else:
                self._pending = signature


# --- metrics --------------------------------------------------------------------------------------


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "rrp_pilot_predict_seconds", "Time to answer POST /v1/predict (decoding, inference, encoding)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
            registry=self.registry,
        )
        self.predictions = Counter("rrp_pilot_predictions", "Frames answered", registry=self.registry)
        self.errors = Counter("rrp_pilot_errors", "Refused requests by reason", ["reason"], registry=self.registry)
        self.reloads = Counter("rrp_pilot_reloads", "Model loads by result", ["result"], registry=self.registry)
        self.model_info = Gauge("rrp_pilot_model_info", "1 for the serving model version", ["version"],
                                registry=self.registry)
        self.inflight = Gauge("rrp_pilot_inflight_requests", "Predict requests in progress", registry=self.registry)


# --- decoding -------------------------------------------------------------------------------------


def decode_image(data: bytes, size: tuple[int, int], field: str) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 (H, W, 3) RGB; the size is read from the header and checked before decoding."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=tuple(IMAGE_TYPES.values())) as image:
            if image.size != size:
                raise ApiError(422, field, f"{image.size[0]}x{image.size[1]} image, this model takes "
                               f"{size[0]}x{size[1]} (GET /v1/model)", "wrong_size")
            return np.asarray(image.convert("RGB"))
    except ApiError:
        raise
    except Exception as exc:  # PIL raises several kinds (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise ApiError(422, field, f"not a decodable PNG or JPEG image ({type(exc).__name__})", "bad_image") from None


def _frames_from_json(body: bytes) -> list[tuple[bytes, float]]:
    try:
        request = PredictRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_input=False):
            if err["type"] == "json_invalid":
                errors.append(("body", f"not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}"))
            else:
                errors.append((_field(err["loc"]), err["msg"]))
        raise _Invalid(errors) from None
    frames = []
    for i, frame in enumerate(request.frames):
        try:
            frames.append((base64.b64decode(frame.image, validate=True), frame.speed))
        except binascii.Error:
            raise ApiError(422, f"frames[{i}].image", "not valid base64", "bad_image") from None
    return frames


class _Invalid(Exception):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors


_SPEED = TypeAdapter(Speed)


def _frame_from_raw(body: bytes, speed: str | None) -> list[tuple[bytes, float]]:
    if speed is None:
        raise _Invalid([("speed", "query parameter required with an image body (?speed=M/S)")])
    try:
        return [(body, _SPEED.validate_strings(speed))]
    except ValidationError as exc:
        raise _Invalid([("speed", exc.errors(include_input=False)[0]["msg"])]) from None


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 from its declared length before a byte is read, or once it crosses the limit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length", "not an integer", "invalid")
        if int(declared) > limit:
            raise ApiError(413, "body", f"request body of {declared} bytes exceeds the limit of {limit} bytes",
                           "too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body", f"request body exceeds the limit of {limit} bytes", "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _inline(schema: dict) -> dict:
    """A pydantic JSON schema with its ``$defs`` inlined (for the OpenAPI request body)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items()}
        return [walk(v) for v in node] if isinstance(node, list) else node

    return walk(schema)


# --- the app --------------------------------------------------------------------------------------


def create_app(settings: Settings) -> FastAPI:
    """The pilot service; the model loads (and the watcher starts) with the app's lifespan."""
    metrics = Metrics()
    slot = ModelSlot(settings.model, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if await slot.load() is not None:
            log.warning("not ready until a valid model is at %s (%s)", settings.model, slot.last_error)
        watcher = asyncio.create_task(slot.watch(settings.watch_interval_s)) if settings.watch_interval_s else None
        try:
            yield
        finally:
            if watcher:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    app = FastAPI(title="RallyRoboPilot vision pilot", version="1",
                  description="Steering, target speed and keys from camera frames.", lifespan=lifespan)
    app.state.slot = slot
    app.state.metrics = metrics

    inflight = [0]  # predict requests in progress (the event loop is the only writer)

    def refuse(status: int, errors: list[tuple[str, str]], reason: str, headers=None) -> JSONResponse:
        metrics.errors.labels(reason).inc()
        return _error(status, errors, slot.model.version if slot.model else None, headers)

    body_doc = {"content": {
        "application/json": {"schema": _inline(PredictRequest.model_json_schema())},
        **{t: {"schema": {"type": "string", "format": "binary"}} for t in IMAGE_TYPES},
    }}

    @app.post(
        "/v1/predict",
        response_model=PredictResponse,
        responses={code: {"model": ErrorResponse} for code in (400, 408, 413, 415, 422, 503)},
        openapi_extra={"requestBody": body_doc},
        summary="steering, target speed and keys for one frame or a batch",
    )
    async def predict(request: Request, speed: str | None = None) -> Response:
        model = slot.model  # this request finishes on this model, whatever is reloaded meanwhile
        if model is None:
            return refuse(503, [("", f"no model loaded from {settings.model}: {slot.last_error}")], "not_ready",
                          {"Retry-After": "5"})
        if inflight[0] >= settings.max_inflight:
            return refuse(503, [("", f"{settings.max_inflight} requests in progress, the limit; retry")],
                          "overloaded", {"Retry-After": "1"})
        inflight[0] += 1
        metrics.inflight.inc()
        try:
            return await answer(request, model, speed)
        finally:
            inflight[0] -= 1
            metrics.inflight.dec()

    async def answer(request: Request, model: PilotModel, speed: str | None) -> Response:
        start = time.perf_counter()
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if media not in IMAGE_TYPES and media != "application/json":
                raise ApiError(415, "Content-Type", f"{media or 'none'}: send application/json or "
                               f"{' / '.join(IMAGE_TYPES)}", "unsupported_media_type")
            try:
                body = await asyncio.wait_for(_read_body(request, settings.max_body_bytes), settings.body_timeout_s)
            except TimeoutError:
                raise ApiError(408, "body", f"request body not received within {settings.body_timeout_s:g} s",
                               "body_timeout") from None
            frames = _frames_from_json(body) if media == "application/json" else _frame_from_raw(body, speed)
            if len(frames) > settings.max_batch:
                raise ApiError(413, "frames", f"batch of {len(frames)} exceeds the limit of {settings.max_batch}",
                               "batch_too_large")
            named = media == "application/json"
            # one frame costs well under a millisecond: answered on the event loop, sparing two thread
            # hand-offs; batches go to a worker thread so probes and other requests keep answering
            payload = (_answer(model, frames, named) if len(frames) == 1
                       else await run_in_threadpool(_answer, model, frames, named))
        except ApiError as exc:
            return refuse(exc.status, [(exc.field, exc.message)], exc.reason)
        except _Invalid as exc:
            return refuse(422, exc.errors, "invalid")
        metrics.predictions.inc(len(frames))
        metrics.latency.observe(time.perf_counter() - start)
        return Response(payload, media_type="application/json")

    @app.get("/v1/model", response_model=ModelInfo, summary="the serving model's version, input size and card")
    async def model_info() -> ModelInfo:
        model = slot.model
        return ModelInfo(
            model_version=model.version if model else None,
            input={"width": model.input_size[0], "height": model.input_size[1]} if model else None,
            card=model.card.to_doc() if model else None,
            last_error=slot.last_error,
        )

    @app.post("/v1/reload", response_model=ReloadResponse, responses={401: {"model": ErrorResponse},
                                                                        422: {"model": ErrorResponse}},
              summary="load the file at the model path now (the old model keeps serving if it does not load)")
    async def reload(request: Request) -> Response:
        if settings.token and request.headers.get("authorization") != f"Bearer {settings.token}":
            return refuse(401, [("Authorization", "missing or wrong bearer token")], "unauthorized",
                          {"WWW-Authenticate": "Bearer"})
        before = slot.model.version if slot.model else None
        error = await slot.load()
        if error is not None:
            kept = f"; still serving {before}" if before else ""
            return refuse(422, [("model", f"{settings.model} not loaded: {error}{kept}")], "reload_failed")
        return JSONResponse({"model_version": slot.model.version, "reloaded": True})

    @app.get("/healthz", summary="the process answers")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", summary="200 once a model is loaded, else 503 with the reason")
    async def readyz() -> Response:
        if slot.model is None:
            return JSONResponse({"ready": False, "reason": slot.last_error}, 503)
        return JSONResponse({"ready": True, "model_version": slot.model.version})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _answer(model: PilotModel, frames: list[tuple[bytes, float]], named: bool) -> bytes:
    """Decode, predict and encode one request (batches on a worker thread: onnxruntime releases the GIL)."""
    images = np.stack([
        decode_image(data, model.input_size, f"frames[{i}].image" if named else "body")
        for i, (data, _) in enumerate(frames)
    ])
    speeds = np.array([s for _, s in frames], dtype=np.float32)
    prediction = model.predict(images, speeds)
    keys = keys_from(prediction.steering, prediction.target_speed, speeds)
    return orjson.dumps({
        "model_version": model.version,
        "predictions": [
            {"steering": float(s), "target_speed": float(t),
             "keys": {"forward": bool(k[0]), "back": bool(k[1]), "left": bool(k[2]), "right": bool(k[3])}}
            for s, t, k in zip(prediction.steering, prediction.target_speed, keys, strict=True)
        ],
    })


# --- command line ---------------------------------------------------------------------------------


def _env(name: str, kind: type, default: Any) -> Any:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return kind(value)
    except ValueError:
        raise SystemExit(f"python -m pilot.serve: {name} must be {kind.__name__}, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pilot.serve", description="Serve a vision pilot model over HTTP")
    p.add_argument("--model", default=_env("RRP_MODEL", str, None),
                   help="model.onnx or the folder holding it and model.json (RRP_MODEL)")
    p.add_argument("--host", default=_env("RRP_HOST", str, "127.0.0.1"), help="bind address (RRP_HOST)")
    p.add_argument("--port", type=int, default=_env("RRP_PORT", int, DEFAULT_PORT), help="port (RRP_PORT)")
    p.add_argument("--max-batch", type=int, default=_env("RRP_MAX_BATCH", int, 64),
                   help="frames per request (RRP_MAX_BATCH)")
    p.add_argument("--max-inflight", type=int, default=_env("RRP_MAX_INFLIGHT", int, 16),
                   help="predict requests in progress at once, beyond it 503 (RRP_MAX_INFLIGHT)")
    p.add_argument("--max-body-bytes", type=int, default=_env("RRP_MAX_BODY_BYTES", int, 8 * 1024 * 1024),
                   help="request body limit (RRP_MAX_BODY_BYTES)")
    p.add_argument("--body-timeout", type=float, default=30.0, help="seconds to receive a request body (408 after)")
    p.add_argument("--header-timeout", type=float, default=10.0, help="seconds to receive request headers (408 after)")
    p.add_argument("--watch-interval", type=float, default=2.0,
                   help="seconds between looks at the model file for a new version (0: only POST /v1/reload)")
    p.add_argument("--token-env", default="RRP_TOKEN",
                   help="environment variable holding the bearer token for POST /v1/reload (unset: open)")
    p.add_argument("--log-level", default=os.environ.get("RRP_LOG_LEVEL", "info"))
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    if not args.model:
        raise ValueError("--model (or RRP_MODEL) is required")
    return Settings(model=Path(args.model), host=args.host, port=args.port, max_batch=args.max_batch,
                    max_inflight=args.max_inflight, max_body_bytes=args.max_body_bytes,
                    body_timeout_s=args.body_timeout, header_timeout_s=args.header_timeout,
                    token=os.environ.get(args.token_env) or None, watch_interval_s=args.watch_interval)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"python -m pilot.serve: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from game.slow_clients import header_deadline_protocol  # game's lazy __init__: no simulation imported

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level,
                access_log=False, proxy_headers=False, timeout_keep_alive=75, timeout_graceful_shutdown=10,
                http=header_deadline_protocol(settings.header_timeout_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
