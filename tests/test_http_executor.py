"""HttpExecutor against real evaluator processes on loopback: same answers, faults, errors."""

from __future__ import annotations

import signal
import threading

import pytest
from support import Evaluator, free_port, gauss_genomes, start_evaluators

from evaluator import ControllerSpec, EvaluationTask
from ga.executors import LocalExecutor
from ga.http_executor import EvaluationError, HttpExecutor, NoEvaluatorAvailable
from game import DEFAULT_TRACK

pytestmark = pytest.mark.slow

TASK = EvaluationTask(track=DEFAULT_TRACK, max_frames=400, controller=ControllerSpec(kind="mlp"))


def genomes(n: int, seed: int = 3, task: EvaluationTask = TASK) -> list[list[float]]:
    return gauss_genomes(task.controller.genome_length(), n, seed)


@pytest.fixture(scope="module")
def fleet():
    evaluators = start_evaluators(2)
    yield evaluators
    for ev in evaluators:
        ev.stop()


@pytest.fixture(scope="module")
def urls(fleet):
    return [ev.url for ev in fleet]


@pytest.fixture(scope="module")
def reference():
    gs = genomes(36)
    return gs, TASK.evaluate_batch(gs)


@pytest.mark.parametrize("chunksize", [None, 1, 5, 100])
def test_map_gives_the_in_process_answers_in_order(urls, reference, chunksize):
    gs, expected = reference
    with HttpExecutor(urls) as ex:
        assert list(ex.map(TASK, gs, chunksize=chunksize)) == expected
        stats = ex.stats()
    assert stats["results"] == len(gs) and stats["retries"] == 0


def test_same_answers_as_the_local_executor(urls, reference):
    gs, _ = reference
    task = EvaluationTask(track="hairpins", max_frames=300, controller=ControllerSpec(kind="schedule"))
    gs = genomes(20, seed=5, task=task)
    with LocalExecutor(2) as local:
        expected = list(local.map(task, gs))
    with HttpExecutor(",".join(urls)) as ex:
        assert list(ex.map(task, gs)) == expected


def test_every_endpoint_gets_work(urls, reference):
    gs, expected = reference
    with HttpExecutor(urls) as ex:
        assert list(ex.map(TASK, gs, chunksize=1)) == expected
        completed = {url: e["completed"] for url, e in ex.stats()["endpoints"].items()}
    assert set(completed) == set(urls)
    assert all(n > 0 for n in completed.values()), completed
    assert sum(completed.values()) == len(gs)


def test_many_short_chunks_travel_packed_with_the_same_answers(urls, reference):
    gs, expected = reference
    with HttpExecutor(urls) as packed, HttpExecutor(urls, pack_requests=False) as single:
        assert list(packed.map(TASK, gs, chunksize=1)) == expected
        assert list(single.map(TASK, gs, chunksize=1)) == expected
        assert packed.stats()["requests"] < len(gs) // 2
        assert single.stats()["requests"] == len(gs)


def test_submit_context_manager_and_shutdown(urls, reference):
    gs, expected = reference
    with HttpExecutor(urls) as ex:
        futures = [ex.submit(TASK, g) for g in gs[:6]]
        assert [f.result(timeout=300) for f in futures] == expected[:6]
        assert list(ex.map(TASK, [], timeout=10)) == []
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(TASK, gs[0])
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.map(TASK, gs)


def test_only_declared_tasks_and_nothing_is_sent_otherwise(urls, reference):
    gs, _ = reference
    events: list = []
    with HttpExecutor(urls, on_event=lambda kind, info: events.append(kind)) as ex:
        with pytest.raises(TypeError, match="EvaluationTask"):
            ex.map(len, gs)
        with pytest.raises(TypeError, match="EvaluationTask"):
            ex.submit(lambda genome: 0.0, gs[0])
        with pytest.raises(TypeError, match="EvaluationTask"):
            ex.map(TASK.model_dump(), gs)
        with pytest.raises(TypeError, match="one iterable"):
            ex.map(TASK, gs, gs)
        with pytest.raises(ValueError, match=r"genomes\[1\]\[3\] is nan"):
            ex.map(TASK, [gs[0], gs[1][:3] + [float("nan")] + gs[1][4:]])
        with pytest.raises(ValueError, match=r"genomes\[0\]\[0\] is inf"):
            ex.submit(TASK, [float("inf")] + gs[0][1:])
        assert ex.stats()["requests"] == 0
    assert "dispatch" not in events


