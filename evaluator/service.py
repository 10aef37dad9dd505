"""The evaluator service: an HTTP front (FastAPI) over a pool of simulation worker processes.

``POST /v1/evaluations`` takes a declared :class:`evaluator.EvaluationTask` (track, frame limit, controller
spec) and a batch of genomes and answers their lap results in order.  Nothing from the network is ever
unpickled or executed: the body is JSON validated by pydantic models, a track is either the name of a
bundled track or inline track data (a path on the evaluator's file system is refused), and every genome is
checked against the controller spec.

The event loop never simulates: each request is one job for a worker process (the only pickles are
those the server exchanges with its own workers over private pipes).  At most ``capacity``
requests are taken at once (running or waiting for a worker); beyond that the answer is
``503`` with ``Retry-After`` so callers spread work elsewhere instead of queueing without limit.
Request bodies are limited before they are read (``413``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
import prometheus_client as prom
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, model_validator

from evaluator import ControllerSpec, EvaluationTask
from evaluator.settings import Settings
from game import DEFAULT_TRACK, bundled_tracks
from game.race import LapResult

log = logging.getLogger("evaluator.service")

API_PREFIX = "/v1"
EVALUATIONS_PATH = f"{API_PREFIX}/evaluations"
CONTROLLER_KINDS = ("mlp", "schedule")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("rallyrobopilot")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "0+unknown"


# --------------------------------------------------------------------------------------------------
# Wire models (the contract; they make the OpenAPI document)
# --------------------------------------------------------------------------------------------------


class EvaluationRequest(BaseModel):
    """A declared task and the genomes to drive with it."""

    model_config = ConfigDict(extra="forbid")

    task: EvaluationTask = Field(description="track (bundled name or inline track data), frame limit, controller spec")
    genomes: list[list[FiniteFloat]] = Field(
        min_length=1, description="flat float vectors, each of the controller spec's genome length"
    )
    races: list[int] | None = Field(
        default=None,
        description="sizes of the consecutive races the genomes are driven in (default: one race of them all); "
        "results are the same either way, cars never interact",
    )

    @model_validator(mode="before")
    @classmethod
    def _track_is_bundled_or_inline(cls, data: Any) -> Any:
        # Runs before the task is built: a string that is not a bundled track name (for example a path
        # on this machine) never reaches the track loader.
        if isinstance(data, dict):
            task = data.get("task")
            if isinstance(task, dict):
                track = task.get("track")
                if isinstance(track, str) and track not in _bundled():
                    raise ValueError(
                        f"task.track: unknown track {track!r}; over HTTP a track is a bundled name "
                        f"({', '.join(_bundled())}) or inline track data"
                    )
        return data

    @model_validator(mode="after")
    def _genome_lengths(self) -> EvaluationRequest:
        if self.races is not None and (any(n < 1 for n in self.races) or sum(self.races) != len(self.genomes)):
            raise ValueError(f"races: sizes must be >= 1 and add up to the {len(self.genomes)} genomes")
        expected = self.task.controller.genome_length()
        for i, genome in enumerate(self.genomes):
            if len(genome) != expected:
                raise ValueError(
                    f"genomes[{i}]: expected {expected} floats for controller "
                    f"{self.task.controller.describe()}, got {len(genome)}"
                )
        return self


class EvaluationResponse(BaseModel):
    results: list[LapResult] = Field(description="one per genome, in request order")
    evaluator: str = Field(description="which evaluator answered")
    elapsed_s: float = Field(description="seconds spent evaluating (excluding the network)")


class InfoResponse(BaseModel):
    version: str
    evaluator: str
    tracks: list[str]
    controller_kinds: list[str]
    capacity: int = Field(description="evaluation requests taken at once; beyond it 503")
    workers: int
    max_batch: int
    max_frames: int
    max_body_bytes: int
    auth: bool


class ErrorResponse(BaseModel):
    detail: str
    errors: list[dict[str, str]] = Field(default_factory=list)


_BUNDLED: tuple[str, ...] | None = None


def _bundled() -> tuple[str, ...]:
    global _BUNDLED
    if _BUNDLED is None:
        _BUNDLED = tuple(bundled_tracks())
    return _BUNDLED


# --------------------------------------------------------------------------------------------------
# Worker side (runs in the pool's processes)
# --------------------------------------------------------------------------------------------------

_TASKS: OrderedDict[str, tuple[EvaluationTask, Any]] = OrderedDict()
_TASK_CACHE_SIZE = 16
TASK_CACHE_BYTES = 256 * 1024 * 1024
"""What a worker's cached tracks may hold (``Track.memory_bytes``: their grids, up to 64 MB each); the
least recently used go first, the task in use always stays. With the 16-entry limit alone, 16 of the
largest accepted tracks would keep a gigabyte per worker."""


def _worker_task(task_json: str) -> tuple[EvaluationTask, Any]:
    """The task and its track, built once per worker and task."""
    entry = _TASKS.get(task_json)
    if entry is None:
        task = EvaluationTask.model_validate_json(task_json)
        # a track name from the network is looked up among the bundled tracks only, never as a path
        entry = (task, task.load_track_for_network())
        _TASKS[task_json] = entry
        while len(_TASKS) > 1 and (len(_TASKS) > _TASK_CACHE_SIZE or _cached_bytes() > TASK_CACHE_BYTES):
            _TASKS.popitem(last=False)
    else:
        _TASKS.move_to_end(task_json)
    return entry


def _cached_bytes() -> int:
    return sum(track.memory_bytes for _, track in _TASKS.values())


def worker_evaluate(task_json: str, genomes: Sequence[Sequence[float]], races: Sequence[int]) -> list[dict]:
    """Evaluate a batch in a worker process: consecutive batched races of ``races`` genomes each."""
    task, track = _worker_task(task_json)
    results = []
    start = 0
    for size in races:
        results += [r.to_dict() for r in task.evaluate_batch(genomes[start : start + size], track=track)]
        start += size
    return results


def worker_warm_up() -> int:
    """First job of a worker: imports and compiles the simulation before the service says it is ready."""

    for kind in CONTROLLER_KINDS:
        spec = ControllerSpec(kind=kind)
        task = EvaluationTask(track=DEFAULT_TRACK, max_frames=2, controller=spec)
        worker_evaluate(task.model_dump_json(), [[0.0] * spec.genome_length()], [1])
    return os.getpid()


# --------------------------------------------------------------------------------------------------
# Service state
# --------------------------------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, field: str | None, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        detail = f"{self.field}: {self.message}" if self.field else self.message
        errors = [{"field": self.field or "", "message": self.message}]
        return JSONResponse({"detail": detail, "errors": errors}, self.status, headers=self.headers)


class _Metrics:
    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.evaluations = prom.Counter("rrp_evaluations", "Evaluation requests answered with results", registry=r)
        self.laps = prom.Counter("rrp_laps_simulated", "Laps simulated (one per genome)", registry=r)
        self.errors = prom.Counter(
            "rrp_errors", "Evaluation requests not answered with results, by reason", ["reason"], registry=r
        )
        self.busy = prom.Gauge("rrp_busy_workers", "Worker processes running an evaluation", registry=r)
        self.workers = prom.Gauge("rrp_workers", "Worker processes", registry=r)
        self.inflight = prom.Gauge("rrp_inflight_requests", "Evaluation requests taken", registry=r)
        self.capacity = prom.Gauge("rrp_capacity", "Evaluation requests taken at once", registry=r)
        self.frozen = prom.Gauge("rrp_workers_replaced_frozen",
                                 "Worker processes killed and replaced for missing heartbeats", registry=r)
        self.latency = prom.Histogram(
            "rrp_evaluation_seconds",
            "Time to evaluate one request (queue for a worker + simulation)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )


class WorkerDied(RuntimeError):
    """The worker process running a job exited before answering."""


class WorkerFailed(RuntimeError):
    """A job raised in its worker; ``kind`` is the exception's class name."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


