"""Collection under Redis trouble: a full Redis, a Redis that goes away and comes back, one that never comes
back, and one that would evict what is written. Each against a real redis-server and the real
``python -m pilot.collect`` (offscreen renderer in a worker process).

What must hold every time: a listed episode is complete (its stream has the frames its record says),
no half-written stream is left anywhere, and the command ends with one line naming the cause.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis
from support import REPO, RedisServer, poll, process_env, spawn, stop_process_group

from game.recorder import sessions_key
from pilot.dataset import run_episodes

pytestmark = pytest.mark.slow


def argv(url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pilot.collect", "--redis", url, "--run", "t", "--tracks", "oval,hairpins",
            "--frames", "30", "--workers", "1", "--quiet", *extra]


def run(url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv(url, *extra), env=process_env(), cwd=REPO, capture_output=True, text=True, timeout=300)


def our_lines(stderr: str) -> list[str]:
    """What the command says, without what Panda3D prints when a worker opens its offscreen pipe."""
    return [ln for ln in stderr.strip().splitlines()
            if ln.startswith(("error:", "pilot.collect:", "Traceback", "redis."))]


def assert_only_complete_episodes(client: redis.Redis) -> int:
    """Every listed episode has all its frames and nothing else is in Redis; returns how many are listed."""
    episodes = run_episodes(client).get("t", [])
    for e in episodes:
        assert client.xlen(f"rrp:frames:{e.session}") == e.frames == 30
    keys = {k.decode() for k in client.keys("*")}
    assert keys <= {sessions_key(), *(f"rrp:frames:{e.session}" for e in episodes)}, keys
    return len(episodes)


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
def test_a_redis_that_would_evict_frames_is_refused_before_anything_is_drawn(redis_server, policy):
    client = redis.Redis.from_url(redis_server.url)
    client.config_set("maxmemory", "2mb")
    client.config_set("maxmemory-policy", policy)
    proc = run(redis_server.url, "--episodes", "12")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert f"maxmemory-policy {policy}" in proc.stderr and "noeviction" in proc.stderr
    assert client.dbsize() == 0


def test_a_full_redis_stops_with_one_line_and_a_rerun_completes_the_run(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.config_set("maxmemory", client.info("memory")["used_memory"] + 1_000_000)
    client.config_set("maxmemory-policy", "noeviction")
    proc = run(redis_server.url, "--episodes", "12")
    assert proc.returncode == 1, proc.stderr
    line = our_lines(proc.stderr)[-1]
    assert our_lines(proc.stderr) == [line] and line.startswith("error: episode t-")
    assert "Redis is out of memory (command not allowed when used memory > 'maxmemory')" in line
    assert "of 12 episodes written" in line and "PNG" not in line
    listed = assert_only_complete_episodes(client)
    assert 0 < listed < 12

    client.config_set("maxmemory", 0)  # room again: the same command writes the whole run
    proc = run(redis_server.url, "--episodes", "12")
    assert proc.returncode == 0, proc.stderr
    assert assert_only_complete_episodes(client) == 12


def _collector(url: str, log: Path, *extra: str) -> subprocess.Popen:
    return spawn(argv(url, "--episodes", "6", *extra), process_env(), log, cwd=REPO)


def test_redis_away_mid_run_is_retried_with_back_off_and_nothing_is_lost(tmp_path, processes):
    server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always")  # the restart keeps the data
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        log = tmp_path / "collect.log"
        proc = _collector(server.url, log)
        processes.append(proc)
        poll(lambda: client.hlen(sessions_key()) >= 1, 180, "the first episode written")
        server.stop()  # SIGKILL: connections refused from now on
        poll(lambda: "retry 1 of 6" in log.read_text(), 120, "the collector meeting the outage")
        server.start()  # same port, same data
        assert proc.wait(300) == 0, log.read_text()
        assert "Redis unavailable writing episode t-" in log.read_text()
        assert assert_only_complete_episodes(client) == 6
    finally:
        server.stop()


def test_redis_gone_for_good_ends_with_one_line_after_bounded_retries(tmp_path, redis_server, processes):
    client = redis.Redis.from_url(redis_server.url)
    log = tmp_path / "collect.log"
    proc = _collector(redis_server.url, log, "--retries", "2")
    processes.append(proc)
    poll(lambda: client.hlen(sessions_key()) >= 1, 180, "the first episode written")
    redis_server.stop()
    assert proc.wait(120) == 1
    *notes, last = our_lines(log.read_text())
    # a note per retry (of the episode that failed, and of those the pool had already handed out), then one line
    assert notes and all(n.startswith("pilot.collect: Redis unavailable writing episode t-") for n in notes)
    assert all(n.endswith(("retry 1 of 2", "retry 2 of 2")) for n in notes) and "Traceback" not in log.read_text()
    assert last.startswith("error: episode t-") and "Redis unreachable, gave up after 2 retries" in last
    assert "of 6 episodes written" in last
    stop_process_group(proc)


def test_stdout_carries_only_the_json_summary(redis_server):
    """Ursina and Panda3D print banners on file descriptor 1 in the renderer's process: they go to stderr."""
    import json

    proc = run(redis_server.url, "--episodes", "1")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    summary = json.loads(lines[0])
    assert summary["run"] == "t"
