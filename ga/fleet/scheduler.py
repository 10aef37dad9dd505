"""The HTTP map's dispatch policy: which chunk goes to which evaluator, when, and what a failure costs.

Everything here is synchronous and takes the time as an argument: no sockets, no event loop, no
threads. :class:`ga.http_executor.HttpExecutor` calls :meth:`Scheduler.plan` whenever something
changed and sends what it returns; it reports every outcome back (:meth:`Scheduler.delivered`,
:meth:`Scheduler.rejected`, :meth:`Scheduler.retry`, ...). Tests drive the same calls with a fake clock.

Policy
    * The next chunk goes to the least loaded ``UP`` endpoint, never to one it already failed on
      while another endpoint is up.
    * While many chunks wait (more than ``PIPELINE_DEPTH`` per worker) an endpoint gets up to its
      capacity of requests in flight, and one request carries several chunks (:meth:`Scheduler.pack`);
      otherwise one request per worker, so chunks go to whichever worker is free first.
    * A failed chunk is queued again at the front after an exponential backoff with jitter, and fails
      for good after ``max_attempts``. A ``503`` is back-pressure, not a failure: the endpoint rests
      for ``Retry-After`` seconds and the chunk goes back to the front of the queue.
    * An endpoint that fails is benched; its probes back off exponentially up to ``bench_max``.
    * With work waiting and no endpoint up for ``unreachable_timeout`` seconds, waiting chunks fail
      with :class:`NoEvaluatorAvailable`, naming every endpoint and its last error.
    * Every result future is completed exactly once: nothing is lost or counted twice.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ga.contract import default_chunksize
from ga.fleet.endpoint import DEFAULT_MAX_BATCH, Endpoint, EndpointState
from ga.fleet.errors import EvaluationError, NoEvaluatorAvailable

log = logging.getLogger("ga.http_executor")

PIPELINE_DEPTH = 3
"""Queue a second request on a busy evaluator only while more than this many chunks per worker wait."""
PACK_SPREAD = 4
"""While chunks are pipelined, a request carries about 1/(PACK_SPREAD x workers) of the waiting chunks."""
GENE_JSON_BYTES = 25
"""Upper bound of one gene's JSON size, to keep packs well within an evaluator's body limit."""

UP = EndpointState.UP


@dataclass(eq=False)
class Chunk:
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
    parts: list[Chunk] | None = None

    @property
    def members(self) -> Sequence[Chunk]:
        """The chunks whose callers wait on this one (itself, or the parts of a pack)."""
        return self.parts or (self,)

    @property
    def races(self) -> list[int] | None:
        """Sizes of the races in a pack (``None``: the whole chunk is one race)."""
        return None if self.parts is None else [len(p.genomes) for p in self.parts]


@dataclass(frozen=True)
class Policy:
    """The scheduler's knobs (see :class:`ga.http_executor.HttpExecutor` for their meaning)."""

    unreachable_timeout: float = 120.0
    backoff_base: float = 0.05
    backoff_max: float = 5.0
    bench_max: float = 10.0
    max_attempts: int = 10
    max_inflight_per_endpoint: int | None = None
    chunks_per_worker: int = 2
    pack_requests: bool = True


@dataclass
class Plan:
    """What :meth:`Scheduler.plan` decided: requests to send now, and when to ask again."""

    sends: list[tuple[Endpoint, Chunk]]
    next_event: float


def set_future(future: cf.Future, result: Any = None, exc: BaseException | None = None) -> None:
    """Complete ``future`` unless it is done already (the caller may cancel it at any time)."""
    if future.done():
        return
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except cf.InvalidStateError:  # cancelled meanwhile by the caller
        pass