HEARTBEAT_S = 0.5


def _heartbeat(beat) -> None:
    """Stamp the shared clock twice a second: a worker that stops stamping is frozen (SIGSTOP, a
    stuck native call, swapped out), whatever its pipe says."""
    while True:
        beat.value = time.monotonic()
        time.sleep(HEARTBEAT_S)


def _worker_main(conn, beat=None) -> None:
    """A worker process: answer ``(job_id, task_json, genomes, races)`` messages until ``None`` or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's business
    if beat is not None:
        threading.Thread(target=_heartbeat, args=(beat,), name="heartbeat", daemon=True).start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the server is gone
            return
        if message is None:
            return
        job_id, task_json, genomes, races = message
        try:
            if task_json is None:
                reply = (job_id, True, worker_warm_up())
            else:
                reply = (job_id, True, worker_evaluate(task_json, genomes, races))
        except Exception as exc:  # reported to the request, the worker lives on
            reply = (job_id, False, (type(exc).__name__, str(exc)))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


class WorkerFrozen(WorkerDied):
    """The worker process running a job stopped sending heartbeats; it was killed and replaced."""


class _Worker:
    def __init__(self, process, conn, beat) -> None:
        self.process = process
        self.conn = conn
        self.beat = beat
        self.job: tuple[int, asyncio.Future] | None = None
        self.ready = False


class WorkerPool:
    """Simulation worker processes fed straight from the event loop.

    Each worker has a pipe; a job is one message written to an idle worker's pipe, its answer is
    read when the pipe becomes readable (``loop.add_reader``): no helper threads, so a request
    costs the event loop a pickle and two small pipe operations. A worker that dies fails its job
    with :class:`WorkerDied` and is replaced. Workers come from a forkserver that preloaded the
    simulation, and warm up (numba, tracks) before taking jobs.
    """

    def __init__(self, size: int, stall_timeout_s: float = 10.0) -> None:
        self.size = size
        self.stall_timeout_s = stall_timeout_s
        self.frozen = 0  # workers killed and replaced for missing heartbeats
        self._watchdog: asyncio.Task | None = None
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(["numpy", "game", "evaluator", "evaluator.service"])
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._queue: deque[tuple[int, str | None, Any, Any, asyncio.Future]] = deque()
        self._ids = itertools.count()
        self._closing = False
        self._respawning: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.running = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def ready_workers(self) -> int:
        return sum(1 for w in self._workers if w.ready)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._watchdog = self._loop.create_task(self._watch())
        await asyncio.gather(*(self._spawn() for _ in range(self.size)))

    async def _watch(self) -> None:
        """Every second: a warm worker whose heartbeat is older than ``stall_timeout_s`` is frozen. Its
        job fails at once (the caller retries elsewhere) and a new worker takes its place."""
        while not self._closing:
            await asyncio.sleep(min(1.0, self.stall_timeout_s / 4))
            now = time.monotonic()
            for worker in list(self._workers):
                silent = now - worker.beat.value
                if worker.ready and silent > self.stall_timeout_s and worker.process.is_alive():
                    self.frozen += 1
                    log.error("worker process %s sent no heartbeat for %.1f s: killing and replacing it",
                              worker.process.pid, silent)
                    worker.process.kill()
                    self._lost(worker, WorkerFrozen(
                        f"the worker process froze (no heartbeat for {silent:.0f} s) and was replaced; retry"))

    async def _spawn(self) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        beat = self._ctx.Value("d", time.monotonic(), lock=False)
        process = self._ctx.Process(target=_worker_main, args=(child, beat), daemon=True, name="rrp-worker")
        await asyncio.to_thread(process.start)
        child.close()
        worker = _Worker(process, parent, beat)
        self._workers.append(worker)
        assert self._loop is not None
        self._loop.add_reader(parent.fileno(), self._on_readable, worker)
        # uvloop's add_reader makes the descriptor non-blocking; messages are read and written whole
        # (a big batch is several pipe buffers long), so keep it blocking: the worker is always at
        # the other end, reading or writing the rest at once.
        os.set_blocking(parent.fileno(), True)
        warm: asyncio.Future = self._loop.create_future()
        self._send(worker, next(self._ids), None, None, None, warm)
        try:
            pid = await warm
        except WorkerDied:
            if not self._closing:
                log.error("a new worker process died while warming up")
            return
        worker.ready = True  # (its answer already released it for jobs)
        log.debug("worker %s ready", pid)

    async def _respawn(self) -> None:
        delay = 0.5
        while not self._closing:
            try:
                await self._spawn()
                return
            except Exception:
                log.exception("starting a worker process failed; trying again in %.1f s", delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, 30.0)

    def submit(self, task_json: str, genomes: Any, races: Sequence[int]) -> asyncio.Future:
        assert self._loop is not None
        future: asyncio.Future = self._loop.create_future()
        job = (next(self._ids), task_json, genomes, races, future)
        if self._idle:
            self._send(self._idle.pop(), *job)
        else:
            self._queue.append(job)
        return future

    def _send(self, worker: _Worker, job_id: int, task_json, genomes, races, future: asyncio.Future) -> None:
        worker.job = (job_id, future)
        self.running += 1
        try:
            worker.conn.send((job_id, task_json, genomes, races))
        except (BrokenPipeError, OSError):
            self._lost(worker)

    def _release(self, worker: _Worker) -> None:
        while self._queue:
            job = self._queue.popleft()
            if not job[-1].cancelled():
                self._send(worker, *job)
                return
        self._idle.append(worker)

    def _on_readable(self, worker: _Worker) -> None:
        try:
            job_id, ok, payload = worker.conn.recv()
        except (EOFError, OSError):
            self._lost(worker)
            return
        current, worker.job = worker.job, None
        self.running -= 1
        if current is not None and current[0] == job_id and not current[1].done():
            if ok:
                current[1].set_result(payload)
            else:
                current[1].set_exception(WorkerFailed(*payload))
        self._release(worker)

    def _lost(self, worker: _Worker, error: WorkerDied | None = None) -> None:
        """The worker's pipe closed (it died) or it froze: fail its job and start a replacement."""
        if worker not in self._workers:
            return
        self._workers.remove(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        assert self._loop is not None
        self._loop.remove_reader(worker.conn.fileno())
        worker.conn.close()
        if worker.job is not None:
            self.running -= 1
            _, future = worker.job
            worker.job = None
            if not future.done():
                future.set_exception(error or WorkerDied("the worker process died"))
        if worker.process.is_alive():  # a broken pipe to a live worker: end it, it is lost anyway
            worker.process.kill()
        worker.process.join(1)
        if not self._closing:
            log.error("worker process %s died (exit code %s); starting another", worker.process.pid,
                      worker.process.exitcode)
            self._respawning.add(self._loop.create_task(self._respawn()))
            self._respawning = {t for t in self._respawning if not t.done()}

    async def stop(self) -> None:
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for task in self._respawning:
            task.cancel()
        for *_, future in self._queue:
            if not future.done():
                future.set_exception(WorkerDied("the evaluator is stopping"))
        self._queue.clear()
        for worker in list(self._workers):
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in list(self._workers):
            await asyncio.to_thread(worker.process.join, 5)
            if worker.process.is_alive():
                worker.process.kill()
            self._lost(worker)


class ServiceState:
    """The worker pool, the in-flight count and the metrics of one service instance."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = _Metrics()
        self.metrics.workers.set(settings.workers)
        self.metrics.capacity.set(settings.capacity)
        self.inflight = 0
        self.reading = 0  # request bodies being received (before a capacity slot)
        self.ready = False
        self.pool = WorkerPool(settings.workers, settings.stall_timeout_s)
        # read when scraped, not written on every request
        self.metrics.busy.set_function(lambda: self.pool.running)
        self.metrics.frozen.set_function(lambda: self.pool.frozen)
        self.metrics.inflight.set_function(lambda: self.inflight)
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

    def retry_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.settings.retry_after_s)}


# --------------------------------------------------------------------------------------------------
# ASGI guard: authentication, capacity and body size, all before the body is read or parsed
# --------------------------------------------------------------------------------------------------


async def _send_json(send, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    for k, v in (headers or {}).items():
        raw_headers.append((k.lower().encode(), v.encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


def _error_body(field: str | None, message: str) -> dict:
    return {
        "detail": f"{field}: {message}" if field else message,
        "errors": [{"field": field or "", "message": message}],
    }


class EvaluationGuard:
    """Pure ASGI middleware for ``POST /v1/evaluations``.

    In this order: bearer token (401), declared ``Content-Length`` over the limit (413, nothing read),
    the body read up to the limit (413 as soon as it is exceeded, for chunked uploads) within
    ``body_timeout_s`` (408), then capacity (503 + ``Retry-After``) and :func:`evaluate_body`.  The
    in-flight count covers the request from its complete body until its response is sent.
    """

    def __init__(self, app, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != EVALUATIONS_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        state = self.state
        settings = state.settings
        errors = state.metrics.errors
        headers = dict(scope["headers"])

        if settings.token is not None:
            auth = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.token.encode()):
                errors.labels("unauthorized").inc()
                await _send_json(
                    send,
                    401,
                    _error_body("Authorization", "missing or wrong bearer token"),
                    {"WWW-Authenticate": "Bearer"},
                )
                return

        limit = settings.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                errors.labels("invalid").inc()
                await _send_json(send, 400, _error_body("Content-Length", "not an integer"))
                return
            if length > limit:
                errors.labels("too_large").inc()
                await _send_json(
                    send,
                    413,
                    _error_body("body", f"request body of {length} bytes exceeds the limit of {limit} bytes"),
                    {"Connection": "close"},
                )
                return

        # The body is read before a capacity slot is taken, within body_timeout_s: a slow or
        # never-ending upload holds a read slot (many more of them than capacity) and then a 408,
        # never a slot that evaluations need.
        if state.reading >= settings.capacity * READS_PER_SLOT:
            errors.labels("overloaded").inc()
            await _send_json(send, 503, _error_body(None, f"evaluator busy: {state.reading} uploads in progress; "
                                                    f"retry after {settings.retry_after_s} s"),
                             state.retry_headers())
            return
        state.reading += 1
        try:
            body = await asyncio.wait_for(_read_body(receive, limit), settings.body_timeout_s)
        except _BodyTooLarge:
            errors.labels("too_large").inc()
            await _send_json(send, 413, _error_body("body", f"request body exceeds the limit of {limit} bytes"),
                             {"Connection": "close"})
            return
        except _ClientGone:
            return
        except TimeoutError:
            errors.labels("slow_body").inc()
            await _send_json(send, 408, _error_body("body", f"request body not received within "
                                                    f"{settings.body_timeout_s:g} s"), {"Connection": "close"})
            return
        finally:
            state.reading -= 1

        if state.inflight >= settings.capacity:
            errors.labels("overloaded").inc()
            await _send_json(
                send,
                503,
                _error_body(
                    None,
                    f"evaluator busy: {state.inflight} evaluations in flight (capacity {settings.capacity}); "
                    f"retry after {settings.retry_after_s} s",
                ),
                state.retry_headers(),
            )
            return

        state.inflight += 1
        try:
            response = await evaluate_body(state, body)
            del body
            await response(scope, receive, send)
        finally:
            state.inflight -= 1


READS_PER_SLOT = 4
"""Uploads read at once per capacity slot: enough that slow clients never starve the others, few
enough that buffered bodies stay bounded (capacity x 4 x max_body_bytes)."""


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


async def _read_body(receive, limit: int) -> bytes:
    """The whole body, refused as soon as it passes ``limit`` (chunked uploads declare no length)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


# --------------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------------


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "tuple"}


