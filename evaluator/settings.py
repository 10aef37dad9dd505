"""Configuration of the evaluator service, declared once: each option is a flag and an ``RRP_*`` variable
(:mod:`servicekit.settings`); the variable sets the default, the flag wins."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import asdict, dataclass, field

from servicekit.settings import Option, at_least, common, positive, problem

DEFAULT_PORT = 8000


def _cgroup_cpus(path: str = "/sys/fs/cgroup/cpu.max") -> float | None:
    """CPUs granted by a cgroup v2 CPU limit (a container's ``resources.limits.cpu``), if any."""
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def _default_workers() -> int:
    """One worker per CPU this process may use: its affinity, capped by a container CPU limit."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    limit = _cgroup_cpus()
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


def _default_id() -> str:
    return os.environ.get("HOSTNAME") or socket.gethostname()


OPTIONS = [
    *(o for o in common(port=DEFAULT_PORT, max_body_bytes=16 * 1024 * 1024, body_timeout_s=60.0)
      if o.name != "forwarded_allow_ips"),  # nothing here depends on the client's address
    Option("workers", int, None, "worker processes running the simulation (default: the CPUs this process "
           "may use, capped by a container CPU limit)", at_least(1)),
    Option("max_inflight", int, None, "evaluation requests taken at once (running + queued for a worker), "
           "beyond it 503 (default: 2 x workers)", at_least(1)),
    Option("max_batch", int, 1024, "genomes per request", at_least(1)),
    Option("max_frames", int, 25 * 60 * 10, "frame limit of one lap (25 frames per simulated second)", at_least(1)),
    Option("stall_timeout_s", float, 10.0, "seconds without a worker heartbeat before its request fails (503) "
           "and it is replaced", positive),
    Option("retry_after_s", int, 1, "seconds a client should wait after a 503 (Retry-After)", at_least(0),
           also=("RRP_RETRY_AFTER_S",)),
    Option("evaluator_id", str, None, "name this evaluator reports in every answer (default HOST:PORT)",
           also=("--id",)),
]
"""Every setting of ``python -m evaluator`` but the token, which is read from the variable ``--token-env`` names."""


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to know; ``python -m evaluator`` builds it from :data:`OPTIONS`, whose
    checks it applies to values given in code too (ValueError)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = field(default_factory=_default_workers)
    #: evaluation requests accepted at once (running + queued for a worker); beyond it: 503. ``None``
    #: means two per worker, so a worker never idles while the next request crosses the network
    max_inflight: int | None = None
    #: bearer token required on POST /v1/evaluations (``None``: no authentication)
    token: str | None = None
    #: request bodies larger than this are refused with 413 before they are read
    max_body_bytes: int = 16 * 1024 * 1024
    max_batch: int = 1024
    max_frames: int = 25 * 60 * 10
    retry_after_s: int = 1
    #: a worker without a heartbeat for this long is frozen: its request fails (503) and it is replaced
    stall_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    #: seconds a request body may take to arrive (then 408); it is read before a capacity slot is taken
    body_timeout_s: float = 60.0
    #: bytes per second a request body must average after a 5 s grace (then 408); 0: no minimum
    min_body_rate: float = 1024.0
    evaluator_id: str = field(default_factory=_default_id)
    log_level: str = "info"

    def __post_init__(self) -> None:
        wrong = problem(OPTIONS, asdict(self))
        if wrong:
            raise ValueError(wrong)

    @property
    def capacity(self) -> int:
        return self.max_inflight if self.max_inflight is not None else 2 * self.workers
