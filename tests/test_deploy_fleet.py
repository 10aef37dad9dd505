"""Fleet rehearsal on loopback: the compose file's evaluators and GA, started with exactly the
commands and environment the compose file gives them (addresses aside), as real processes.

Each evaluator listens on its own loopback address (127.0.0.2, 127.0.0.3, ...) on one port, like
containers on a compose network, and the GA finds them through the name `evaluator`, like Docker's
DNS: the GA runs in a private mount namespace (`unshare --mount`) whose /etc/hosts lists one line per
evaluator, so the system resolver answers the name with every replica and the test changes the
fleet by rewriting that file. Nothing outside the namespace is touched. Results must be identical to
the local (process pool) executor's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support import Evaluator, compose_services, free_port, poll, process_env, replace_arg, spawn

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 420.0


def compose_model() -> dict:
    return {"services": compose_services()}


def base_env(cache: Path) -> dict[str, str]:
    return process_env(NUMBA_CACHE_DIR=str(cache))  # as in the image: one cache directory on /tmp


def python(argv: list[str]) -> list[str]:
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


class Hosts:
    """The /etc/hosts seen inside the GA's mount namespace. Rewritten in place (same inode, same
    length) so the bind mount always shows a complete file."""

    def __init__(self, path: Path, addresses: list[str]):
        self.path = path
        self.lines = ["127.0.0.1 localhost", *(f"{a} evaluator" for a in addresses)]
        path.write_text("\n".join(self.lines) + "\n")

    def replace(self, old: str, new: str) -> None:
        assert len(old) == len(new)
        self.lines = [f"{new} evaluator" if line == f"{old} evaluator" else line for line in self.lines]
        data = ("\n".join(self.lines) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY)
        try:
            assert os.pwrite(fd, data, 0) == len(data) == os.fstat(fd).st_size
        finally:
            os.close(fd)


def start_ga(ga: dict, hosts: Path, port: int, generations: int, out: Path, cache: Path, log: Path):
    argv = python(ga["command"])
    assert "--evaluators" in argv and argv[argv.index("--evaluators") + 1] == "dns://evaluator:8000"
    argv = replace_arg(argv, "--evaluators", f"dns://evaluator:{port}")  # addresses aside
    argv = replace_arg(argv, "--out", str(out))
    argv = replace_arg(argv, "--generations", str(generations))
    env = base_env(cache)
    env.update({k: v for k, v in ga["environment"].items() if v is not None})
    env["RRP_EVALUATORS"] = f"dns://evaluator:{port}"
    # a private mount namespace with its own /etc/hosts; exec keeps the GA as this process
    script = 'mount --bind "$0" /etc/hosts && exec "$@"'
    return spawn(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(hosts), *argv], env, log,
                 cwd=ROOT)


def local_run(generations: int, out: Path, cache: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ga.run", "--generations", str(generations), "--out", str(out)],
        cwd=ROOT, env=base_env(cache), capture_output=True, text=True, timeout=RUN_TIMEOUT,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def outcome(run_dir: Path) -> dict:
    """What must not depend on where the laps were simulated (wall timings aside)."""
    checkpoint = json.loads((run_dir / "checkpoint.json").read_text())
    checkpoint.pop("wall", None)
    return {"best": json.loads((run_dir / "best.json").read_text()), "checkpoint": checkpoint}


def first_difference(remote: dict, local: dict) -> str:
    for a, b in zip(remote["checkpoint"]["logbook"], local["checkpoint"]["logbook"], strict=False):
        if a != b:
            return f"logbooks part at generation {b.get('gen')}: fleet {a} != local {b}"
    return "best genome or final population differ"


def generation(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "checkpoint.json").read_text())["generation"]
    except (OSError, ValueError, KeyError):
        return -1


def test_compose_fleet_rehearsal_matches_the_local_executor(tmp_path, processes):
    model = compose_model()
    services = model["services"]
    replicas = services["evaluator"]["deploy"]["replicas"]
    assert replicas == 4
    cache = tmp_path / "numba-cache"
    addresses = [f"127.0.0.{2 + i}" for i in range(replicas)]
    port = free_port(*addresses)
    evaluators = [Evaluator.as_compose_service(services["evaluator"], a, port, cache, tmp_path) for a in addresses]
    processes.extend(evaluators)
    for ev in evaluators:
        ev.wait_ready(RUN_TIMEOUT)

    hosts = Hosts(tmp_path / "hosts", addresses)
    out = tmp_path / "runs" / "compose"
    ga = start_ga(services["ga"], hosts.path, port, 3, out, cache, tmp_path / "ga.log")
    processes.append(ga)
    assert ga.wait(timeout=RUN_TIMEOUT) == 0, (tmp_path / "ga.log").read_text()[-4000:]
    log = (tmp_path / "ga.log").read_text()
    assert f"dns://evaluator:{port}" in log

    served = [ev.evaluations() for ev in evaluators]
    assert all(n > 0 for n in served), served

    local_run(3, tmp_path / "local", cache)
    remote, local = outcome(out), outcome(tmp_path / "local")
    assert remote["checkpoint"]["generation"] == 3
    assert remote == local, first_difference(remote, local)


def test_fleet_loses_one_evaluator_and_gains_one_mid_run(tmp_path, processes):
    model = compose_model()
    services = model["services"]
    cache = tmp_path / "numba-cache"
    addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    newcomer = "127.0.0.6"
    port = free_port(*addresses, newcomer)
    evaluators = [Evaluator.as_compose_service(services["evaluator"], a, port, cache, tmp_path) for a in addresses]
    added = Evaluator.as_compose_service(services["evaluator"], newcomer, port, cache, tmp_path)  # not in the fleet yet
    processes.extend([*evaluators, added])
    for ev in [*evaluators, added]:
        ev.wait_ready(RUN_TIMEOUT)

    generations = 12
    hosts = Hosts(tmp_path / "hosts", addresses)
    out = tmp_path / "runs" / "compose"
    ga = start_ga(services["ga"], hosts.path, port, generations, out, cache, tmp_path / "ga.log")
    processes.append(ga)

    # mid-run: once generation 1 is checkpointed, freeze the fleet, kill one evaluator, add one
    poll(lambda: generation(out) >= 1 or ga.poll() is not None, RUN_TIMEOUT, "generation 1")
    survivors, victim = evaluators[:3], evaluators[3]
    for ev in survivors:
        ev.signal(signal.SIGSTOP)
    victim.signal(signal.SIGKILL)
    assert ga.poll() is None and generation(out) < generations, "the run ended before the fleet changed"
    hosts.replace(addresses[3], newcomer)
    before = added.evaluations()
    assert before == 0

    # the GA can only go on through the newcomer: discovery must find it
    poll(lambda: added.evaluations() > 0, RUN_TIMEOUT, "the added evaluator got work", interval=0.2)
    for ev in survivors:
        ev.signal(signal.SIGCONT)
    assert ga.wait(timeout=RUN_TIMEOUT) == 0, (tmp_path / "ga.log").read_text()[-4000:]
    assert victim.proc.wait(timeout=30) == -signal.SIGKILL

    local_run(generations, tmp_path / "local", cache)
    remote, local = outcome(out), outcome(tmp_path / "local")
    assert remote["checkpoint"]["generation"] == generations
    assert remote == local, first_difference(remote, local)