def _field_name(loc: Sequence[Any]) -> str:
    # drop "body" and the tags pydantic adds for union members ("str", "TrackData", "function-after[..]")
    parts = [
        p
        for p in loc
        if p != "body" and not (isinstance(p, str) and (p in _TYPE_TAGS or p[:1].isupper() or "[" in p))
    ]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out


_ERROR_STATUS = {401: "unauthorized", 413: "too_large", 422: "invalid", 500: "internal", 503: "overloaded"}


def validation_errors(errors: Sequence[dict]) -> JSONResponse:
    """pydantic errors -> 422 whose ``detail`` names each field (``genomes[3]: ...``)."""
    out = []
    for err in errors:
        field = _field_name(err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            field, msg = "body", f"not valid JSON: {err.get('ctx', {}).get('error', msg)}"
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
            # our model validators name the field at the start of the message
            head, sep, rest = msg.partition(": ")
            if sep and " " not in head:
                field, msg = head, rest
        out.append({"field": field, "message": msg})
    detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in out)
    return JSONResponse({"detail": detail or "invalid request", "errors": out}, 422)


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


async def evaluate_body(state: ServiceState, body: bytes) -> Response:
    """``POST /v1/evaluations`` from its raw body: JSON parsed and validated in one pass (pydantic)."""
    try:
        try:
            request = EvaluationRequest.model_validate_json(body)
        except ValidationError as exc:
            state.metrics.errors.labels("invalid").inc()
            return validation_errors(exc.errors(include_input=False))
        return await run_evaluation(state, request)
    except ApiError as exc:
        state.metrics.errors.labels(_ERROR_STATUS.get(exc.status, "error")).inc()
        return exc.response()