def test_a_refused_request_fails_without_retrying(urls):
    with HttpExecutor(urls) as ex:
        results = ex.map(TASK, [[0.0] * 5], chunksize=1)
        with pytest.raises(EvaluationError, match=r"HTTP 422: genomes\[0\]: expected 172 floats"):
            list(results)
        assert ex.stats()["retries"] == 0


def test_wrong_token_is_reported():
    (ev,) = start_evaluators(1, token="right")
    try:
        with HttpExecutor([ev.url], token="wrong") as ex, pytest.raises(EvaluationError, match="HTTP 401"):
            list(ex.map(TASK, genomes(2)))
        with HttpExecutor([ev.url], token="right") as ex:
            assert list(ex.map(TASK, genomes(2))) == TASK.evaluate_batch(genomes(2))
    finally:
        ev.stop()


def test_no_reachable_evaluator_is_a_clear_error():
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    with (
        HttpExecutor(dead, unreachable_timeout=1.0, probe_timeout=1.0) as ex,
        pytest.raises(NoEvaluatorAvailable) as info,
    ):
        list(ex.map(TASK, genomes(3)))
    message = str(info.value)
    assert "no evaluator reachable" in message
    for url in dead:
        assert url in message
    assert "cannot connect" in message


def _map_killing_a_third_evaluator(fleet, gs, chunksize: int, kill_when) -> tuple[list, dict, str]:
    """Map over the fleet plus a victim evaluator that is SIGKILLed the first time
    ``kill_when(kind, info)`` holds for one of its events; returns (results, stats, victim url)."""
    (victim,) = start_evaluators(1)
    killed = threading.Event()

    def on_event(kind: str, info: dict) -> None:
        if info.get("endpoint") == victim.url and not killed.is_set() and kill_when(kind, info):
            victim.kill()
            killed.set()

    try:
        urls = [fleet[0].url, victim.url, fleet[1].url]
        with HttpExecutor(urls, on_event=on_event) as ex:
            results = list(ex.map(TASK, gs, chunksize=chunksize))
            stats = ex.stats()
        assert killed.is_set()
        return results, stats, victim.url
    finally:
        victim.stop()


def test_sigkill_of_one_of_three_evaluators_mid_generation(fleet, reference):
    """The victim is killed while it has a request in flight: its chunks go elsewhere."""
    gs, expected = reference
    # a result from the victim while another of its requests is still in flight
    results, stats, victim = _map_killing_a_third_evaluator(
        fleet, gs, 2, lambda kind, info: kind == "result" and info["inflight"] >= 1
    )
    assert results == expected
    assert stats["results"] == len(gs)  # every genome answered exactly once
    assert stats["retries"] >= 1
    assert stats["endpoints"][victim]["state"] == "benched"


def test_sigkill_of_an_evaluator_with_a_pack_of_chunks_in_flight(fleet, reference):
    """Killed as a request carrying several chunks is sent to it: every chunk of the pack is retried."""
    gs, expected = reference
    results, stats, _ = _map_killing_a_third_evaluator(
        fleet, gs, 1, lambda kind, info: kind == "dispatch" and info["size"] > 1
    )
    assert results == expected
    assert stats["results"] == len(gs) and stats["retries"] >= 1


def test_a_hanging_evaluator_is_detected_and_its_work_retried(fleet, reference):
    """SIGSTOP freezes the victim (server and workers): its requests never answer; they are
    retried elsewhere once it stops answering its health check."""
    gs, expected = reference
    (victim,) = start_evaluators(1)
    frozen = threading.Event()

    def on_event(kind: str, info: dict) -> None:
        if kind == "dispatch" and info["endpoint"] == victim.url and victim_results and not frozen.is_set():
            victim.signal(signal.SIGSTOP)
            frozen.set()
        if kind == "result" and info["endpoint"] == victim.url:
            victim_results.append(info)

    victim_results: list = []
    back = threading.Event()

    def on_event_and_return(kind: str, info: dict) -> None:
        on_event(kind, info)
        if kind == "endpoint_up" and info["endpoint"] == victim.url and frozen.is_set():
            back.set()

    try:
        urls = [fleet[0].url, victim.url, fleet[1].url]
        with HttpExecutor(
            urls, on_event=on_event_and_return, heartbeat_interval=0.5, heartbeat_timeout=2.0, bench_max=1.0
        ) as ex:
            results = list(ex.map(TASK, gs, chunksize=2))
            stats = ex.stats()
            assert stats["endpoints"][victim.url]["state"] == "benched"
            # thawed, the benched evaluator is probed back into service
            victim.signal(signal.SIGCONT)
            assert back.wait(60)
            assert list(ex.map(TASK, gs, chunksize=1)) == expected
            assert ex.stats()["endpoints"][victim.url]["completed"] > stats["endpoints"][victim.url]["completed"]
        assert frozen.is_set()
        assert results == expected
        assert stats["results"] == len(gs)
        assert stats["retries"] >= 1
    finally:
        victim.signal(signal.SIGCONT)
        victim.stop()


