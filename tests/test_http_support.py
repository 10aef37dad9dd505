"""The test support's real evaluator services: ``python -m evaluator`` subprocesses on loopback."""

from __future__ import annotations

import os

import httpx
import pytest
from support import start_evaluators

pytestmark = pytest.mark.slow


def test_evaluator_process_is_separate_and_ready():
    (ev,) = start_evaluators(1)
    try:
        assert ev.proc.pid != os.getpid()
        info = httpx.get(f"{ev.url}/v1/info").json()
        assert info["workers"] == 1 and info["capacity"] == 2
        assert len(ev.processes()) >= 2  # uvicorn + at least its worker process
    finally:
        ev.stop()
