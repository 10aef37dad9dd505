"""The evaluator against slow clients and a frozen simulation worker (real processes on loopback)."""

from __future__ import annotations

import signal
import socket

import httpx
import psutil
from test_http_support import start_evaluators
from test_service_api import TASK, _worker_processes, body, genomes

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


def test_a_frozen_worker_fails_its_request_within_seconds_and_is_replaced():
    (ev,) = start_evaluators(1, args=("--stall-timeout", "2"))
    try:
        (worker,) = _worker_processes(ev)
        worker.send_signal(signal.SIGSTOP)  # frozen, not dead: its pipe stays open
        with httpx.Client(base_url=ev.url, timeout=120) as c:
            r = c.post("/v1/evaluations", json=body())
            assert r.status_code == 503 and r.headers["retry-after"], r.text
            assert "froze" in r.json()["detail"]
            assert not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE
            health = c.get("/healthz").json()
            assert health["workers_replaced_frozen"] == 1
            assert "rrp_worker_stalls_total 1.0" in c.get("/metrics").text
            r = c.post("/v1/evaluations", json=body())  # waits for the replacement to warm up
            assert r.status_code == 200, r.text
            assert r.json()["results"] == [x.to_dict() for x in TASK.evaluate_batch(genomes(2))]
    finally:
        ev.stop()
