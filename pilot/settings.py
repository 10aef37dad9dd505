"""Configuration of the pilot service, declared once: each option is a flag and an ``RRP_*`` variable
(:mod:`servicekit.settings`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from servicekit.guards import DEFAULT_MIN_RATE
from servicekit.http import HEADER_TIMEOUT_S
from servicekit.settings import Option, at_least, common

DEFAULT_PORT = 8300

OPTIONS = [
    Option("model", str, None, "model.onnx or the folder holding it and model.json"),
    *common(port=DEFAULT_PORT, max_body_bytes=8 * 1024 * 1024, body_timeout_s=30.0),
    Option("max_batch", int, 64, "frames per request", at_least(1)),
    Option("max_inflight", int, 16, "predict requests served at once, beyond it 503 at once", at_least(1)),
    Option("watch_interval_s", float, 2.0, "seconds between looks at the model file for a new version "
           "(0: only POST /v1/reload)", at_least(0)),
]


@dataclass(frozen=True)
class Settings:
    """Everything the service needs; ``python -m pilot.serve`` builds it from :data:`OPTIONS`."""

    model: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    forwarded_allow_ips: str | None = None
    #: frames in one request
    max_batch: int = 64
    #: request bodies over this are refused (413) before they are read
    max_body_bytes: int = 8 * 1024 * 1024
    #: seconds to receive a body (408 after)
    body_timeout_s: float = 30.0
    #: bytes/s a body must average after a short grace (408 after): a slow client costs only itself
    min_body_rate: float = float(DEFAULT_MIN_RATE)
    #: seconds to receive a request's headers (408 after; uvicorn alone waits forever)
    header_timeout_s: float = HEADER_TIMEOUT_S
    #: predict requests served at once (decoding, inferring), taken once the body is in; beyond it: 503 at
    #: once, since an answer that waited in a queue is stale for a car that needs it now
    max_inflight: int = 16
    #: bearer token required on ``POST /v1/reload`` (``None``: open)
    token: str | None = None
    #: seconds between looks at the model file for a new version (0: only ``POST /v1/reload``)
    watch_interval_s: float = 2.0
    log_level: str = "info"

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_inflight < 1 or self.max_body_bytes < 1024 or self.watch_interval_s < 0:
            raise ValueError("max_batch and max_inflight must be >= 1, max_body_bytes >= 1024, watch_interval >= 0")
        if not (self.body_timeout_s > 0 and self.header_timeout_s > 0 and self.min_body_rate >= 0):
            raise ValueError("body_timeout and header_timeout must be > 0, min_body_rate >= 0")
