"""The serving model of the pilot service, swapped whole on a reload, and the service's metrics."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.concurrency import run_in_threadpool

from pilot.runtime import CARD_FILE, MODEL_FILE, PilotModel

log = logging.getLogger("pilot.serve")


class Metrics:
    """Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "rrp_pilot_predict_seconds", "Time to answer POST /v1/predict (decoding, inference, encoding)",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
            registry=self.registry,
        )
        self.predictions = Counter("rrp_pilot_predictions", "Frames answered", registry=self.registry)
        self.errors = Counter("rrp_pilot_errors", "Refused requests by reason", ["reason"], registry=self.registry)
        self.reloads = Counter("rrp_pilot_reloads", "Model loads by result", ["result"], registry=self.registry)
        self.model_info = Gauge("rrp_pilot_model_info", "1 for the serving model version", ["version"],
                                registry=self.registry)
        self.inflight = Gauge("rrp_pilot_inflight_requests", "Predict requests in progress", registry=self.registry)


def _model_file(path: Path) -> Path:
    return path / MODEL_FILE if path.is_dir() else path


class ModelSlot:
    """The serving model, swapped whole when a new file at the path loads (never half-updated)."""

    def __init__(self, path: Path, metrics: Metrics) -> None:
        self.path = path
        self.metrics = metrics
        self.model: PilotModel | None = None
        self.last_error: str | None = None
        self._loaded: tuple | None = None  # signature of the files the serving model came from
        self._failed: tuple | None = None  # signature of files that did not load (not retried)
        self._pending: tuple | None = None  # a change seen once, loaded when seen again unchanged
        self._lock = asyncio.Lock()

    def signature(self) -> tuple:
        """Where the model file really is (symlinks resolved) and both files' stat; (path, None) while
        either file is missing."""
        onnx = Path(os.path.realpath(_model_file(self.path)))
        try:
            a, b = onnx.stat(), (onnx.parent / CARD_FILE).stat()
        except OSError:
            return (str(onnx), None)
        return (str(onnx), a.st_ino, a.st_size, a.st_mtime_ns, b.st_ino, b.st_size, b.st_mtime_ns)

    async def load(self) -> str | None:
        """Load whatever is at the path now; the old model stays unless the new one loads. Error or None."""
        async with self._lock:
            signature = self.signature()
            try:
                model = await run_in_threadpool(PilotModel.load, signature[0])
            except Exception as exc:  # any broken file: keep serving the old model
                self._failed, self.last_error = signature, f"{type(exc).__name__}: {exc}"
                self.metrics.reloads.labels("failed").inc()
                log.error("model at %s not loaded (%s); serving %s", self.path, self.last_error,
                          self.model.version if self.model else "nothing")
                return self.last_error
            old, self.model = self.model, model
            self._loaded, self._failed, self.last_error = signature, None, None
            self.metrics.reloads.labels("loaded").inc()
            self.metrics.model_info.clear()
            self.metrics.model_info.labels(model.version).set(1)
            log.info("serving model %s from %s (was %s)", model.version, signature[0], old.version if old else "none")
            return None

    async def watch(self, interval_s: float) -> None:
        """Poll the files; load a change once it has been seen twice in a row (a finished copy)."""
        while True:
            await asyncio.sleep(interval_s)
            signature = self.signature()
            if signature in (self._loaded, self._failed) or signature[1] is None:
                self._pending = None
            elif signature == self._pending:
                self._pending = None
                await self.load()
            else:
                self._pending = signature