def test_503_over_capacity_is_retried_not_failed():
    """The executor is allowed more requests than the evaluator takes: the extra ones get 503 +
    Retry-After and are sent again later; every answer still arrives, in order."""
    (ev,) = start_evaluators(1, max_inflight=1)
    workers = ev.workers()

    def thaw() -> None:
        for w in workers:
            w.send_signal(signal.SIGCONT)

    try:
        gs = genomes(12)  # enough chunks for the executor to queue requests behind running ones
        rejected = threading.Event()
        on_event = lambda kind, info: rejected.set() if kind == "rejected" else None  # noqa: E731
        with HttpExecutor([ev.url], max_inflight_per_endpoint=3, on_event=on_event) as ex:
            try:
                for w in workers:  # the first request stays in flight until the workers resume
                    w.send_signal(signal.SIGSTOP)
                results = ex.map(TASK, gs, chunksize=1)
                assert rejected.wait(60)
            finally:
                thaw()
            assert list(results) == TASK.evaluate_batch(gs)
            assert ex.stats()["retries"] == 0  # a 503 is not a fault
    finally:
        thaw()
        ev.stop()


def test_a_request_that_times_out_is_retried_elsewhere(fleet, reference):
    """The victim's event loop answers its health checks but its worker is frozen: the request
    timeout (not the health check) sends its chunks elsewhere."""
    gs, expected = reference
    (victim,) = start_evaluators(1)
    workers = victim.workers()
    try:
        for w in workers:
            w.send_signal(signal.SIGSTOP)
        urls = [fleet[0].url, victim.url, fleet[1].url]
        with HttpExecutor(urls, request_timeout=3.0, heartbeat_interval=0.5) as ex:
            assert list(ex.map(TASK, gs, chunksize=3)) == expected
            stats = ex.stats()
        assert stats["results"] == len(gs)
        assert stats["retries"] >= 1
        assert "timed out" in stats["endpoints"][victim.url]["last_error"]
        assert stats["endpoints"][victim.url]["completed"] == 0
    finally:
        for w in workers:
            w.send_signal(signal.SIGCONT)
        victim.stop()


def test_work_waits_for_an_evaluator_that_comes_up_late():
    """Nothing listens yet when the map starts; the evaluator is started afterwards and the
    executor's probes find it before the unreachable deadline."""
    port = free_port()
    gs = genomes(6)
    with HttpExecutor([f"http://127.0.0.1:{port}"], bench_max=0.5, unreachable_timeout=300) as ex:
        results = ex.map(TASK, gs)
        late = Evaluator(port=port)
        try:
            late.wait_ready()
            assert list(results) == TASK.evaluate_batch(gs)
        finally:
            late.stop()


def test_a_large_batch_in_one_request(urls):
    """600 genomes in one request: the job and its answer are many pipe buffers long between the
    evaluator and its worker."""
    task = EvaluationTask(track=DEFAULT_TRACK, max_frames=3, controller=ControllerSpec(kind="mlp"))
    gs = genomes(600, seed=21, task=task)
    with HttpExecutor(urls) as ex:
        assert list(ex.map(task, gs, chunksize=600)) == task.evaluate_batch(gs)
        assert list(ex.map(task, gs, chunksize=300)) == task.evaluate_batch(gs)
        assert ex.stats()["retries"] == 0


def test_packs_stay_within_the_evaluators_body_limit():
    """200 waiting tasks would pack ~50 genomes (~200 kB) into one request; this evaluator takes 64 kB."""
    task = EvaluationTask(track=DEFAULT_TRACK, max_frames=5, controller=ControllerSpec(kind="schedule"))
    gs = genomes(200, seed=8, task=task)
    (ev,) = start_evaluators(1, args=("--max-body-bytes", "65536"))
    try:
        with HttpExecutor([ev.url]) as ex:
            assert list(ex.map(task, gs, chunksize=1)) == task.evaluate_batch(gs)
            stats = ex.stats()
        assert stats["retries"] == 0 and stats["requests"] < len(gs)
    finally:
        ev.stop()
