"""Configuration of the evaluator service: ``RRP_*`` environment variables (pydantic-settings), which
``python -m evaluator``'s flags override."""

from __future__ import annotations

import math
import os
import socket
from typing import Any

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit.launch import port_problem

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


class Settings(BaseSettings):
    """Everything the service needs to know. Each field reads ``RRP_<FIELD>`` from the environment
    (``RRP_WORKERS``, ``RRP_MAX_INFLIGHT``, ...) unless given explicitly, as the flags do."""

    model_config = SettingsConfigDict(env_prefix="RRP_", frozen=True, extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = Field(default_factory=_default_workers)
    """Worker processes running the simulation (the event loop never simulates)."""
    max_inflight: int | None = None
    """Evaluation requests accepted at once (running + queued for a worker); beyond it: 503.
    ``None`` means two per worker, so a worker never idles while the next request crosses the network."""
    token: str | None = None
    """Bearer token required on POST /v1/evaluations (``None``: no authentication)."""
    max_body_bytes: int = 16 * 1024 * 1024
    """Request bodies larger than this are refused with 413 before they are read."""
    max_batch: int = 1024
    """Genomes in one request."""
    max_frames: int = 25 * 60 * 10
    """Frame limit of one lap (25 frames per simulated second)."""
    retry_after_s: int = 1
    """Seconds a client should wait after a 503."""
    stall_timeout_s: float = Field(default=10.0, validation_alias=AliasChoices("stall_timeout_s", "RRP_STALL_TIMEOUT"))
    """A worker without a heartbeat for this long is frozen: its request fails (503) and it is replaced."""
    header_timeout_s: float = Field(default=10.0,
                                    validation_alias=AliasChoices("header_timeout_s", "RRP_HEADER_TIMEOUT"))
    """Seconds a request's headers may take from its first byte (then 408, connection closed)."""
    body_timeout_s: float = Field(default=60.0, validation_alias=AliasChoices("body_timeout_s", "RRP_BODY_TIMEOUT"))
    """Seconds a request body may take to arrive (then 408); it is read before a capacity slot is taken."""
    min_body_rate: float = 1024.0
    """Bytes per second a request body must average after a 5 s grace (then 408); 0: no minimum."""
    evaluator_id: str = Field(default_factory=_default_id)
    """Name this evaluator reports in every answer."""

    @property
    def capacity(self) -> int:
        return self.max_inflight if self.max_inflight is not None else 2 * self.workers

    @field_validator("workers", "max_batch", "max_frames")
    @classmethod
    def _at_least_one(cls, value: int, info: Any) -> int:
        if value < 1:
            raise ValueError(f"{info.field_name} must be >= 1")
        return value

    @field_validator("port")
    @classmethod
    def _port_in_range(cls, value: int) -> int:
        problem = port_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("max_inflight")
    @classmethod
    def _inflight_at_least_one(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("max_inflight must be >= 1")
        return value

    @field_validator("stall_timeout_s", "header_timeout_s", "body_timeout_s")
    @classmethod
    def _positive(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("stall, header and body timeouts must be positive")
        return value

    @field_validator("min_body_rate")
    @classmethod
    def _rate_not_negative(cls, value: float) -> float:
        if not value >= 0:
            raise ValueError("min_body_rate must be >= 0 (bytes per second; 0: no minimum)")
        return value

    @field_validator("max_body_bytes")
    @classmethod
    def _body_at_least_1k(cls, value: int) -> int:
        if value < 1024:
            raise ValueError("max_body_bytes must be >= 1024")
        return value


ENV_NAMES = {"stall_timeout_s": "RRP_STALL_TIMEOUT", "header_timeout_s": "RRP_HEADER_TIMEOUT",
             "body_timeout_s": "RRP_BODY_TIMEOUT"}
"""Variables whose name is not ``RRP_<FIELD>``."""


def describe(error: ValidationError, *, env: bool = False) -> str:
    """One line for the first problem of a settings error, naming the flag's field or the variable."""
    err = error.errors(include_url=False)[0]
    field = str(err["loc"][0]) if err["loc"] else "settings"
    name = ENV_NAMES.get(field, f"RRP_{field.upper()}") if env else field
    if err["type"].startswith("int_"):
        return f"{name} must be an integer, got {err.get('input')!r}"
    if err["type"].startswith("float_"):
        return f"{name} must be a number of seconds, got {err.get('input')!r}"
    return str(err["msg"]).removeprefix("Value error, ")


def env_defaults() -> dict:
    """The ``RRP_*`` variables that are set, validated (the flags override them; the token is read
    from the variable ``--token-env`` names)."""
    try:
        settings = Settings()
    except ValidationError as exc:
        raise SystemExit(describe(exc, env=True)) from None
    return {name: getattr(settings, name) for name in settings.model_fields_set if name != "token"}
