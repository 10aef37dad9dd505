"""The evaluator service: an HTTP front (FastAPI) over a pool of simulation worker processes.

``POST /v1/evaluations`` takes a declared :class:`evaluator.EvaluationTask` (track, frame limit, controller
spec) and a batch of genomes and answers their lap results in order. Nothing from the network is ever
unpickled or executed: the body is JSON validated by pydantic models (:mod:`evaluator.wire`), a track is
either the name of a bundled track or inline track data (a path on the evaluator's file system is
refused), and every genome is checked against the controller spec.

The request path, in order: servicekit's admission guards in front of every route (bearer token, 401;
declared body size, 413 with nothing read; the body read up to its limit, 413 as soon as a chunked upload
crosses it, at a minimum rate after a short grace and within ``body_timeout_s``, else 408), then the
route's capacity slot (503 + ``Retry-After`` beyond ``capacity`` requests taken at once, so callers spread
work elsewhere instead of queueing without limit), then validation and one job on a worker process
(:mod:`evaluator.pool`, :mod:`evaluator.worker`). The body is complete before the slot is taken, and a
slow upload is cut for its own slowness: it holds no slot and no count that other requests need
(:mod:`servicekit.guards` says why a rate and not a count).

What this readable path costs: FastAPI's routing and these dependencies take about 0.17 ms more server
CPU per request than a hand-written ASGI handler doing the same checks (0.33 against 0.17 ms, measured
side by side). A request carries at least one lap (10 ms or more of a worker's time), and the GA packs
a chunk's laps into one request, so throughput stays where it was (``benchmarks/bench_http_map.py``,
``benchmarks/soak.py``); dependencies that skip the service lookup or merge steps saved 0.02 ms at best.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from evaluator.controllers import CONTROLLER_KINDS
from evaluator.pool import WorkerDied, WorkerFailed, WorkerFrozen, WorkerPool
from evaluator.prometheus import CONTENT_TYPE, ServiceMetrics
from evaluator.settings import Settings
from evaluator.wire import (
    ERROR_REASONS,
    ApiError,
    ErrorResponse,
    EvaluationRequest,
    EvaluationResponse,
    InfoResponse,
    bundled_names,
    validation_errors,
)
from servicekit.errors import ServiceError, error_response
from servicekit.guards import Admission, BodyPolicy, ByteBudget, Capacity

log = logging.getLogger("evaluator.service")

READS_PER_SLOT = 4
"""Bodies of the largest size that may be received at once per capacity slot: a bound on the memory that
uploads take (capacity x 4 x max_body_bytes), counted in bytes received, so slow uploads barely touch it."""

API_PREFIX = "/v1"
EVALUATIONS_PATH = f"{API_PREFIX}/evaluations"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("rallyrobopilot")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "0+unknown"


class ServiceState:
    """The worker pool, the in-flight count and the metrics of one service instance."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.capacity = Capacity(settings.capacity, lambda n: f"evaluator busy: {n} evaluations in flight "
                                 f"(capacity {settings.capacity}); retry after {settings.retry_after_s} s",
                                 settings.retry_after_s)
        # bytes of bodies being received at once (a memory bound; slow uploads hold none of the slots above)
        self.budget = ByteBudget(settings.capacity * READS_PER_SLOT * settings.max_body_bytes)
        self.ready = False
        self.pool = WorkerPool(settings.workers, settings.stall_timeout_s)
        self.metrics = ServiceMetrics()
        self.metrics.watch(workers=settings.workers, capacity=settings.capacity, busy=lambda: self.pool.running,
                           inflight=lambda: self.capacity.inflight, frozen=lambda: self.pool.frozen)
        self._start_task: asyncio.Task | None = None

    async def start(self) -> None:
        """Start the workers in the background; the service is ready once every worker has warmed up."""
        self._start_task = asyncio.create_task(self._start())

    async def _start(self) -> None:
        try:
            await self.pool.start()
        except Exception:
            log.exception("starting the worker processes failed")
            raise
        self.ready = True
        log.info("evaluator ready: %d workers, capacity %d", self.settings.workers, self.settings.capacity)

    async def stop(self) -> None:
        self.ready = False
        if self._start_task is not None:
            self._start_task.cancel()
        await self.pool.stop()

    def retry_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.settings.retry_after_s)}

    async def evaluate(self, task_json: str, genomes: list[list[float]], races: Sequence[int]) -> list[dict]:
        if not self.ready:
            raise ApiError(503, None, "evaluator is starting or stopping", self.retry_headers())
        try:
            return await self.pool.submit(task_json, genomes, races)
        except WorkerFrozen as exc:
            self.metrics.errors.labels("worker_frozen").inc()
            raise ApiError(503, None, str(exc), self.retry_headers()) from None
        except WorkerDied:
            self.metrics.errors.labels("worker_died").inc()
            raise ApiError(503, None, "the worker process died; retry", self.retry_headers()) from None


# --------------------------------------------------------------------------------------------------
# The request path of POST /v1/evaluations, one dependency per step (all ``async``: FastAPI would run
# plain functions in its thread pool, a thread hand-off per step of every request)
# --------------------------------------------------------------------------------------------------


async def service(request: Request) -> ServiceState:
    return request.app.state.service


Service = Annotated[ServiceState, Depends(service)]


async def capacity_slot(state: Service) -> AsyncIterator[None]:
    """503 + ``Retry-After`` when ``capacity`` requests are taken; else hold a slot until the answer is sent."""
    with state.capacity.slot():
        yield


