"""An unreachable evaluator fleet is reported at once, one line per endpoint and change of state."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import die_with_parent

from evaluator import ControllerSpec, EvaluationTask
from ga.http_executor import HttpExecutor, NoEvaluatorAvailable
from game import DEFAULT_TRACK

ROOT = Path(__file__).resolve().parents[1]


def closed_ports(n: int) -> list[str]:
    """URLs of loopback ports nobody listens on."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [f"http://127.0.0.1:{s.getsockname()[1]}" for s in socks]
    finally:
        for s in socks:
            s.close()


def test_each_unreachable_endpoint_is_said_once_not_per_retry(caplog):
    caplog.set_level(logging.INFO, logger="ga")
    dead = closed_ports(2)
    events = []
    task = EvaluationTask(track=DEFAULT_TRACK, max_frames=10, controller=ControllerSpec(hidden=(2,)))
    with (HttpExecutor(",".join(dead), unreachable_timeout=3.0, probe_timeout=0.5, bench_max=0.2,
                       on_event=lambda kind, info: events.append((kind, info["endpoint"]))) as ex,
          pytest.raises(NoEvaluatorAvailable)):
        list(ex.map(task, [[0.0] * task.controller.genome_length()]))
    lines = [r.getMessage() for r in caplog.records if "unreachable:" in r.getMessage()]
    assert sorted(line.split()[1] for line in lines) == sorted(dead), lines  # one each, though retried
    assert sorted(e for e in events if e[0] == "endpoint_unreachable") == sorted(
        ("endpoint_unreachable", url) for url in dead)


def test_ga_run_prints_an_unreachable_evaluator_at_once(tmp_path):
    (dead,) = closed_ports(1)
    proc = subprocess.Popen([sys.executable, "-m", "ga.run", "--evaluators", dead, "--population", "4",
                             "--generations", "1", "--out", str(tmp_path / "run")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=die_with_parent)
    try:
        line = proc.stderr.readline()  # the first thing on stderr, long before the 120 s give-up
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)
    assert line.startswith("ga.run: evaluator ") and dead in line and "unreachable" in line, line
