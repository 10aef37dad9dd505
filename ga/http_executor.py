"""A ``concurrent.futures.Executor`` that evaluates genomes on a fleet of evaluator services over HTTP.

``HttpExecutor.map(task, genomes)`` cuts the genomes into chunks, sends each chunk as one
``POST /v1/evaluations`` (JSON: the declared task and the genomes) and yields the lap results in input
order. Only :class:`evaluator.EvaluationTask` objects can be run: no code or pickle crosses the wire.

How a chunk travels
    ``map`` puts chunks on the queue of a :class:`ga.fleet.scheduler.Scheduler` (the whole dispatch policy:
    endpoint choice, packing, retries, backoff; read it there). A background thread runs an event loop;
    whenever something changes it asks the scheduler for a :class:`~ga.fleet.scheduler.Plan` and sends each
    request through that endpoint's :class:`ga.fleet.transport.Transport`; the answer goes back to the
    scheduler, which completes the caller's futures or queues the chunk again.

Faults
    A failing request (connection refused or reset, timeout, 5xx, a body that does not parse) benches
    the endpoint, which is then probed (``/readyz``) until it answers again. While an endpoint has work
    in flight its ``/healthz`` is polled: one that stops answering (a hung or frozen process) is benched
    and its requests are cancelled and sent elsewhere.

Discovery
    Endpoints come from :mod:`ga.discovery` (static list, ``dns://``, ``k8s://``); dynamic sources are
    asked again every ``refresh_interval`` seconds (and soon after a failure), so evaluators added or
    removed during a run are used or dropped without restarting anything.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ga.contract import genome_list, require_task, wire_json
from ga.discovery import Discovery, parse_spec
from ga.fleet.endpoint import Endpoint, EndpointState
from ga.fleet.errors import EvaluationError, NoEvaluatorAvailable
from ga.fleet.scheduler import Chunk, Policy, Scheduler
from ga.fleet.transport import Transport, TransportError, describe_error, request_body
from game import LapResult

__all__ = ["EvaluationError", "HttpExecutor", "NoEvaluatorAvailable"]

log = logging.getLogger("ga.http_executor")


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed (less CPU per request on the dispatch thread), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional speed-up
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@dataclass(eq=False)
class _Link:
    """The loop-side companions of one endpoint: its transport and the tasks working on it."""

    transport: Transport
    requests: set[asyncio.Task] = field(default_factory=set)
    probe: asyncio.Task | None = None
    watch: asyncio.Task | None = None
    kill_reason: str | None = None
    """Set when its in-flight requests are cancelled because it stopped answering health checks."""

    def tasks(self) -> list[asyncio.Task]:
        return [t for t in (self.probe, self.watch, *self.requests) if t is not None]


class HttpExecutor(cf.Executor):
    """Evaluate :class:`~evaluator.EvaluationTask` batches on evaluator services over HTTP.

    ``endpoints``: a spec string (``http://a:8000,http://b:8000``, ``dns://SVC:PORT``,
    ``k8s://NS/SVC``), a list of URLs, or a :class:`ga.discovery.Discovery`.
    ``token``: bearer token for the evaluation route (default: ``$RRP_TOKEN``).
    ``max_inflight_per_endpoint``: requests in flight per endpoint; by default the capacity each
    evaluator reports in ``/v1/info`` (lower it when several GA runs share a fleet).
    ``pack_requests``: while many chunks wait, send several in one request
    (:meth:`ga.fleet.scheduler.Scheduler.pack`); ``False`` sends every chunk on its own.
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
        token = token if token is not None else (os.environ.get("RRP_TOKEN") or None)
        self._headers = {"content-type": "application/json"}
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.probe_timeout = probe_timeout
        self.refresh_interval = refresh_interval
        self._on_event = on_event
        policy = Policy(
            unreachable_timeout=unreachable_timeout,
            backoff_base=backoff_base,
            backoff_max=backoff_max,
            bench_max=bench_max,
            max_attempts=max_attempts,
            max_inflight_per_endpoint=max_inflight_per_endpoint,
            chunks_per_worker=max(1, chunks_per_worker),
            pack_requests=pack_requests,
        )
        # read and changed on the loop thread only (the caller thread reads it for chunk sizes)
        self._scheduler = Scheduler(policy, emit=self._emit, source=self._discovery.describe())
        self._links: dict[str, _Link] = {}

        self._shutdown = False
        self._shutdown_lock = threading.Lock()
        self._capacity_event = threading.Event()  # some endpoint is up
        self._first_round = threading.Event()  # the first discovery's endpoints were each probed once
        self._stopping = False

        self._loop = _new_loop()
        self._loop_ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name="http-executor", daemon=True)
        self._thread.start()
        self._loop_ready.wait()

    # ------------------------------------------------------------------------------------------
    # Executor API (caller's thread)
    # ------------------------------------------------------------------------------------------
    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> cf.Future:
        """``submit(task, genome)`` -> Future of the genome's LapResult."""
        task_json = self._task_json(fn)
        if len(args) != 1 or kwargs:
            raise TypeError("submit(task, genome): exactly one genome and no keyword arguments")
        with self._shutdown_lock:
            self._check_open()
            chunk = Chunk(task_json, [genome_list(args[0], 0)], single=True)
            self._call(self._enqueue, [chunk])
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

        ``chunksize``: genomes per chunk, driven as one batched race; ``None`` picks it from the fleet
        (:meth:`ga.fleet.scheduler.Scheduler.chunk_size`). ``timeout`` as in ``concurrent.futures``.
        """
        end_time = None if timeout is None else timeout + time.monotonic()
        task_json = self._task_json(fn)
        self._check_open()
        if len(iterables) != 1:
            raise TypeError("map(task, genomes): an evaluation task takes exactly one iterable of genomes")
        genomes = [genome_list(g, i) for i, g in enumerate(iterables[0])]
        chunks: list[Chunk] = []
        if genomes:
            size = self._chunk_size(len(genomes), chunksize, end_time)
            chunks = [Chunk(task_json, genomes[i : i + size]) for i in range(0, len(genomes), size)]
            with self._shutdown_lock:
                self._check_open()
                self._call(self._enqueue, chunks)
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

    def stats(self) -> dict:
        """Counters (requests sent, results, retries, 503s, endpoint failures) and per-endpoint state."""
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            snapshot: cf.Future = cf.Future()
            try:
                self._loop.call_soon_threadsafe(lambda: snapshot.set_result(self._scheduler.snapshot()))
                return snapshot.result(timeout=30)
            except (RuntimeError, cf.TimeoutError):  # the loop stopped meanwhile
                pass
        return self._scheduler.snapshot()

    @staticmethod
    def _task_json(fn: Any) -> str:
        return wire_json(require_task(fn))

    def _check_open(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _chunk_size(self, n: int, chunksize: int | None, end_time: float | None) -> int:
        # wait (briefly) for the fleet to be known, so chunks match its size; if nobody answers yet,
        # the work is queued anyway and the dispatcher's unreachable deadline applies
        wait = self.probe_timeout + 1.0
        if end_time is not None:
            wait = min(wait, max(0.0, end_time - time.monotonic()))
        if self._capacity_event.wait(wait):
            self._first_round.wait(wait)
        return self._scheduler.chunk_size(n, chunksize)

    def _call(self, fn: Callable, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(fn, *args)

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
            pending = [t for link in self._links.values() for t in link.tasks()]
            for t in pending:
                t.cancel()
            await asyncio.gather(refresher, *pending, return_exceptions=True)
            for link in self._links.values():
                await link.transport.aclose()
            self._scheduler.fail_waiting(RuntimeError("executor shut down"))

    def _kick(self) -> None:
        """Run the dispatcher soon (once, however many events ask for it before it runs)."""
        if not self._kick_pending:
            self._kick_pending = True
            self._loop.call_soon(self._run_dispatch)

    def _run_dispatch(self) -> None:
        self._kick_pending = False
        try:
            plan = self._scheduler.plan(self._loop.time())
            for ep, chunk in plan.sends:
                self._send(ep, chunk)
            delay = plan.next_event
        except Exception:  # never leave the queue without a dispatcher
            log.exception("dispatch failed; trying again in 1 s")
            delay = 1.0
        if self._stopping and self._scheduler.idle:
            if not self._done.done():
                self._done.set_result(None)
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, self._kick)

    def _begin_stop(self, cancel_futures: bool) -> None:
        self._stopping = True
        if cancel_futures:
            self._scheduler.cancel_waiting()
        self._kick()

    def _enqueue(self, chunks: list[Chunk]) -> None:
        self._scheduler.enqueue(chunks)
        self._kick()

    def _send(self, ep: Endpoint, chunk: Chunk) -> None:
        if chunk.body is None:  # (a retried chunk keeps its body)
            chunk.body = request_body(chunk.task_json, chunk.genomes, chunk.races)
        link = self._links[ep.url]
        task = asyncio.create_task(self._request(ep, link, chunk))
        link.requests.add(task)
        task.add_done_callback(link.requests.discard)
        if link.watch is None or link.watch.done():
            link.watch = asyncio.create_task(self._watch(ep, link))

    async def _request(self, ep: Endpoint, link: _Link, chunk: Chunk) -> None:
        """One request: its answer (or failure) goes back to the scheduler."""
        scheduler = self._scheduler
        try:
            try:
                assert chunk.body is not None
                answer = await link.transport.evaluate(
                    chunk.body, len(chunk.genomes), self.request_timeout, self.connect_timeout
                )
            except asyncio.CancelledError:
                if self._stopping or link.kill_reason is None:
                    scheduler.fail(chunk, RuntimeError("executor shut down"))
                    raise
                scheduler.retry(ep, chunk, link.kill_reason, self._loop.time())
                return
            except TransportError as exc:
                self._endpoint_failed(ep, str(exc))
                scheduler.retry(ep, chunk, str(exc), self._loop.time())
                return
            if answer.kind == "results":
                assert answer.results is not None
                scheduler.delivered(ep, chunk, answer.results)
            elif answer.kind == "busy":
                scheduler.rejected(ep, chunk, answer.retry_after, self._loop.time())
            elif answer.kind == "fault":
                self._endpoint_failed(ep, answer.reason)
                scheduler.retry(ep, chunk, answer.reason, self._loop.time())
            else:
                scheduler.fail(chunk, EvaluationError(f"evaluator {ep.url} refused the request: {answer.reason}"))
        finally:
            if scheduler.finished(ep):
                self._forget(ep)
            self._kick()

    # ------------------------------------------------------------------------------------------
    # endpoint health
    # ------------------------------------------------------------------------------------------
    def _endpoint_failed(self, ep: Endpoint, reason: str, cancel_inflight: bool = False) -> None:
        if not self._scheduler.endpoint_failed(ep, reason, self._loop.time()):
            return
        link = self._links[ep.url]
        if cancel_inflight:
            link.kill_reason = reason
            current = asyncio.current_task()
            for t in list(link.requests):
                if t is not current:
                    t.cancel()
        self._start_probe(ep)
        self._refresh_now.set()
        self._kick()

    def _start_probe(self, ep: Endpoint) -> None:
        link = self._links[ep.url]
        if link.probe is None or link.probe.done():
            link.probe = asyncio.create_task(self._probe(ep, link))

    async def _probe(self, ep: Endpoint, link: _Link) -> None:
        """Probe ``ep`` until it answers (then it is up) or it is no longer probing."""
        while ep.probing and not self._stopping:
            delay = ep.retry_at - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if not ep.probing or self._stopping:
                return
            try:
                info = await link.transport.probe(self.probe_timeout)
            except Exception as exc:
                self._scheduler.probe_failed(ep, describe_error(exc), self._loop.time())
                self._note_probed()
                continue
            if not ep.probing:
                return
            self._scheduler.probe_succeeded(ep, info)
            link.kill_reason = None
            self._note_probed()
            self._capacity_event.set()
            self._kick()
            return

    def _note_probed(self) -> None:
        if self._scheduler.all_probed():
            self._first_round.set()

    async def _watch(self, ep: Endpoint, link: _Link) -> None:
        """While requests are in flight, check that the endpoint still answers at all."""
        while ep.inflight > 0 and ep.state is EndpointState.UP and not self._stopping:
            await asyncio.sleep(self.heartbeat_interval)
            if ep.inflight == 0 or ep.state is not EndpointState.UP:
                return
            try:
                await link.transport.check_health(self.heartbeat_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._endpoint_failed(ep, f"not answering /healthz ({describe_error(exc)})", cancel_inflight=True)
                return

    # ------------------------------------------------------------------------------------------
    # discovery
    # ------------------------------------------------------------------------------------------
    async def _refresh_loop(self) -> None:
        first = True
        while not self._stopping:
            try:
                urls = await asyncio.to_thread(self._discovery.endpoints)
                self._scheduler.discovery_error = ""
            except Exception as exc:
                self._scheduler.discovery_error = describe_error(exc)
                log.warning("discovery %s failed: %s", self._discovery.describe(), self._scheduler.discovery_error)
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
        to_probe, to_forget = self._scheduler.set_endpoints(urls, self._loop.time())
        for ep in to_probe:
            if ep.url not in self._links:
                self._links[ep.url] = _Link(Transport(ep.url, self._headers, timeout=self.probe_timeout))
            self._start_probe(ep)
        for ep in to_forget:
            self._forget(ep)
        self._kick()

    def _forget(self, ep: Endpoint) -> None:
        if self._stopping or not self._scheduler.forget(ep):
            return
        link = self._links.pop(ep.url)
        if link.watch is not None:
            link.watch.cancel()
        asyncio.create_task(link.transport.aclose())
