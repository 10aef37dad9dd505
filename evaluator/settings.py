"""Configuration of the evaluator service (command line flags and ``RRP_*`` environment variables)."""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class Settings:
    """Everything the service needs to know; built from flags/env by ``python -m evaluator``."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: worker processes running the simulation (the event loop never simulates)
    workers: int = field(default_factory=_default_workers)
    #: evaluation requests accepted at once (running + queued for a worker); beyond it: 503.
    #: ``None`` means two per worker, so a worker never idles while the next request crosses the network.
    max_inflight: int | None = None
    #: bearer token required on POST /v1/evaluations (``None``: no authentication)
    token: str | None = None
    #: request bodies larger than this are refused with 413 before they are read
    max_body_bytes: int = 16 * 1024 * 1024
    #: genomes in one request
    max_batch: int = 1024
    #: frame limit of one lap (25 frames per simulated second)
    max_frames: int = 25 * 60 * 10
    #: seconds a client should wait after a 503
    retry_after_s: int = 1
    #: a worker without a heartbeat for this long is frozen: its request fails (503) and it is replaced
    stall_timeout_s: float = 10.0
    #: seconds a request's headers may take from its first byte (then 408, connection closed)
    header_timeout_s: float = 10.0
    #: seconds a request body may take to arrive (then 408); it is read before a capacity slot is taken
    body_timeout_s: float = 60.0
    #: name this evaluator reports in every answer
    evaluator_id: str = field(default_factory=_default_id)

    @property
    def capacity(self) -> int:
        return self.max_inflight if self.max_inflight is not None else 2 * self.workers

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.max_inflight is not None and self.max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        if min(self.stall_timeout_s, self.header_timeout_s, self.body_timeout_s) <= 0:
            raise ValueError("stall, header and body timeouts must be positive")
        if self.max_batch < 1 or self.max_frames < 1 or self.max_body_bytes < 1024:
            raise ValueError("max_batch, max_frames must be >= 1 and max_body_bytes >= 1024")


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {value!r}") from None


def env_defaults() -> dict:
    """Defaults taken from the environment (flags override them)."""
    out: dict = {}
    if os.environ.get("RRP_HOST"):
        out["host"] = os.environ["RRP_HOST"]
    for key, env in (
        ("port", "RRP_PORT"),
        ("workers", "RRP_WORKERS"),
        ("max_inflight", "RRP_MAX_INFLIGHT"),
        ("max_body_bytes", "RRP_MAX_BODY_BYTES"),
        ("max_batch", "RRP_MAX_BATCH"),
        ("max_frames", "RRP_MAX_FRAMES"),
    ):
        value = _env_int(env)
        if value is not None:
            out[key] = value
    for key, env in (("stall_timeout_s", "RRP_STALL_TIMEOUT"), ("header_timeout_s", "RRP_HEADER_TIMEOUT"),
                     ("body_timeout_s", "RRP_BODY_TIMEOUT")):
        value = os.environ.get(env, "").strip()
        if value:
            try:
                out[key] = float(value)
            except ValueError:
                raise SystemExit(f"{env} must be a number of seconds, got {value!r}") from None
    if os.environ.get("RRP_EVALUATOR_ID"):
        out["evaluator_id"] = os.environ["RRP_EVALUATOR_ID"]
    return out
