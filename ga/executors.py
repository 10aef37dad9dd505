"""The local executor: a process pool that evaluates chunks of genomes.

DEAP evaluates through ``toolbox.map``; plugging in an object that follows
``concurrent.futures.Executor`` keeps the GA unaware of where laps are driven. The function
handed to ``map`` must be a declared :class:`evaluator.EvaluationTask` (never arbitrary code),
so the same call works unchanged against the HTTP executor that ships tasks to evaluator pods.

Genomes travel in chunks because one ``task.evaluate_batch(chunk)`` runs a single batched
simulation for the whole chunk. Each simulated frame has a fixed cost (a controller call and
a step call from Python) on top of the per-car cost, so bigger chunks are cheaper per lap;
more chunks let a worker that finishes early take over work from a slower one (the cores
are shared). Measured on a 2-core machine with a population of 128 after 10 generations,
2 workers: 1 chunk per worker 800 evaluations/s, 2 chunks 760, 3 chunks 640, 6 chunks 580.
The default is two chunks per worker.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout

from evaluator import EvaluationTask, worker
from ga.contract import default_chunksize, genome_list, require_task, split


def _worker_init(parent_pid: int) -> None:
    """Die with the parent, leave Ctrl-C to it, compile the simulation once.

    The parent stops the pool itself on Ctrl-C or SIGTERM (its checkpoint is complete); were it
    killed outright (SIGKILL, OOM), nothing would stop the workers, so each asks the kernel to
    kill it when its parent dies. SIGTERM gets its default back (a forked worker inherits the
    parent's handler): the pool ends workers with it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent_pid)
    _warm_up()


def die_with_parent(parent_pid: int) -> None:
    """Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; exit now if the parent is already gone."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool's own checks are all there is
        return
    if os.getppid() != parent_pid:  # the parent died before the request above
        os._exit(1)


def _warm_up() -> None:
    """Compile the simulation now, not inside the first timed chunk. Failures are ignored: a broken
    simulation reports itself properly on the first real evaluation, with the task that caused it."""
    with contextlib.suppress(Exception):
        worker.warm_up()


def _evaluate_chunk(task_json: str, genomes: list[list[float]]) -> list:
    """Worker entry point: one batched simulation for one chunk (the task cached per process)."""
    return worker.evaluate_races(task_json, genomes, network=False)


def _noop() -> None:
    """Submitted once per worker at start-up so every process starts (and warms) right away."""


# --- parent side -----------------------------------------------------------------------------


class LocalExecutor(Executor):
    """Evaluate genomes on this machine, one worker process per core by default.

    ``workers=1`` evaluates in the calling process: no pool, no copies, which is also the
    single-core reference for the worker-efficiency benchmark.
    """

    def __init__(self, workers: int | None = None, *, mp_context: str | None = None) -> None:
        if workers is None:
            workers = os.cpu_count() or 1
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.workers = workers
        self._lock = threading.Lock()
        self._shutdown = False
        self._pool: ProcessPoolExecutor | None = None
        if workers > 1:
            # fork starts workers in milliseconds; they are started here, before the caller
            # has created any threads (progress bars), so forking is safe.
            method = mp_context or ("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
            ctx = multiprocessing.get_context(method)
            self._pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                             initargs=(os.getpid(),))
            for _ in range(workers):
                self._pool.submit(_noop)
        else:
            _warm_up()

    # concurrent.futures.Executor API -------------------------------------------------------

    def submit(self, fn: Callable, /, *args, **kwargs) -> Future:
        """Evaluate one genome: ``submit(task, genome)`` -> Future[LapResult]."""
        task = require_task(fn)
        if kwargs or len(args) != 1:
            raise TypeError("submit(task, genome) takes exactly one genome")
        self._check_open()
        genome = genome_list(args[0], 0)
        if self._pool is None:
            future: Future = Future()
            try:
                future.set_result(task.evaluate_batch([genome])[0])
            except BaseException as exc:  # noqa: BLE001 - delivered through the future
                future.set_exception(exc)
            return future
        inner = self._pool.submit(_evaluate_chunk, task.model_dump_json(), [genome])
        outer: Future = Future()

        def _unwrap(done: Future) -> None:
            if done.cancelled():
                outer.cancel()
                outer.set_running_or_notify_cancel()
            elif done.exception() is not None:
                outer.set_exception(done.exception())
            else:
                outer.set_result(done.result()[0])

        inner.add_done_callback(_unwrap)
        return outer

    def map(
        self,
        fn: Callable,
        *iterables: Iterable,
        timeout: float | None = None,
        chunksize: int | None = None,
    ) -> Iterator:
        """Evaluate genomes -> LapResults in input order.

        ``chunksize`` is the number of genomes per batched simulation; ``None`` picks
        :func:`default_chunksize`. As in ``concurrent.futures``, all chunks are submitted at
        once and ``timeout`` counts from this call.
        """
        task = require_task(fn)
        if len(iterables) != 1:
            raise TypeError("map(task, genomes) takes exactly one iterable of genomes")
        if chunksize is not None and chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        self._check_open()
        genomes = [genome_list(g, i) for i, g in enumerate(iterables[0])]
        size = chunksize or default_chunksize(len(genomes), self.workers)
        chunks = split(genomes, size)
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._pool is None:
            return self._map_inline(task, chunks, deadline)
        task_json = task.model_dump_json()
        futures = [self._pool.submit(_evaluate_chunk, task_json, chunk) for chunk in chunks]
        return self._collect(futures, deadline)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting work and release the worker processes.

        ``cancel_futures=True`` abandons the work in flight (Ctrl-C, SIGTERM, a dead worker): the
        workers are ended at once instead of finishing chunks nobody will read, and the pool is
        joined here, so none of its threads is left for the interpreter's exit handler, which could
        otherwise print a traceback after the run's one-line message.
        """
        with self._lock:
            self._shutdown = True
        if self._pool is None:
            return
        if cancel_futures:
            for process in list((self._pool._processes or {}).values()):
                with contextlib.suppress(OSError, ValueError):  # already gone
                    process.kill()
            wait = True
        self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)

    # helpers -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new evaluations after shutdown")

    @staticmethod
    def _map_inline(task: EvaluationTask, chunks: list, deadline: float | None) -> Iterator:
        for chunk in chunks:
            if deadline is not None and time.monotonic() > deadline:
                raise FuturesTimeout()
            yield from task.evaluate_batch(chunk)

    @staticmethod
    def _collect(futures: list[Future], deadline: float | None) -> Iterator:
        try:
            for future in futures:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                yield from future.result(remaining)
        finally:
            for future in futures:
                future.cancel()
