"""The HTTP map's dispatch policy on its own: no sockets, no event loop, a clock that is just a number."""

from __future__ import annotations

import concurrent.futures as cf
import random

import pytest

from ga.fleet.endpoint import Endpoint, EndpointState, IllegalTransition
from ga.fleet.errors import EvaluationError, NoEvaluatorAvailable
from ga.fleet.scheduler import PACK_SPREAD, Chunk, Policy, Scheduler

INFO = {"capacity": 4, "workers": 2, "max_batch": 100, "max_body_bytes": 1 << 20}


def scheduler(urls=("http://a", "http://b"), info=INFO, events=None, **policy) -> Scheduler:
    """A scheduler whose endpoints all answered their first probe with ``info``."""
    emit = (lambda kind, **i: events.append((kind, i))) if events is not None else (lambda kind, **i: None)
    s = Scheduler(Policy(**policy), emit=emit, jitter=random.Random(0), source="test list")
    to_probe, _ = s.set_endpoints(list(urls), now=0.0)
    for ep in to_probe:
        s.probe_succeeded(ep, info)
    return s


def chunks(n: int, size: int = 1, task: str = "{}") -> list[Chunk]:
    return [Chunk(task, [[float(i)]] * size) for i in range(n)]


def test_a_generation_is_dealt_one_chunk_per_worker_to_the_least_loaded_endpoint():
    s = scheduler()
    s.enqueue(chunks(4))
    plan = s.plan(now=1.0)
    # 4 chunks for 4 workers: no pipelining, so one request per worker, alternating endpoints
    assert [ep.url for ep, _ in plan.sends] == ["http://a", "http://b", "http://a", "http://b"]
    assert not s.queue
    assert all(ep.inflight == 2 for ep in s.endpoints.values())


def test_no_free_worker_keeps_the_rest_queued_in_order():
    s = scheduler()
    todo = chunks(6)
    s.enqueue(todo)
    assert len(s.plan(now=1.0).sends) == 4
    assert list(s.queue) == todo[4:]
    assert s.plan(now=1.0).sends == []


def test_many_waiting_chunks_are_pipelined_and_packed():
    s = scheduler()
    s.enqueue(chunks(200))
    plan = s.plan(now=1.0)
    # pipelined: each endpoint up to its capacity; packed: a request carries several chunks
    assert sorted(ep.inflight for ep in s.endpoints.values()) == [4, 4]
    first_pack = plan.sends[0][1]
    assert first_pack.parts is not None and len(first_pack.parts) == 1 + 199 // (PACK_SPREAD * 4)
    assert first_pack.races == [1] * len(first_pack.parts)
    sent = sum(len(c.members) for _, c in plan.sends)
    assert sent + len(s.queue) == 200


def test_packing_off_sends_every_chunk_alone():
    s = scheduler(pack_requests=False)
    s.enqueue(chunks(200))
    assert all(c.parts is None for _, c in s.plan(now=1.0).sends)


def test_a_pack_stays_within_the_body_limit():
    s = scheduler(info={**INFO, "max_body_bytes": 4096})
    s.enqueue(chunks(200, size=1, task="t"))
    for _, chunk in s.plan(now=1.0).sends:
        assert len(chunk.genomes) <= 4096 // (2 * 25)


def test_results_of_a_pack_reach_each_caller_in_order():
    s = scheduler()
    todo = chunks(200)
    s.enqueue(todo)
    ep, pack = s.plan(now=1.0).sends[0]
    s.delivered(ep, pack, [f"r{i}" for i in range(len(pack.genomes))])
    assert [p.future.result(0) for p in pack.parts] == [[f"r{i}"] for i in range(len(pack.parts))]
    assert s.stats["results"] == len(pack.genomes) and ep.completed == len(pack.genomes)


def test_a_failed_chunk_is_retried_elsewhere_after_a_backoff():
    events: list = []
    s = scheduler(events=events, backoff_base=0.5)
    (chunk,) = chunks(1)
    s.enqueue([chunk])
    ((ep, sent),) = s.plan(now=1.0).sends
    assert s.endpoint_failed(ep, "connection reset", now=1.0)
    s.retry(ep, sent, "connection reset", now=1.0)
    assert s.finished(ep) is False
    assert ep.state is EndpointState.BENCHED
    assert 1.25 <= chunk.not_before <= 1.5  # 0.5 s x jitter in [0.5, 1]
    waiting = s.plan(now=1.1)
    assert waiting.sends == [] and waiting.next_event == pytest.approx(chunk.not_before - 1.1)
    ((other, again),) = s.plan(now=2.0).sends
    assert again is chunk and other is not ep
    assert [k for k, _ in events].count("endpoint_down") == 1


def test_a_chunk_avoids_the_endpoint_it_failed_on_while_another_is_up():
    s = scheduler()
    a, b = s.endpoints.values()
    (chunk,) = chunks(1)
    chunk.avoid.add(a.url)
    b.inflight = b.limit  # b is busy: the chunk waits for b rather than going back to a
    s.enqueue([chunk])
    assert s.plan(now=1.0).sends == []
    b.inflight = 0
    ((ep, _),) = s.plan(now=1.0).sends
    assert ep is b