def create_app(settings: Settings | None = None) -> EvaluationGuard:
    """Build the evaluator service (an ASGI app); the worker pool starts with the app's lifespan."""
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

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        state.metrics.errors.labels(_ERROR_STATUS.get(exc.status, "error")).inc()
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        state.metrics.errors.labels("invalid").inc()
        return validation_errors(exc.errors())

    error_responses = {
        401: {"model": ErrorResponse, "description": "missing or wrong bearer token"},
        413: {"model": ErrorResponse, "description": "body or batch too large"},
        422: {"model": ErrorResponse, "description": "invalid task or genomes (message names the field)"},
        503: {"model": ErrorResponse, "description": "at capacity or starting; see Retry-After"},
    }

    @app.post(EVALUATIONS_PATH, response_model=EvaluationResponse, responses=error_responses)
    async def evaluations(request: EvaluationRequest) -> Response:
        # Documents the route; requests are answered by EvaluationGuard with the same code
        # (evaluate_body), which parses the body in one pass instead of JSON then model.
        return await run_evaluation(state, request)

    @app.get("/healthz")
    async def healthz() -> dict:
        # The event loop answers; the workers' own health is in the numbers (a frozen worker is
        # replaced within stall_timeout_s, its request failed so the caller retries elsewhere).
        return {"status": "ok", "workers_ready": state.pool.ready_workers,
                "workers_replaced_frozen": state.pool.frozen}

    @app.get("/readyz", responses={503: {"description": "not ready"}})
    async def readyz() -> Response:
        ready = state.ready and state.pool.ready_workers > 0
        body = {"ready": ready, "inflight": state.inflight, "capacity": settings.capacity,
                "workers_ready": state.pool.ready_workers}
        return JSONResponse(body, 200 if ready else 503)

    @app.get(f"{API_PREFIX}/info", response_model=InfoResponse)
    async def info() -> InfoResponse:
        return InfoResponse(
            version=_version(),
            evaluator=settings.evaluator_id,
            tracks=list(_bundled()),
            controller_kinds=list(CONTROLLER_KINDS),
            capacity=settings.capacity,
            workers=settings.workers,
            max_batch=settings.max_batch,
            max_frames=settings.max_frames,
            max_body_bytes=settings.max_body_bytes,
            auth=settings.token is not None,
        )

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(prom.generate_latest(state.metrics.registry), media_type=prom.CONTENT_TYPE_LATEST)

    # Outside FastAPI's middleware stack: evaluation requests, the hot path, skip its layers.
    return EvaluationGuard(app, state)