class Scheduler:
    """The queue of chunks and the endpoints' records, and every decision about them.

    ``emit(kind, info)`` reports events (``dispatch``, ``result``, ``retry``, ``rejected``,
    ``endpoint_up``, ``endpoint_down``, ``endpoint_removed``). ``jitter`` draws the backoff jitter: its own
    generator, because the GA's results depend on the global ``random`` stream (DEAP uses it), which must
    not shift with how many retries a flaky fleet needed.
    """

    def __init__(
        self,
        policy: Policy,
        emit: Callable[..., None] = lambda kind, **info: None,
        jitter: random.Random | None = None,
        source: str = "",
    ) -> None:
        self.policy = policy
        self.emit = emit
        self.jitter = jitter or random.Random()
        self.source = source
        """Where endpoints come from (for error messages)."""
        self.discovery_error = ""
        self.endpoints: dict[str, Endpoint] = {}
        self.queue: deque[Chunk] = deque()
        self.stats = {"requests": 0, "results": 0, "retries": 0, "rejected_503": 0, "endpoint_failures": 0}
        self._unreachable_since: float | None = None

    # ---- the queue -------------------------------------------------------------------------------
    def enqueue(self, chunks: Iterable[Chunk]) -> None:
        self.queue.extend(chunks)

    @property
    def idle(self) -> bool:
        """Nothing waiting and nothing in flight."""
        return not self.queue and not any(ep.inflight for ep in self.endpoints.values())

    def up(self) -> list[Endpoint]:
        return [ep for ep in self.endpoints.values() if ep.state is UP]

    def chunk_size(self, n: int, chunksize: int | None) -> int:
        """Genomes per chunk: :func:`ga.contract.default_chunksize` for the workers of the fleet, never
        more than an evaluator takes in one request."""
        eps = self.up()
        max_batch = min((ep.max_batch for ep in eps), default=DEFAULT_MAX_BATCH)
        if chunksize is None:
            workers = max(1, sum(ep.workers for ep in eps)) if eps else 2
            chunksize = default_chunksize(n, workers, self.policy.chunks_per_worker)
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        return max(1, min(int(chunksize), max_batch))

    # ---- what to send ----------------------------------------------------------------------------
    def plan(self, now: float) -> Plan:
        """Take chunks off the queue for free endpoints; ``next_event``: seconds until a time-based
        change (a backoff or cooldown ending, the unreachable deadline)."""
        sends: list[tuple[Endpoint, Chunk]] = []
        next_event = self._check_reachable(now)
        up = self.up()
        if not up or not self.queue:
            return Plan(sends, next_event)
        kept: deque[Chunk] = deque()
        workers = sum(ep.workers for ep in up)
        while self.queue:
            pipeline = len(self.queue) > PIPELINE_DEPTH * workers
            chunk = self.queue.popleft()
            if chunk.not_before > now:
                next_event = min(next_event, chunk.not_before - now)
                kept.append(chunk)
                continue
            ep = self.pick(chunk, now, pipeline)
            if ep is None:
                if not any(self._free(e, now, pipeline) for e in self.endpoints.values()):
                    self.queue.appendleft(chunk)
                    break  # no free slot anywhere: keep the rest in order
                kept.append(chunk)
                continue
            if not self._start(chunk):
                continue  # every genome of the chunk was cancelled
            if pipeline and self.policy.pack_requests:
                chunk = self.pack(chunk, ep, now, workers)
            ep.inflight += 1
            self.stats["requests"] += 1
            sends.append((ep, chunk))
            self.emit("dispatch", endpoint=ep.url, size=len(chunk.genomes), inflight=ep.inflight)
        self.queue.extendleft(reversed(kept))
        for ep in up:
            if ep.cooldown_until > now:
                next_event = min(next_event, ep.cooldown_until - now)
        return Plan(sends, max(next_event, 0.001))

    def _check_reachable(self, now: float) -> float:
        """Fail the waiting chunks once no endpoint has been up for ``unreachable_timeout``."""
        if not self.queue or self.up():
            self._unreachable_since = None
            return 1.0
        if self._unreachable_since is None:
            self._unreachable_since = now
        waited = now - self._unreachable_since
        timeout = self.policy.unreachable_timeout
        if waited >= timeout:
            self.fail_waiting(NoEvaluatorAvailable(self.unreachable_message(waited)))
            return 1.0
        return min(1.0, timeout - waited)

    @staticmethod
    def slots(ep: Endpoint, pipeline: bool) -> int:
        """Requests ``ep`` may have in flight: its capacity while much work is waiting (a request
        queued behind each running one hides the round trip), else one per worker, so that chunks
        go to whichever worker is free first instead of queueing behind a slow one.

        "Much" is more than ``PIPELINE_DEPTH`` chunks per worker: a GA generation (two or three chunks
        per worker) is dealt greedily, since its chunks' lap costs vary a lot and a round trip is short
        next to a chunk; thousands of short tasks are pipelined."""
        return ep.limit if pipeline else min(ep.limit, ep.workers)

    def _free(self, ep: Endpoint, now: float, pipeline: bool) -> bool:
        return ep.state is UP and ep.inflight < self.slots(ep, pipeline) and now >= ep.cooldown_until

    def pick(self, chunk: Chunk, now: float, pipeline: bool) -> Endpoint | None:
        """The least loaded free endpoint; one the chunk failed on only if no other is up."""
        best: Endpoint | None = None
        best_key: tuple | None = None
        for ep in self.endpoints.values():
            if not self._free(ep, now, pipeline):
                continue
            key = (ep.url in chunk.avoid, ep.inflight / ep.limit, -ep.limit)
            if best_key is None or key < best_key:
                best, best_key = ep, key
        if best is not None and best.url in chunk.avoid:
            others_up = any(ep.state is UP and ep.url not in chunk.avoid for ep in self.endpoints.values())
            if others_up:
                return None
        return best

    def pack(self, first: Chunk, ep: Endpoint, now: float, workers: int) -> Chunk:
        """``first`` and the chunks queued behind it, as one request (each chunk still its own race).

        Guided self-scheduling: a pack takes about 1/(PACK_SPREAD x workers) of the waiting chunks, so
        thousands of short tasks do not each pay a round trip, and packs shrink to single chunks as the
        queue drains, so the last requests stay short and the endpoints finish together. Retried chunks
        travel alone.
        """
        if first.parts is not None or first.attempts:
            return first
        want = len(self.queue) // (PACK_SPREAD * workers)
        max_genomes = min(ep.max_batch, ep.max_body_bytes // (2 * GENE_JSON_BYTES * max(1, len(first.genomes[0]))))
        parts, size = [first], len(first.genomes)
        while want > 0 and self.queue:
            nxt = self.queue[0]
            if (
                nxt.started
                or nxt.task_json != first.task_json
                or nxt.not_before > now
                or size + len(nxt.genomes) > max_genomes
            ):
                break
            self.queue.popleft()
            if self._start(nxt):  # (else cancelled by its caller: dropped)
                parts.append(nxt)
                size += len(nxt.genomes)
                want -= 1
        if len(parts) == 1:
            return first
        return Chunk(first.task_json, [g for p in parts for g in p.genomes], started=True, parts=parts)

    @staticmethod
    def _start(chunk: Chunk) -> bool:
        """Mark the chunk's future running; False if its caller cancelled it before it was sent."""
        if not chunk.started:
            chunk.started = True
            if not chunk.future.set_running_or_notify_cancel():
                return False
        return True

    # ---- outcomes --------------------------------------------------------------------------------
    def delivered(self, ep: Endpoint, chunk: Chunk, results: Sequence[Any]) -> None:
        """``results`` (one per genome, in order) answered ``chunk``."""
        start = 0
        for part in chunk.members:
            end = start + len(part.genomes)
            set_future(part.future, results[start] if part.single else list(results[start:end]))
            start = end
        ep.failures = 0
        ep.completed += len(results)
        self.stats["results"] += len(results)
        self.emit("result", endpoint=ep.url, size=len(results), inflight=ep.inflight - 1)

    def rejected(self, ep: Endpoint, chunk: Chunk, retry_after: float, now: float) -> None:
        """A ``503``: the endpoint rests for ``retry_after`` (at most 30 s); the chunk waits in front."""
        self.stats["rejected_503"] += 1
        ep.cooldown_until = now + min(max(retry_after, 0.0), 30.0)
        self.queue.appendleft(chunk)
        self.emit("rejected", endpoint=ep.url, retry_after=retry_after, size=len(chunk.genomes))

    def retry(self, ep: Endpoint, chunk: Chunk, reason: str, now: float) -> None:
        """``chunk`` failed on ``ep``: queue it again after a backoff, or fail it after too many attempts."""
        self.stats["retries"] += 1
        chunk.attempts += 1
        chunk.errors.append(f"{ep.url}: {reason}")
        chunk.avoid.add(ep.url)
        self.emit("retry", endpoint=ep.url, reason=reason, size=len(chunk.genomes))
        if chunk.attempts >= self.policy.max_attempts:
            self.fail(
                chunk,
                EvaluationError(
                    f"a chunk of {len(chunk.genomes)} genomes failed {chunk.attempts} times: "
                    + "; ".join(chunk.errors[-5:])
                ),
            )
            return
        delay = min(self.policy.backoff_max, self.policy.backoff_base * 2 ** (chunk.attempts - 1))
        chunk.not_before = now + delay * self.jitter.uniform(0.5, 1.0)
        self.queue.appendleft(chunk)

    def fail(self, chunk: Chunk, exc: BaseException) -> None:
        """Fail every caller waiting on ``chunk`` (one whose future was cancelled stays cancelled)."""
        for part in chunk.members:
            if part.started or part.future.set_running_or_notify_cancel():
                set_future(part.future, exc=exc)
            part.started = True

    def fail_waiting(self, exc: BaseException) -> None:
        while self.queue:
            self.fail(self.queue.popleft(), exc)

    def cancel_waiting(self) -> None:
        """Cancel the callers of every chunk not yet sent (``shutdown(cancel_futures=True)``)."""
        for chunk in self.queue:
            for part in chunk.members:
                part.future.cancel()
        self.queue.clear()

    def finished(self, ep: Endpoint) -> bool:
        """A request to ``ep`` ended (whatever its outcome); True if ``ep`` is gone and now idle."""
        ep.inflight -= 1
        return ep.state is EndpointState.GONE and ep.inflight == 0

    # ---- endpoint health -------------------------------------------------------------------------
    def endpoint_failed(self, ep: Endpoint, reason: str, now: float) -> bool:
        """A request or health check on ``ep`` failed: bench it. True if it was up (now benched)."""
        ep.last_error = reason
        if ep.state is not UP:
            return False
        self.stats["endpoint_failures"] += 1
        ep.move(EndpointState.BENCHED)
        ep.failures += 1
        ep.retry_at = now + self.bench_delay(ep)
        log.warning("evaluator %s benched: %s", ep.url, reason)
        self.emit("endpoint_down", endpoint=ep.url, reason=reason)
        return True

    def bench_delay(self, ep: Endpoint) -> float:
        return min(self.policy.bench_max, 0.25 * 2 ** max(0, ep.failures - 1)) * self.jitter.uniform(0.75, 1.0)

    def probe_failed(self, ep: Endpoint, reason: str, now: float) -> None:
        if not ep.probed_once:  # a change of state (unknown -> unreachable): said once, not per retry
            log.warning("evaluator %s unreachable: %s (retrying)", ep.url, reason)
            self.emit("endpoint_unreachable", endpoint=ep.url, reason=reason)
        ep.last_error = reason
        ep.failures += 1
        ep.retry_at = now + self.bench_delay(ep)
        ep.probed_once = True

    def probe_succeeded(self, ep: Endpoint, info: dict[str, Any]) -> None:
        """``ep`` answered ``/readyz`` and ``/v1/info``: it takes work."""
        ep.apply_info(info, self.policy.max_inflight_per_endpoint)
        ep.move(UP)
        ep.cooldown_until = 0.0
        ep.probed_once = True
        log.info("evaluator %s up (capacity %d)", ep.url, ep.limit)
        self.emit("endpoint_up", endpoint=ep.url, capacity=ep.limit)

    def all_probed(self) -> bool:
        """Every known endpoint answered or failed a probe at least once."""
        return all(ep.probed_once for ep in self.endpoints.values())

    # ---- discovery -------------------------------------------------------------------------------
    def set_endpoints(self, urls: Sequence[str], now: float) -> tuple[list[Endpoint], list[Endpoint]]:
        """The discovered endpoints are ``urls``: returns (endpoints to probe, endpoints to forget now).

        New and rediscovered endpoints are probed from ``now``; ones no longer listed are ``GONE`` and
        forgotten once their requests in flight have ended."""
        wanted = dict.fromkeys(urls)
        to_probe: list[Endpoint] = []
        for url in wanted:
            ep = self.endpoints.get(url)
            if ep is None:
                ep = self.endpoints[url] = Endpoint(url=url, retry_at=now)
                to_probe.append(ep)
            elif ep.state is EndpointState.GONE:
                ep.move(EndpointState.PROBING)
                ep.retry_at = now
                to_probe.append(ep)
        to_forget: list[Endpoint] = []
        for url, ep in list(self.endpoints.items()):
            if url not in wanted and ep.state is not EndpointState.GONE:
                ep.move(EndpointState.GONE)
                log.info("evaluator %s no longer discovered", url)
                self.emit("endpoint_removed", endpoint=url)
                if ep.inflight == 0:
                    to_forget.append(ep)
        return to_probe, to_forget

    def forget(self, ep: Endpoint) -> bool:
        """Drop ``ep``'s record; False if it was replaced or dropped already."""
        if self.endpoints.get(ep.url) is not ep:
            return False
        del self.endpoints[ep.url]
        return True

    # ---- reporting -------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        out: dict = dict(self.stats)
        out["endpoints"] = {
            url: {"state": ep.state.value, "completed": ep.completed, "limit": ep.limit, "last_error": ep.last_error}
            for url, ep in list(self.endpoints.items())
        }
        return out

    def unreachable_message(self, waited: float) -> str:
        eps = list(self.endpoints.values())
        tried = [f"{ep.url} ({ep.last_error or ep.state.value})" for ep in eps if ep.state is not EndpointState.GONE]
        if not tried:
            gone = [ep.url for ep in eps]
            extra = f"; no longer listed: {', '.join(gone)}" if gone else ""
            err = f" ({self.discovery_error})" if self.discovery_error else ""
            return f"no evaluator reachable for {waited:.0f} s: {self.source} lists no endpoint{err}{extra}"
        return f"no evaluator reachable for {waited:.0f} s; endpoints tried (from {self.source}): " + ", ".join(tried)