def test_a_chunk_fails_for_good_after_max_attempts():
    s = scheduler(max_attempts=2)
    (chunk,) = chunks(1)
    ep = s.endpoints["http://a"]
    chunk.started = True
    chunk.future.set_running_or_notify_cancel()
    s.retry(ep, chunk, "HTTP 500: boom", now=0.0)
    assert not chunk.future.done()
    s.retry(ep, chunk, "HTTP 500: boom", now=0.0)
    with pytest.raises(EvaluationError, match="failed 2 times: http://a: HTTP 500: boom"):
        chunk.future.result(0)


def test_503_rests_the_endpoint_and_keeps_the_chunk_first_in_line():
    s = scheduler(urls=("http://a",))
    (ep,) = s.endpoints.values()
    first, second = chunks(2)
    s.enqueue([first, second])
    sends = s.plan(now=1.0).sends
    s.rejected(ep, first, retry_after=2.0, now=1.0)
    s.finished(ep)
    assert s.queue[0] is first and s.stats["retries"] == 0
    assert ep.cooldown_until == 3.0
    assert len(sends) == 2 and s.plan(now=2.0).sends == []
    s.delivered(ep, second, ["done"])
    s.finished(ep)
    assert s.plan(now=3.0).sends == [(ep, first)]


def test_cancelled_chunks_are_never_sent():
    s = scheduler()
    todo = chunks(3)
    todo[1].future.cancel()
    s.enqueue(todo)
    assert [c for _, c in s.plan(now=1.0).sends] == [todo[0], todo[2]]


def test_no_endpoint_up_fails_waiting_work_after_the_deadline_naming_every_endpoint():
    s = Scheduler(Policy(unreachable_timeout=10.0), source="test list")
    to_probe, _ = s.set_endpoints(["http://a", "http://b"], now=0.0)
    for ep in to_probe:
        s.probe_failed(ep, "cannot connect (refused)", now=0.0)
    (chunk,) = chunks(1)
    s.enqueue([chunk])
    assert s.plan(now=1.0).next_event == 1.0
    assert s.plan(now=5.0).next_event == 1.0 and not chunk.future.done()
    s.plan(now=11.5)
    with pytest.raises(NoEvaluatorAvailable, match=r"http://a \(cannot connect \(refused\)\), http://b"):
        chunk.future.result(0)


def test_chunk_size_follows_the_fleet_and_its_batch_limit():
    s = scheduler(info={**INFO, "max_batch": 10})
    assert s.chunk_size(64, None) == 8  # 64 genomes / (4 workers x 2 chunks)
    assert s.chunk_size(400, None) == 10
    assert s.chunk_size(64, 3) == 3
    with pytest.raises(ValueError, match="chunksize"):
        s.chunk_size(64, 0)


def test_endpoints_move_only_along_the_allowed_transitions():
    ep = Endpoint("http://a")
    with pytest.raises(IllegalTransition, match="probing -> benched"):
        ep.move(EndpointState.BENCHED)
    ep.move(EndpointState.UP)
    ep.move(EndpointState.BENCHED)
    ep.move(EndpointState.GONE)
    with pytest.raises(IllegalTransition):
        ep.move(EndpointState.UP)


def test_an_endpoint_no_longer_discovered_is_forgotten_once_idle():
    events: list = []
    s = scheduler(events=events)
    a = s.endpoints["http://a"]
    a.inflight = 1
    to_probe, to_forget = s.set_endpoints(["http://b"], now=1.0)
    assert to_probe == [] and to_forget == [] and a.state is EndpointState.GONE
    assert ("endpoint_removed", {"endpoint": "http://a"}) in events
    assert s.finished(a) is True and s.forget(a) and "http://a" not in s.endpoints
    to_probe, _ = s.set_endpoints(["http://a", "http://b"], now=2.0)
    assert [ep.url for ep in to_probe] == ["http://a"]


def test_a_failing_endpoint_is_benched_with_a_growing_delay():
    s = scheduler(bench_max=1.0)
    ep = s.endpoints["http://a"]
    assert s.endpoint_failed(ep, "boom", now=0.0)
    assert not s.endpoint_failed(ep, "again", now=0.0)  # already benched: counted once
    assert ep.last_error == "again" and s.stats["endpoint_failures"] == 1
    delays = []
    for _ in range(5):
        s.probe_failed(ep, "still down", now=0.0)
        delays.append(ep.retry_at)
    assert delays[0] < delays[2] and max(delays) <= 1.0


def test_cancel_waiting_cancels_every_caller_not_yet_sent():
    s = scheduler()
    todo = chunks(3)
    s.enqueue(todo)
    s.cancel_waiting()
    assert all(c.future.cancelled() for c in todo) and s.idle
    with pytest.raises(cf.CancelledError):
        todo[0].future.result(0)
