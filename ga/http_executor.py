"""A ``concurrent.futures.Executor`` that evaluates genomes on a fleet of evaluator services over HTTP.

``HttpExecutor.map(task, genomes)`` cuts the genomes into chunks, sends each chunk as one
``POST /v1/evaluations`` (JSON: the declared task and the genomes) and yields the lap results in input
order.  Only :class:`evaluator.EvaluationTask` objects can be run: no code or pickle crosses the wire.

Dispatch
    Every endpoint gets up to its capacity (``/v1/info``) of requests in flight, over persistent
    keep-alive connections (one ``httpx.AsyncClient`` per endpoint, driven by one background event loop).
    The next chunk goes to the least loaded endpoint. While many chunks wait (thousands of short
    tasks), a request carries several of them, each still driven as its own race: fewer round trips,
    the same results.

Faults
    A chunk whose request fails (connection refused or reset, timeout, 5xx, a body that does not parse)
    is queued again, preferably for another endpoint, after a short exponential backoff; the failing
    endpoint is benched and probed (``/readyz``) with a growing interval until it answers again.  While
    an endpoint has work in flight its ``/healthz`` is polled: one that stops answering (a hung or frozen
    process) is benched and its requests are cancelled and sent elsewhere.  A ``503`` is not a fault: the
    endpoint is left alone for ``Retry-After`` seconds and the chunk goes back to the queue.  Every
    result future is completed exactly once, so nothing is lost or counted twice.  When no endpoint has
    been reachable for ``unreachable_timeout`` seconds while work is waiting, the waiting futures fail
    with :class:`NoEvaluatorAvailable`, naming every endpoint tried and its last error.

Discovery
    Endpoints come from :mod:`ga.discovery` (static list, ``dns://``, ``k8s://``); dynamic sources are
    asked again every ``refresh_interval`` seconds (and soon after a failure), so evaluators added or
    removed during a run are used or dropped without restarting anything.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import json
import logging
import math
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

try:
    import orjson
except ImportError:  # pragma: no cover - optional speed-up
    orjson = None

from evaluator import EvaluationTask
from ga.discovery import Discovery, parse_spec
from ga.http1 import Http1Pool, Reply, TransportError
from game import LapResult

__all__ = ["EvaluationError", "HttpExecutor", "NoEvaluatorAvailable"]

log = logging.getLogger("ga.http_executor")

EVALUATIONS_PATH = "/v1/evaluations"
PIPELINE_DEPTH = 3
"""Queue a second request on a busy evaluator only while more than this many chunks per worker wait."""
PACK_SPREAD = 4
"""While chunks are pipelined, a request carries about 1/(PACK_SPREAD x workers) of the waiting chunks."""

# Backoff jitter draws from its own generator: the GA's results depend on the global `random`
# stream (DEAP uses it), which must not shift with how many retries a flaky fleet needed.
_JITTER = random.Random()


class EvaluationError(RuntimeError):
    """An evaluator refused a request (4xx), or a chunk failed on too many attempts."""


class NoEvaluatorAvailable(EvaluationError):
    """No evaluator could be reached for the configured deadline."""


@dataclass(eq=False)
class _Chunk:
    """Consecutive genomes driven as one race; ``future`` gets their LapResults (or the one result
    of a ``submit``). A pack of several chunks sent as one request has them as ``parts`` (one race
    each) and no caller of its own."""

    task_json: str
    genomes: list[list[float]]
    future: cf.Future = field(default_factory=cf.Future)
    single: bool = False
    attempts: int = 0
    not_before: float = 0.0
    avoid: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    started: bool = False
    body: bytes | None = None
    parts: list[_Chunk] | None = None


@dataclass(eq=False)
class _Endpoint:
    url: str
    client: httpx.AsyncClient
    fast: Any = None  # Http1Pool for http:// endpoints
    state: str = "probing"  # probing | up | benched | gone
    limit: int = 1
    workers: int = 1
    max_batch: int = 1024
    max_body_bytes: int = 16 * 1024 * 1024
    evaluator_id: str = ""
    inflight: int = 0
    failures: int = 0
    retry_at: float = 0.0  # next probe (probing/benched)
    cooldown_until: float = 0.0  # after a 503
    last_error: str = ""
    completed: int = 0
    probed_once: bool = False
    kill_reason: str | None = None
    tasks: set[asyncio.Task] = field(default_factory=set)
    probe_task: asyncio.Task | None = None
    watch_task: asyncio.Task | None = None


def _genome(genome: Iterable[float], index: int) -> list[float]:
    """A plain list of finite floats (DEAP individuals, numpy rows...); ValueError names the gene."""
    values = [float(x) for x in genome]
    if not all(map(math.isfinite, values)):
        bad = next(j for j, v in enumerate(values) if not math.isfinite(v))
        raise ValueError(f"genomes[{index}][{bad}] is {values[bad]}: genes must be finite numbers")
    return values


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed (less CPU per request on the dispatch thread), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional speed-up
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _dumps(obj: Any) -> bytes:
    """JSON bytes; floats are written in their shortest exact form either way."""
    if orjson is not None:
        return orjson.dumps(obj)
    return json.dumps(obj, allow_nan=True).encode()


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, TransportError):
        return str(exc)
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc or type(exc).__name__})"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _detail(resp: httpx.Response | Reply) -> str:
    try:
        return str(resp.json().get("detail", resp.text))[:500]
    except Exception:
        return resp.text[:500]


class HttpExecutor(cf.Executor):
    """Evaluate :class:`~evaluator.EvaluationTask` batches on evaluator services over HTTP.

    ``endpoints``: a spec string (``http://a:8000,http://b:8000``, ``dns://SVC:PORT``,
    ``k8s://NS/SVC``), a list of URLs, or a :class:`ga.discovery.Discovery`.
    ``token``: bearer token for the evaluation route (default: ``$RRP_TOKEN``).
    ``max_inflight_per_endpoint``: requests in flight per endpoint; by default the capacity each
    evaluator reports in ``/v1/info`` (lower it when several GA runs share a fleet).
    ``pack_requests``: while many chunks wait, send several in one request (see :meth:`_pack`);
    ``False`` sends every chunk on its own.
    ``heartbeat_interval``/``heartbeat_timeout``: health checks of endpoints with work in flight; one
    that does not answer ``/healthz`` within the timeout is treated as dead.
    ``on_event``: optional callback ``(kind, info)`` run on the dispatch thread (``dispatch``, ``result``,
    ``retry``, ``rejected`` (a 503), ``endpoint_up``, ``endpoint_down``, ``endpoint_removed``), for
    monitoring and tests.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] | Discovery,
        *,
        token: str | None = None,
        request_timeout: float = 600.0,
        connect_timeout: float = 5.0,
        heartbeat_interval: float = 2.0,
        heartbeat_timeout: float = 10.0,
        probe_timeout: float = 5.0,
        unreachable_timeout: float = 120.0,
        refresh_interval: float = 5.0,
        backoff_base: float = 0.05,
        backoff_max: float = 5.0,
        bench_max: float = 10.0,
        max_attempts: int = 10,
        max_inflight_per_endpoint: int | None = None,
        chunks_per_worker: int = 2,
        pack_requests: bool = True,
        on_event: Callable[[str, dict], None] | None = None,
    ):
        self._discovery = parse_spec(endpoints)
        self._token = token if token is not None else (os.environ.get("RRP_TOKEN") or None)
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.probe_timeout = probe_timeout
        self.unreachable_timeout = unreachable_timeout
        self.refresh_interval = refresh_interval
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.bench_max = bench_max
        self.max_attempts = max_attempts
        self.max_inflight_per_endpoint = max_inflight_per_endpoint
        self.chunks_per_worker = max(1, chunks_per_worker)
        self.pack_requests = pack_requests
        self._on_event = on_event

        self._headers = {"content-type": "application/json"}
        if self._token:
            self._headers["authorization"] = f"Bearer {self._token}"

        self._task_cache: tuple[EvaluationTask, str] | None = None
        self._shutdown = False
        self._shutdown_lock = threading.Lock()
        self._stats = {"requests": 0, "results": 0, "retries": 0, "rejected_503": 0, "endpoint_failures": 0}
        self._capacity_event = threading.Event()  # some endpoint is up
        self._first_round = threading.Event()  # the first discovery's endpoints were each probed once
        self._discovery_error = ""

        # loop-thread state
        self._endpoints: dict[str, _Endpoint] = {}
        self._queue: deque[_Chunk] = deque()
        self._unreachable_since: float | None = None
        self._stopping = False
        self._cancel_pending = False

        self._loop = _new_loop()
        self._loop_ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name="http-executor", daemon=True)
        self._thread.start()
        self._loop_ready.wait()

    # ------------------------------------------------------------------------------------------
    # construction helpers
    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> HttpExecutor:
        """``--evaluators`` value (``URL,URL`` | ``dns://SVC:PORT`` | ``k8s://NS/SVC``) -> executor."""
        return cls(parse_spec(spec), **kwargs)

    @property
    def discovery(self) -> Discovery:
        return self._discovery

    def stats(self) -> dict:
        """Counters (requests sent, results, retries, 503s, endpoint failures) and per-endpoint state."""
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            snapshot: cf.Future = cf.Future()

            def take() -> None:
                snapshot.set_result(self._snapshot())

            try:
                self._loop.call_soon_threadsafe(take)
                return snapshot.result(timeout=30)
            except (RuntimeError, cf.TimeoutError):  # the loop stopped meanwhile
                pass
        return self._snapshot()

    def _snapshot(self) -> dict:
        out: dict = dict(self._stats)
        out["endpoints"] = {
            url: {"state": ep.state, "completed": ep.completed, "limit": ep.limit, "last_error": ep.last_error}
            for url, ep in list(self._endpoints.items())
        }
        return out

    # ------------------------------------------------------------------------------------------
    # Executor API
    # ------------------------------------------------------------------------------------------
    def _task_json(self, fn: Any) -> str:
        if not isinstance(fn, EvaluationTask):
            raise TypeError(
                "HttpExecutor runs declared evaluation tasks only (evaluator.EvaluationTask), "
                f"not {type(fn).__name__}: no code is shipped to evaluators"
            )
        cached = self._task_cache
        if cached is not None and cached[0] is fn:
            return cached[1]
        task_json = fn.resolved().model_dump_json()
        self._task_cache = (fn, task_json)
        return task_json

    def _check_open(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future:
        """``submit(task, genome)`` -> Future of the genome's LapResult."""
        task_json = self._task_json(fn)
        if len(args) != 1 or kwargs:
            raise TypeError("submit(task, genome): exactly one genome and no keyword arguments")
        with self._shutdown_lock:
            self._check_open()
            chunk = _Chunk(task_json, [_genome(args[0], 0)], single=True)
            self._enqueue([chunk])
        return chunk.future

    def map(
        self,
        fn: Any,
        *iterables: Iterable,
        timeout: float | None = None,
        chunksize: int | None = None,
        **_: Any,
    ) -> Iterator[LapResult]:
        """Lap results of ``fn(genome)`` for every genome, in input order.

        ``chunksize``: genomes per chunk, driven as one batched race; ``None`` picks it from the fleet:
        ``chunks_per_worker`` (default 2, like the local executor) chunks per worker of the fleet, within
        the evaluators' batch limit. Few, large chunks, because a batch of cars simulates more cheaply
        per car; two still let a fast worker take over work.
        ``timeout`` as in ``concurrent.futures``.
        """
        end_time = None if timeout is None else timeout + time.monotonic()
        task_json = self._task_json(fn)
        self._check_open()
        if len(iterables) != 1:
            raise TypeError("map(task, genomes): an evaluation task takes exactly one iterable of genomes")
        genomes = [_genome(g, i) for i, g in enumerate(iterables[0])]
        chunks: list[_Chunk] = []
        if genomes:
            size = self._chunk_size(len(genomes), chunksize, end_time)
            chunks = [_Chunk(task_json, genomes[i : i + size]) for i in range(0, len(genomes), size)]
            with self._shutdown_lock:
                self._check_open()
                self._enqueue(chunks)
        futures = [c.future for c in chunks]

        def results() -> Iterator[LapResult]:
            try:
                futures.reverse()
                while futures:
                    if end_time is None:
                        yield from futures.pop().result()
                    else:
                        yield from futures.pop().result(end_time - time.monotonic())
            finally:
                for f in futures:
                    f.cancel()

        return results()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._shutdown_lock:
            first = not self._shutdown
            self._shutdown = True
        if first or cancel_futures:
            self._call(self._begin_stop, cancel_futures)
        if wait and self._thread is not threading.current_thread():
            self._thread.join()

    # ------------------------------------------------------------------------------------------
    # caller-side helpers
    # ------------------------------------------------------------------------------------------
    def _call(self, fn: Callable, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(fn, *args)

    def _enqueue(self, chunks: list[_Chunk]) -> None:
        self._call(self._enqueue_in_loop, chunks)

    def _chunk_size(self, n: int, chunksize: int | None, end_time: float | None) -> int:
        # wait (briefly) for the fleet to be known, so chunks match its size; if nobody answers yet,
        # the work is queued anyway and the dispatcher's unreachable deadline applies
        wait = self.probe_timeout + 1.0
        if end_time is not None:
            wait = min(wait, max(0.0, end_time - time.monotonic()))
        if self._capacity_event.wait(wait):
            self._first_round.wait(wait)
        eps = [ep for ep in list(self._endpoints.values()) if ep.state == "up"]
        max_batch = min((ep.max_batch for ep in eps), default=1024)
        if chunksize is None:
            workers = max(1, sum(ep.workers for ep in eps)) if eps else 2
            chunksize = math.ceil(n / (workers * self.chunks_per_worker))
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        return max(1, min(int(chunksize), max_batch))

    # ------------------------------------------------------------------------------------------
    # the dispatch loop (background thread)
    # ------------------------------------------------------------------------------------------
    def _thread_main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            finally:
                self._loop.close()

    def _emit(self, kind: str, **info: Any) -> None:
        if self._on_event is not None:
            try:
                self._on_event(kind, info)
            except Exception:  # a monitoring callback never breaks dispatch
                log.exception("on_event callback failed")

    async def _main(self) -> None:
        self._refresh_now = asyncio.Event()
        self._done: asyncio.Future = self._loop.create_future()
        self._kick_pending = False
        self._timer: asyncio.TimerHandle | None = None
        self._loop_ready.set()
        refresher = asyncio.create_task(self._refresh_loop())
        try:
            self._kick()
            await self._done
        finally:
            if self._timer is not None:
                self._timer.cancel()
            refresher.cancel()
            for ep in list(self._endpoints.values()):
                for t in (ep.probe_task, ep.watch_task, *ep.tasks):
                    if t is not None:
                        t.cancel()
            pending = [t for ep in self._endpoints.values() for t in (ep.probe_task, ep.watch_task, *ep.tasks) if t]
            await asyncio.gather(refresher, *pending, return_exceptions=True)
            for ep in self._endpoints.values():
                if ep.fast is not None:
                    ep.fast.close()
                await ep.client.aclose()
            self._fail_all(RuntimeError("executor shut down"))

    def _kick(self) -> None:
        """Run the dispatcher soon (once, however many events ask for it before it runs)."""
        if not self._kick_pending:
            self._kick_pending = True
            self._loop.call_soon(self._run_dispatch)

    def _run_dispatch(self) -> None:
        self._kick_pending = False
        try:
            delay = self._dispatch()
        except Exception:  # never leave the queue without a dispatcher
            log.exception("dispatch failed; trying again in 1 s")
            delay = 1.0
        if self._stopping and not self._queue and not any(ep.inflight for ep in self._endpoints.values()):
            if not self._done.done():
                self._done.set_result(None)
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, self._kick)

    def _begin_stop(self, cancel_futures: bool) -> None:
        self._stopping = True
        if cancel_futures:
            for chunk in self._queue:
                for part in chunk.parts or (chunk,):
                    part.future.cancel()
            self._queue.clear()
        self._kick()

    def _enqueue_in_loop(self, chunks: list[_Chunk]) -> None:
        self._queue.extend(chunks)
        self._kick()

    def _fail_all(self, exc: BaseException) -> None:
        while self._queue:
            self._fail_chunk(self._queue.popleft(), exc)

    @staticmethod
    def _set(future: cf.Future, result: Any = None, exc: BaseException | None = None) -> None:
        if future.done():
            return
        try:
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)
        except cf.InvalidStateError:  # cancelled meanwhile by the caller
            pass

    def _fail_chunk(self, chunk: _Chunk, exc: BaseException) -> None:
        for part in chunk.parts or (chunk,):
            if part.started or part.future.set_running_or_notify_cancel():
                self._set(part.future, exc=exc)
            part.started = True

    def _complete(self, chunk: _Chunk, results: list[LapResult]) -> None:
        start = 0
        for part in chunk.parts or (chunk,):
            end = start + len(part.genomes)
            self._set(part.future, results[start] if part.single else results[start:end])
            start = end

    @staticmethod
    def _slots(ep: _Endpoint, pipeline: bool) -> int:
        """Requests ``ep`` may have in flight: its capacity while much work is waiting (a request
        queued behind each running one hides the round trip), else one per worker, so that chunks
        go to whichever worker is free first instead of queueing behind a slow one.

        "Much" is more than ``PIPELINE_DEPTH`` chunks per worker: a GA generation (two or three chunks
        per worker) is dealt greedily, since its chunks' lap costs vary a lot and a round trip is short
        next to a chunk; thousands of short tasks are pipelined."""
        return ep.limit if pipeline else min(ep.limit, ep.workers)

    def _free(self, ep: _Endpoint, now: float, pipeline: bool) -> bool:
        return ep.state == "up" and ep.inflight < self._slots(ep, pipeline) and now >= ep.cooldown_until

    def _pick(self, chunk: _Chunk, now: float, pipeline: bool) -> _Endpoint | None:
        best: _Endpoint | None = None
        best_key: tuple | None = None
        for ep in self._endpoints.values():
            if not self._free(ep, now, pipeline):
                continue
            key = (ep.url in chunk.avoid, ep.inflight / ep.limit, -ep.limit)
            if best_key is None or key < best_key:
                best, best_key = ep, key
        if best is not None and best.url in chunk.avoid:
            # an endpoint this chunk failed on: only if no other endpoint is up (it may be busy)
            others_up = any(ep.state == "up" and ep.url not in chunk.avoid for ep in self._endpoints.values())
            if others_up:
                return None
        return best

    def _dispatch(self) -> float:
        """Send what can be sent; return seconds until the next time-based event."""
        now = self._loop.time()
        next_event = 1.0
        up = any(ep.state == "up" for ep in self._endpoints.values())
        if self._queue and not up:
            if self._unreachable_since is None:
                self._unreachable_since = now
            waited = now - self._unreachable_since
            if waited >= self.unreachable_timeout:
                self._fail_all(NoEvaluatorAvailable(self._unreachable_message(waited)))
            else:
                next_event = min(next_event, self.unreachable_timeout - waited)
        else:
            self._unreachable_since = None

        if not up or not self._queue:
            return next_event
        kept: deque[_Chunk] = deque()
        workers = sum(ep.workers for ep in self._endpoints.values() if ep.state == "up")
        while self._queue:
            pipeline = len(self._queue) > PIPELINE_DEPTH * workers
            chunk = self._queue.popleft()
            if chunk.not_before > now:
                next_event = min(next_event, chunk.not_before - now)
                kept.append(chunk)
                continue
            ep = self._pick(chunk, now, pipeline)
            if ep is None:
                if not any(self._free(e, now, pipeline) for e in self._endpoints.values()):
                    self._queue.appendleft(chunk)
                    break  # no free slot anywhere: keep the rest in order
                kept.append(chunk)
                continue
            if not self._start_chunk(chunk):
                continue  # every genome of the chunk was cancelled
            if pipeline and self.pack_requests:
                chunk = self._pack(chunk, ep, now, workers)
            self._launch(ep, chunk)
        self._queue.extendleft(reversed(kept))
        for ep in self._endpoints.values():
            if ep.state == "up" and ep.cooldown_until > now:
                next_event = min(next_event, ep.cooldown_until - now)
        return max(next_event, 0.001)

    def _start_chunk(self, chunk: _Chunk) -> bool:
        if not chunk.started:
            chunk.started = True
            if not chunk.future.set_running_or_notify_cancel():
                return False  # cancelled by the caller before it was sent
        return True

    def _pack(self, first: _Chunk, ep: _Endpoint, now: float, workers: int) -> _Chunk:
        """``first`` and the chunks queued behind it, as one request (each chunk still its own race).

        Guided self-scheduling: a pack takes about 1/(PACK_SPREAD x workers) of the waiting chunks, so
        thousands of short tasks do not each pay a round trip, and packs shrink to single chunks as the
        queue drains, so the last requests stay short and the endpoints finish together. Retried chunks
        travel alone.
        """
        if first.parts is not None or first.attempts:
            return first
        want = len(self._queue) // (PACK_SPREAD * workers)
        # stay well within the evaluator's body limit: genes take up to ~25 bytes of JSON each
        max_genomes = min(ep.max_batch, ep.max_body_bytes // (2 * 25 * max(1, len(first.genomes[0]))))
        parts, size = [first], len(first.genomes)
        while want > 0 and self._queue:
            nxt = self._queue[0]
            if (
                nxt.started
                or nxt.task_json != first.task_json
                or nxt.not_before > now
                or size + len(nxt.genomes) > max_genomes
            ):
                break
            self._queue.popleft()
            if self._start_chunk(nxt):  # (else cancelled by its caller: dropped)
                parts.append(nxt)
                size += len(nxt.genomes)
                want -= 1
        if len(parts) == 1:
            return first
        return _Chunk(first.task_json, [g for p in parts for g in p.genomes], started=True, parts=parts)

    @staticmethod
    def _body(chunk: _Chunk) -> bytes:
        races = b"" if chunk.parts is None else b',"races":' + _dumps([len(p.genomes) for p in chunk.parts])
        return b'{"task":' + chunk.task_json.encode() + b',"genomes":' + _dumps(chunk.genomes) + races + b"}"

    def _launch(self, ep: _Endpoint, chunk: _Chunk) -> None:
        if chunk.body is None:
            chunk.body = self._body(chunk)
        ep.inflight += 1
        self._stats["requests"] += 1
        task = asyncio.create_task(self._run_chunk(ep, chunk))
        ep.tasks.add(task)
        task.add_done_callback(ep.tasks.discard)
        self._emit("dispatch", endpoint=ep.url, size=len(chunk.genomes), inflight=ep.inflight)
        if ep.watch_task is None or ep.watch_task.done():
            ep.watch_task = asyncio.create_task(self._watch(ep))

    async def _run_chunk(self, ep: _Endpoint, chunk: _Chunk) -> None:
        try:
            try:
                if ep.fast is not None:
                    resp = await ep.fast.post(
                        EVALUATIONS_PATH, chunk.body, self.request_timeout, self.connect_timeout
                    )
                else:
                    resp = await ep.client.post(
                        EVALUATIONS_PATH,
                        content=chunk.body,
                        headers=self._headers,
                        timeout=httpx.Timeout(self.request_timeout, connect=self.connect_timeout),
                    )
            except asyncio.CancelledError:
                if self._stopping or ep.kill_reason is None:
                    self._fail_chunk(chunk, RuntimeError("executor shut down"))
                    raise
                self._retry(ep, chunk, ep.kill_reason)
                return
            except (httpx.HTTPError, TransportError) as exc:
                reason = _describe_error(exc)
                self._endpoint_failed(ep, reason)
                self._retry(ep, chunk, reason)
                return
            await self._handle_response(ep, chunk, resp)
        finally:
            ep.inflight -= 1
            if ep.state == "gone" and ep.inflight == 0:
                self._forget(ep)
            self._kick()

    async def _handle_response(self, ep: _Endpoint, chunk: _Chunk, resp: httpx.Response | Reply) -> None:
        status = resp.status_code
        if status == 200:
            try:
                data = resp.json()
                results = [LapResult.from_dict(r) for r in data["results"]]
                if len(results) != len(chunk.genomes):
                    raise ValueError(f"{len(results)} results for {len(chunk.genomes)} genomes")
            except Exception as exc:
                reason = f"unreadable answer: {_describe_error(exc)}"
                self._endpoint_failed(ep, reason)
                self._retry(ep, chunk, reason)
                return
            self._complete(chunk, results)
            ep.failures = 0
            ep.completed += len(results)
            self._stats["results"] += len(results)
            self._emit("result", endpoint=ep.url, size=len(results), inflight=ep.inflight - 1)
            return
        if status == 503:
            self._stats["rejected_503"] += 1
            try:
                retry_after = float(resp.headers.get("retry-after", "1"))
            except ValueError:
                retry_after = 1.0
            ep.cooldown_until = self._loop.time() + min(max(retry_after, 0.0), 30.0)
            self._queue.appendleft(chunk)
            self._emit("rejected", endpoint=ep.url, retry_after=retry_after, size=len(chunk.genomes))
            return
        if status >= 500:
            reason = f"HTTP {status}: {_detail(resp)}"
            self._endpoint_failed(ep, reason)
            self._retry(ep, chunk, reason)
            return
        # 4xx: the request itself is wrong (task, genomes, token); retrying cannot help
        self._fail_chunk(
            chunk, EvaluationError(f"evaluator {ep.url} refused the request: HTTP {status}: {_detail(resp)}")
        )

    def _retry(self, ep: _Endpoint, chunk: _Chunk, reason: str) -> None:
        self._stats["retries"] += 1
        chunk.attempts += 1
        chunk.errors.append(f"{ep.url}: {reason}")
        chunk.avoid.add(ep.url)
        self._emit("retry", endpoint=ep.url, reason=reason, size=len(chunk.genomes))
        if chunk.attempts >= self.max_attempts:
            self._fail_chunk(
                chunk,
                EvaluationError(
                    f"a chunk of {len(chunk.genomes)} genomes failed {chunk.attempts} times: "
                    + "; ".join(chunk.errors[-5:])
                ),
            )
            return
        delay = min(self.backoff_max, self.backoff_base * 2 ** (chunk.attempts - 1))
        chunk.not_before = self._loop.time() + delay * _JITTER.uniform(0.5, 1.0)
        self._queue.appendleft(chunk)
        self._kick()

    # ------------------------------------------------------------------------------------------
    # endpoint health
    # ------------------------------------------------------------------------------------------
    def _endpoint_failed(self, ep: _Endpoint, reason: str, cancel_inflight: bool = False) -> None:
        ep.last_error = reason
        if ep.state != "up":
            return
        self._stats["endpoint_failures"] += 1
        ep.state = "benched"
        ep.failures += 1
        ep.retry_at = self._loop.time() + self._bench_delay(ep)
        log.warning("evaluator %s benched: %s", ep.url, reason)
        self._emit("endpoint_down", endpoint=ep.url, reason=reason)
        if cancel_inflight:
            ep.kill_reason = reason
            current = asyncio.current_task()
            for t in list(ep.tasks):
                if t is not current:
                    t.cancel()
        self._start_probe(ep)
        self._refresh_now.set()
        self._kick()

    def _bench_delay(self, ep: _Endpoint) -> float:
        return min(self.bench_max, 0.25 * 2 ** max(0, ep.failures - 1)) * _JITTER.uniform(0.75, 1.0)

    def _start_probe(self, ep: _Endpoint) -> None:
        if ep.probe_task is None or ep.probe_task.done():
            ep.probe_task = asyncio.create_task(self._probe(ep))

    async def _probe(self, ep: _Endpoint) -> None:
        while ep.state in ("probing", "benched") and not self._stopping:
            delay = ep.retry_at - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if ep.state not in ("probing", "benched") or self._stopping:
                return
            try:
                ready = await ep.client.get("/readyz", timeout=self.probe_timeout)
                if ready.status_code != 200:
                    raise EvaluationError(f"/readyz answered {ready.status_code}")
                info_resp = await ep.client.get("/v1/info", timeout=self.probe_timeout)
                info_resp.raise_for_status()
                info = info_resp.json()
            except Exception as exc:
                ep.last_error = _describe_error(exc)
                ep.failures += 1
                ep.retry_at = self._loop.time() + self._bench_delay(ep)
                self._probed(ep)
                continue
            if ep.state not in ("probing", "benched"):
                return
            self._apply_info(ep, info)
            ep.state = "up"
            ep.kill_reason = None
            ep.cooldown_until = 0.0
            self._probed(ep)
            self._capacity_event.set()
            log.info("evaluator %s up (capacity %d)", ep.url, ep.limit)
            self._emit("endpoint_up", endpoint=ep.url, capacity=ep.limit)
            self._kick()
            return

    def _probed(self, ep: _Endpoint) -> None:
        ep.probed_once = True
        if all(e.probed_once for e in self._endpoints.values()):
            self._first_round.set()

    def _apply_info(self, ep: _Endpoint, info: dict) -> None:
        capacity = max(1, int(info.get("capacity", 1)))
        if self.max_inflight_per_endpoint is not None:
            capacity = max(1, self.max_inflight_per_endpoint)
        ep.limit = capacity
        ep.workers = max(1, int(info.get("workers", 1)))
        ep.max_batch = max(1, int(info.get("max_batch", 1024)))
        ep.max_body_bytes = max(1024, int(info.get("max_body_bytes", 16 * 1024 * 1024)))
        ep.evaluator_id = str(info.get("evaluator", ""))

    async def _watch(self, ep: _Endpoint) -> None:
        """While requests are in flight, check that the endpoint still answers at all."""
        while ep.inflight > 0 and ep.state == "up" and not self._stopping:
            await asyncio.sleep(self.heartbeat_interval)
            if ep.inflight == 0 or ep.state != "up":
                return
            try:
                resp = await ep.client.get(
                    "/healthz", timeout=httpx.Timeout(self.heartbeat_timeout, connect=self.heartbeat_timeout)
                )
                if resp.status_code != 200:
                    raise EvaluationError(f"/healthz answered {resp.status_code}")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._endpoint_failed(ep, f"not answering /healthz ({_describe_error(exc)})", cancel_inflight=True)
                return

    # ------------------------------------------------------------------------------------------
    # discovery
    # ------------------------------------------------------------------------------------------
    async def _refresh_loop(self) -> None:
        first = True
        while not self._stopping:
            try:
                urls = await asyncio.to_thread(self._discovery.endpoints)
                self._discovery_error = ""
            except Exception as exc:
                self._discovery_error = _describe_error(exc)
                log.warning("discovery %s failed: %s", self._discovery.describe(), self._discovery_error)
                urls = None
            if urls is not None:
                self._apply_endpoints(urls)
            if first and (urls == [] or urls is None):
                self._first_round.set()
            first = False
            if not self._discovery.dynamic and urls is not None:
                return
            self._refresh_now.clear()
            try:
                await asyncio.wait_for(self._refresh_now.wait(), timeout=self.refresh_interval)
                await asyncio.sleep(min(1.0, self.refresh_interval))  # at most about once a second
            except TimeoutError:
                pass

    def _apply_endpoints(self, urls: Sequence[str]) -> None:
        wanted = dict.fromkeys(urls)
        for url in wanted:
            ep = self._endpoints.get(url)
            if ep is None:
                client = httpx.AsyncClient(
                    base_url=url,
                    limits=httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=60),
                    timeout=self.probe_timeout,
                )
                fast = Http1Pool(url, self._headers) if url.startswith("http://") else None
                ep = _Endpoint(url=url, client=client, fast=fast, retry_at=self._loop.time())
                self._endpoints[url] = ep
                self._start_probe(ep)
            elif ep.state == "gone":
                ep.state = "probing"
                ep.retry_at = self._loop.time()
                self._start_probe(ep)
        for url, ep in list(self._endpoints.items()):
            if url not in wanted and ep.state != "gone":
                ep.state = "gone"
                log.info("evaluator %s no longer discovered", url)
                self._emit("endpoint_removed", endpoint=url)
                if ep.inflight == 0:
                    self._forget(ep)
        self._kick()

    def _forget(self, ep: _Endpoint) -> None:
        if self._endpoints.get(ep.url) is ep and not self._stopping:
            del self._endpoints[ep.url]
            if ep.watch_task is not None:
                ep.watch_task.cancel()
            if ep.fast is not None:
                ep.fast.close()
            asyncio.create_task(ep.client.aclose())

    def _unreachable_message(self, waited: float) -> str:
        tried = [f"{ep.url} ({ep.last_error or ep.state})" for ep in self._endpoints.values() if ep.state != "gone"]
        source = self._discovery.describe()
        if not tried:
            gone = [ep.url for ep in self._endpoints.values()]
            extra = f"; no longer listed: {', '.join(gone)}" if gone else ""
            err = f" ({self._discovery_error})" if self._discovery_error else ""
            return f"no evaluator reachable for {waited:.0f} s: {source} lists no endpoint{err}{extra}"
        return f"no evaluator reachable for {waited:.0f} s; endpoints tried (from {source}): " + ", ".join(tried)
