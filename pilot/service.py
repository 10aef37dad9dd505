"""The pilot service's routes (FastAPI): predict, model, reload, probes, metrics; the rest is servicekit.

Request path of ``POST /v1/predict``: servicekit's admission guards (declared size 413, the whole body at a
minimum rate within ``body_timeout_s``, else 408), then a capacity slot (503 at once beyond
``max_inflight``: an answer that waited in a queue is stale for a car that needs it now), then decoding
and inference. The body is complete before the slot is taken, so uploads that never end hold no slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from pilot.runtime import PilotModel, keys_from
from pilot.settings import Settings
from pilot.slot import Metrics, ModelSlot
from pilot.wire import (
    IMAGE_TYPES,
    ApiError,
    ErrorResponse,
    ModelInfo,
    PredictRequest,
    PredictResponse,
    ReloadResponse,
    _frame_from_raw,
    _frames_from_json,
    _inline,
    _Invalid,
    decode_image,
)
from servicekit.errors import ServiceError, error_response
from servicekit.guards import Admission, BodyPolicy, ByteBudget, Capacity

log = logging.getLogger("pilot.serve")


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

    capacity = Capacity(settings.max_inflight, lambda n: f"{n} requests in progress, the limit; retry")
    budget = ByteBudget(settings.max_inflight * settings.max_body_bytes)

    def version() -> dict:
        return {"model_version": slot.model.version if slot.model else None}

    def refuse(status: int, errors: list[tuple[str, str]], reason: str, headers=None) -> JSONResponse:
        metrics.errors.labels(reason).inc()
        return error_response(status, errors, headers, **version())

    def refused(exc: ServiceError) -> dict:
        metrics.errors.labels(exc.reason).inc()
        return version()

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
        try:
            with capacity.slot():  # the body is in already (Admission): a slow upload never holds a slot
                metrics.inflight.inc()
                try:
                    return await answer(request, model, speed)
                finally:
                    metrics.inflight.dec()
        except ServiceError as exc:
            return refuse(exc.status, exc.errors, exc.reason, exc.headers)

    async def answer(request: Request, model: PilotModel, speed: str | None) -> Response:
        start = time.perf_counter()
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            if media not in IMAGE_TYPES and media != "application/json":
                raise ApiError(415, "Content-Type", f"{media or 'none'}: send application/json or "
                               f"{' / '.join(IMAGE_TYPES)}", "unsupported_media_type")
            body = await request.body()
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
            input={"width": model.input_size[0], "height": model.input_size[1],
                   "mode": model.card.input.mode} if model else None,
            card=model.card.to_doc() if model else None,
            last_error=slot.last_error,
        )

    @app.post("/v1/reload", response_model=ReloadResponse, responses={401: {"model": ErrorResponse},
                                                                        422: {"model": ErrorResponse}},
              summary="load the file at the model path now (the old model keeps serving if it does not load)")
    async def reload(request: Request) -> Response:
        # the bearer token was checked (in constant time) by Admission, in front of every route
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
            return JSONResponse({"ready": False, "reason": slot.last_error, "receiving": budget.receiving}, 503)
        return JSONResponse({"ready": True, "model_version": slot.model.version, "receiving": budget.receiving,
                             "inflight": capacity.inflight})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # Before any route: the token on POST /v1/reload, the declared size, the whole body at a minimum rate
    # within body_timeout_s (servicekit.guards).
    app.add_middleware(Admission, policy=BodyPolicy(settings.max_body_bytes, settings.body_timeout_s,
                                                    settings.min_body_rate),
                       budget=budget, token=settings.token, on_refuse=refused,
                       protected=lambda method, path: path == "/v1/reload")
    return app


def _answer(model: PilotModel, frames: list[tuple[bytes, float]], named: bool) -> bytes:
    """Decode, predict and encode one request (batches on a worker thread: onnxruntime releases the GIL)."""
    images = np.stack([
        decode_image(data, model.input_size, f"frames[{i}].image" if named else "body", model.card.input.mode)
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
