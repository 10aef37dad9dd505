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

import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support import compose_services, free_port

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 420.0


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the test process dies without cleaning up."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def compose_model() -> dict:
    return {"services": compose_services()}


def base_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RRP_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["NUMBA_CACHE_DIR"] = str(cache)  # as in the image: one cache directory on /tmp
    return env


def replace_arg(argv: list[str], flag: str, value: str) -> list[str]:
    i = argv.index(flag)
    return [*argv[: i + 1], value, *argv[i + 2 :]]


def python(argv: list[str]) -> list[str]:
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


def poll(condition, timeout: float, what: str, interval: float = 0.05):
    """Wait for a condition with a deadline (polling, not a timed guess)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(what)


class Evaluator:
    """`python -m evaluator` as the compose service runs it, on its own loopback address."""

    def __init__(self, service: dict, address: str, port: int, cache: Path, logs: Path):
        env = base_env(cache)
        env.update({k: v for k, v in service["environment"].items() if v is not None})
        assert env["RRP_HOST"] == "0.0.0.0" and env["RRP_PORT"] == "8000"
        env["RRP_HOST"], env["RRP_PORT"] = address, str(port)  # addresses aside
        self.url = f"http://{address}:{port}"
        self.log = logs / f"evaluator-{address}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                python(service["command"]), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=die_with_parent,
            )

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.url} exited {self.proc.returncode}: {self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def evaluations(self) -> float:
        text = httpx.get(f"{self.url}/metrics", timeout=5.0).text
        m = re.search(r"^rrp_evaluations_total(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=30)


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
    with log.open("wb") as f:
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(hosts), *argv],
            cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent,
        )


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


@pytest.fixture()
def fleet(tmp_path):
    started: list = []
    yield started
    for item in reversed(started):
        if isinstance(item, Evaluator):
            item.stop()
        elif item.poll() is None:
            os.killpg(item.pid, signal.SIGKILL)
            item.wait(timeout=30)


def test_compose_fleet_rehearsal_matches_the_local_executor(tmp_path, fleet):
    model = compose_model()
    services = model["services"]
    replicas = services["evaluator"]["deploy"]["replicas"]
    assert replicas == 4
    cache = tmp_path / "numba-cache"
    addresses = [f"127.0.0.{2 + i}" for i in range(replicas)]
    port = free_port(*addresses)
    evaluators = [Evaluator(services["evaluator"], a, port, cache, tmp_path) for a in addresses]
    fleet.extend(evaluators)
    for ev in evaluators:
        poll(ev.ready, RUN_TIMEOUT, f"{ev.url} ready", interval=0.2)

    hosts = Hosts(tmp_path / "hosts", addresses)
    out = tmp_path / "runs" / "compose"
    ga = start_ga(services["ga"], hosts.path, port, 3, out, cache, tmp_path / "ga.log")
    fleet.append(ga)
    assert ga.wait(timeout=RUN_TIMEOUT) == 0, (tmp_path / "ga.log").read_text()[-4000:]
    log = (tmp_path / "ga.log").read_text()
    assert f"dns://evaluator:{port}" in log

    served = [ev.evaluations() for ev in evaluators]
    assert all(n > 0 for n in served), served

    local_run(3, tmp_path / "local", cache)
    remote, local = outcome(out), outcome(tmp_path / "local")
    assert remote["checkpoint"]["generation"] == 3
    assert remote == local, first_difference(remote, local)


def test_fleet_loses_one_evaluator_and_gains_one_mid_run(tmp_path, fleet):
    model = compose_model()
    services = model["services"]
    cache = tmp_path / "numba-cache"
    addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    newcomer = "127.0.0.6"
    port = free_port(*addresses, newcomer)
    evaluators = [Evaluator(services["evaluator"], a, port, cache, tmp_path) for a in addresses]
    added = Evaluator(services["evaluator"], newcomer, port, cache, tmp_path)  # not in the fleet yet
    fleet.extend([*evaluators, added])
    for ev in [*evaluators, added]:
        poll(ev.ready, RUN_TIMEOUT, f"{ev.url} ready", interval=0.2)

    generations = 12
    hosts = Hosts(tmp_path / "hosts", addresses)
    out = tmp_path / "runs" / "compose"
    ga = start_ga(services["ga"], hosts.path, port, generations, out, cache, tmp_path / "ga.log")
    fleet.append(ga)

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
