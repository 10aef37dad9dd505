"""The evaluator's simulation worker processes, fed straight from the service's event loop.

The event loop never simulates: each request is one job for a worker process (the only pickles are
those the server exchanges with its own workers over private pipes). What a worker runs is
:mod:`evaluator.worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from evaluator.worker import serve

log = logging.getLogger("evaluator.service")


class WorkerDied(RuntimeError):
    """The worker process running a job exited before answering."""


class WorkerFailed(RuntimeError):
    """A job raised in its worker; ``kind`` is the exception's class name."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


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
        self._ctx.set_forkserver_preload(["numpy", "game", "evaluator", "evaluator.worker"])
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
        process = self._ctx.Process(target=serve, args=(child, beat), daemon=True, name="rrp-worker")
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