async def run_evaluation(state: ServiceState, request: EvaluationRequest) -> Response:
    """Check the request against this evaluator's limits, run it on a worker, answer."""
    settings = state.settings
    task = request.task
    if task.max_frames > settings.max_frames:
        raise ApiError(
            422, "task.max_frames", f"{task.max_frames} exceeds this evaluator's limit of {settings.max_frames}"
        )
    if len(request.genomes) > settings.max_batch:
        raise ApiError(413, "genomes", f"batch of {len(request.genomes)} exceeds the limit of {settings.max_batch}")
    start = time.perf_counter()
    try:
        races = request.races or [len(request.genomes)]
        results = await state.evaluate(task.model_dump_json(), request.genomes, races)
    except WorkerFailed as exc:
        if exc.kind == "TrackError":
            raise ApiError(422, "task.track", f"invalid track: {exc}") from None
        log.error("evaluation failed: %s: %s", exc.kind, exc)
        raise ApiError(500, None, f"evaluation failed: {exc.kind}: {exc}") from None
    elapsed = time.perf_counter() - start
    state.metrics.latency.observe(elapsed)
    state.metrics.evaluations.inc()
    state.metrics.laps.inc(len(results))
    payload = {"results": results, "evaluator": settings.evaluator_id, "elapsed_s": elapsed}
    return Response(orjson.dumps(payload), media_type="application/json")


ERROR_RESPONSES: dict[int | str, dict] = {
    400: {"model": ErrorResponse, "description": "Content-Length is not a number"},
    408: {"model": ErrorResponse, "description": "the body did not arrive within body_timeout_s"},
    401: {"model": ErrorResponse, "description": "missing or wrong bearer token"},
    413: {"model": ErrorResponse, "description": "body or batch too large"},
    422: {"model": ErrorResponse, "description": "invalid task or genomes (message names the field)"},
    503: {"model": ErrorResponse, "description": "at capacity or starting; see Retry-After"},
}

evaluations_router = APIRouter(prefix=API_PREFIX)


@evaluations_router.post(
    "/evaluations",
    response_model=EvaluationResponse,
    responses=ERROR_RESPONSES,
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/EvaluationRequest"}}}}},
)
async def evaluations(
    request: Request, state: Service, _slot: Annotated[None, Depends(capacity_slot)]
) -> Response:
    """Drive one lap per genome of the declared task; results in request order."""
    body = await request.body()  # complete already: servicekit's Admission read it before any route ran
    try:
        request = EvaluationRequest.model_validate_json(body)  # JSON parsed and validated in one pass
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False)) from None
    return await run_evaluation(state, request)


# --------------------------------------------------------------------------------------------------
# Probes, info, metrics
# --------------------------------------------------------------------------------------------------

probes_router = APIRouter()


@probes_router.get("/healthz")
async def healthz(state: Service) -> dict:
    # The event loop answers; the workers' own health is in the numbers (a frozen worker is replaced
    # within stall_timeout_s, its request failed so the caller retries elsewhere).
    return {"status": "ok", "workers_ready": state.pool.ready_workers, "workers_replaced_frozen": state.pool.frozen}


@probes_router.get("/readyz", responses={503: {"description": "not ready"}})
async def readyz(state: Service) -> Response:
    ready = state.ready and state.pool.ready_workers > 0
    body = {"ready": ready, "inflight": state.capacity.inflight, "receiving": state.budget.receiving,
            "capacity": state.settings.capacity,
            "workers_ready": state.pool.ready_workers}
    return JSONResponse(body, 200 if ready else 503)


@probes_router.get(f"{API_PREFIX}/info", response_model=InfoResponse)
async def info(state: Service) -> InfoResponse:
    settings = state.settings
    return InfoResponse(
        version=_version(),
        evaluator=settings.evaluator_id,
        tracks=list(bundled_names()),
        controller_kinds=list(CONTROLLER_KINDS),
        capacity=settings.capacity,
        workers=settings.workers,
        max_batch=settings.max_batch,
        max_frames=settings.max_frames,
        max_body_bytes=settings.max_body_bytes,
        auth=settings.token is not None,
    )


@probes_router.get("/metrics")
async def metrics(state: Service) -> Response:
    return Response(state.metrics.text(), media_type=CONTENT_TYPE)


# --------------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------------


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the evaluator service; the worker pool starts with the app's lifespan."""
    settings = settings or Settings()
    state = ServiceState(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = FastAPI(
        title="RallyRoboPilot evaluator",
        version=_version(),
        description="Runs full laps of declared evaluation tasks for batches of genomes.",
        lifespan=lifespan,
    )
    app.state.service = state
    app.include_router(evaluations_router)
    app.include_router(probes_router)

    @app.exception_handler(ServiceError)
    async def _api_error(request: Request, exc: ServiceError):
        state.metrics.errors.labels(ERROR_REASONS.get(exc.status, "error")).inc()
        return error_response(exc.status, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        state.metrics.errors.labels("invalid").inc()
        return validation_errors(exc.errors())

    def openapi() -> dict:
        """FastAPI's document plus the request model: the route reads its body itself (after the
        token, size and capacity checks), so FastAPI does not see the model in its signature."""
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema = EvaluationRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(schema.pop("$defs", {}))
            schemas["EvaluationRequest"] = schema
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    def refused(exc: ServiceError) -> None:
        state.metrics.errors.labels(ERROR_REASONS.get(exc.status, "error")).inc()

    # Before any route: token on POST /v1/evaluations, declared size, the body at a minimum rate within
    # body_timeout_s (servicekit.guards); the route then takes a capacity slot for a complete body only.
    app.add_middleware(Admission, policy=BodyPolicy(settings.max_body_bytes, settings.body_timeout_s,
                                                    settings.min_body_rate),
                       budget=state.budget, token=settings.token,
                       protected=lambda method, path: path == EVALUATIONS_PATH, on_refuse=refused)
    return app
