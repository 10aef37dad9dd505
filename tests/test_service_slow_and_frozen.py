"""The evaluator against slow clients and a frozen simulation worker (real processes on loopback)."""

from __future__ import annotations

import json
import signal
import socket

import httpx
import psutil
import pytest
from support import SERVICE_TASK as TASK
from support import poll, start_evaluators
from support import service_body as body
from support import service_genomes as genomes

from evaluator import ControllerSpec, EvaluationTask, TrackData

pytestmark = pytest.mark.slow

CHUNKED_HEAD = (b"POST /v1/evaluations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")


def test_slow_uploads_do_not_take_the_slots_and_are_timed_out():
    (ev,) = start_evaluators(1, max_inflight=2, args=("--body-timeout", "3", "--header-timeout", "3"))
    try:
        slow = [socket.create_connection(("127.0.0.1", ev.port), timeout=30) for _ in range(2)]
        for s in slow:  # two uploads that never end, as many as the capacity
            s.sendall(CHUNKED_HEAD + b"5\r\n{\"tas\r\n")
        with httpx.Client(base_url=ev.url, timeout=120) as c:
            r = c.post("/v1/evaluations", json=body())
            assert r.status_code == 200, r.text  # the slots are taken only once a body is complete
            assert r.json()["results"] == [x.to_dict() for x in TASK.evaluate_batch(genomes(2))]
        for s in slow:
            assert s.recv(4096).startswith(b"HTTP/1.1 408"), "slow bodies are cut off"
            s.close()
        with socket.create_connection(("127.0.0.1", ev.port), timeout=30) as s:
            s.sendall(b"POST /v1/evaluations HTTP/1.1\r\nHost: x\r\n")  # headers that never end
            assert s.recv(4096).startswith(b"HTTP/1.1 408")
    finally:
        ev.stop()


def test_trickling_uploads_cost_only_themselves():
    """Eight uploads trickling a byte at a time (four times the capacity of one worker) used to take every
    read slot: each other request got 503 for the whole body timeout. Now a body must keep a minimum rate;
    the trickles are cut with 408 on their own and never stand in anyone's way."""
    (ev,) = start_evaluators(1)
    slow = [socket.create_connection(("127.0.0.1", ev.port), timeout=60) for _ in range(8)]
    try:
        for s in slow:
            s.sendall(CHUNKED_HEAD + b"1\r\n{\r\n")
        with httpx.Client(base_url=ev.url, timeout=120) as c:
            poll(lambda: c.get("/readyz").json()["receiving"] == 8, 30, "the 8 uploads under way")
            r = c.post("/v1/evaluations", json=body())
            assert r.status_code == 200, r.text
        for s in slow:
            answer = b"".join(iter(lambda s=s: s.recv(4096), b""))  # the whole answer, then the server closes
            assert answer.startswith(b"HTTP/1.1 408") and b"slower than" in answer, answer
    finally:
        for s in slow:
            s.close()
        ev.stop()


def test_a_frozen_worker_fails_its_request_within_seconds_and_is_replaced():
    (ev,) = start_evaluators(1, args=("--stall-timeout", "2"))
    try:
        (worker,) = ev.workers()
        worker.send_signal(signal.SIGSTOP)  # frozen, not dead: its pipe stays open
        with httpx.Client(base_url=ev.url, timeout=120) as c:
            r = c.post("/v1/evaluations", json=body())
            assert r.status_code == 503 and r.headers["retry-after"], r.text
            assert "froze" in r.json()["detail"]
            assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
            health = c.get("/healthz").json()
            assert health["workers_replaced_frozen"] == 1
            assert "rrp_workers_replaced_frozen 1.0" in c.get("/metrics").text
            r = c.post("/v1/evaluations", json=body())  # waits for the replacement to warm up
            assert r.status_code == 200, r.text
            assert r.json()["results"] == [x.to_dict() for x in TASK.evaluate_batch(genomes(2))]
    finally:
        ev.stop()


def big_circle_task(shift: float) -> str:
    """A task on one of the largest tracks accepted (a 4.3 km circle: 7.9 million grid cells, 64 MB)."""
    import math

    points = [[shift + 690 * math.cos(2 * math.pi * i / 96), 690 * math.sin(2 * math.pi * i / 96)] for i in range(96)]
    return EvaluationTask(track=TrackData(name=f"big{shift:g}", width=12, points=points), max_frames=10,
                          controller=ControllerSpec(hidden=(2,))).model_dump_json()


def test_a_workers_track_cache_is_bounded_in_bytes(monkeypatch):
    from evaluator import worker
    from game.track_data import _track_from_data

    monkeypatch.setattr(worker, "_TASKS", type(worker._TASKS)())
    monkeypatch.setattr(worker, "_TRACKS", type(worker._TRACKS)())
    _track_from_data.cache_clear()
    tasks = [big_circle_task(float(i)) for i in range(6)]
    tracks = []
    for task_json in tasks:
        _, track = worker.cached_task(task_json, network=True)
        tracks.append(track)
        assert track.memory_bytes > 60e6
        assert worker.cached_bytes() <= worker.TASK_CACHE_BYTES
    kept = worker.TASK_CACHE_BYTES // 64_000_000
    assert [id(t) for t in worker._TRACKS.values()] == [id(t) for t in tracks[-kept:]]  # the newest stay
    assert _track_from_data.cache_info().currsize == 0, "network tracks are kept in the byte-bounded cache only"


def test_tasks_on_one_track_share_its_grid(monkeypatch):
    """Requests that differ in frame limit or controller but drive the same inline track build it once."""
    from evaluator import worker

    monkeypatch.setattr(worker, "_TASKS", type(worker._TASKS)())
    monkeypatch.setattr(worker, "_TRACKS", type(worker._TRACKS)())
    same = json.loads(big_circle_task(0.0))
    variants = [json.dumps(same | {"max_frames": n}) for n in (10, 20, 30)]
    tracks = {id(worker.cached_task(v, network=True)[1]) for v in variants}
    assert len(tracks) == 1 and len(worker._TASKS) == 3 and len(worker._TRACKS) == 1
    other = worker.cached_task(big_circle_task(1.0), network=True)[1]
    assert id(other) not in tracks and len(worker._TRACKS) == 2


def test_the_evaluator_listens_on_loopback_unless_told_otherwise(monkeypatch):
    from evaluator.__main__ import build_parser

    monkeypatch.delenv("RRP_HOST", raising=False)
    assert build_parser().parse_args([]).host == "127.0.0.1"
    monkeypatch.setenv("RRP_HOST", "0.0.0.0")  # what the images, compose and the chart set
    assert build_parser().parse_args([]).host == "0.0.0.0"


def test_the_ga_map_goes_on_elsewhere_when_a_worker_freezes():
    from ga.http_executor import HttpExecutor

    frozen_ev, healthy_ev = start_evaluators(2, args=("--stall-timeout", "2"))
    try:
        (worker,) = frozen_ev.workers()
        worker.send_signal(signal.SIGSTOP)
        gs = genomes(8)
        with HttpExecutor([frozen_ev.url, healthy_ev.url], pack_requests=False) as ex:
            results = list(ex.map(TASK, gs, chunksize=2))
            stats = ex.stats()
        assert [r.to_dict() for r in results] == [r.to_dict() for r in TASK.evaluate_batch(gs)]
        assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
        assert stats["rejected_503"] >= 1, stats  # the frozen worker's chunk came back as a 503, went again
    finally:
        frozen_ev.stop()
        healthy_ev.stop()
