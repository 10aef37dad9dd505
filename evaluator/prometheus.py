"""The evaluator service's Prometheus metrics (``GET /metrics``), one registry per service instance."""

from __future__ import annotations

from collections.abc import Callable

import prometheus_client as prom

CONTENT_TYPE = prom.CONTENT_TYPE_LATEST


class ServiceMetrics:
    """Counters of answered requests, laps and errors; gauges of the pool; the evaluation latency."""

    def __init__(self) -> None:
        self.registry = prom.CollectorRegistry(auto_describe=True)
        r = self.registry
        self.evaluations = prom.Counter("rrp_evaluations", "Evaluation requests answered with results", registry=r)
        self.laps = prom.Counter("rrp_laps_simulated", "Laps simulated (one per genome)", registry=r)
        self.errors = prom.Counter(
            "rrp_errors", "Evaluation requests not answered with results, by reason", ["reason"], registry=r
        )
        self.busy = prom.Gauge("rrp_busy_workers", "Worker processes running an evaluation", registry=r)
        self.workers = prom.Gauge("rrp_workers", "Worker processes", registry=r)
        self.inflight = prom.Gauge("rrp_inflight_requests", "Evaluation requests taken", registry=r)
        self.capacity = prom.Gauge("rrp_capacity", "Evaluation requests taken at once", registry=r)
        self.frozen = prom.Gauge("rrp_workers_replaced_frozen",
                                 "Worker processes killed and replaced for missing heartbeats", registry=r)
        self.latency = prom.Histogram(
            "rrp_evaluation_seconds",
            "Time to evaluate one request (queue for a worker + simulation)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=r,
        )

    def watch(self, *, workers: int, capacity: int, busy: Callable[[], float], inflight: Callable[[], float],
              frozen: Callable[[], float]) -> None:
        """Fixed sizes, and live values read when scraped (not written on every request)."""
        self.workers.set(workers)
        self.capacity.set(capacity)
        self.busy.set_function(busy)
        self.inflight.set_function(inflight)
        self.frozen.set_function(frozen)

    def text(self) -> bytes:
        return prom.generate_latest(self.registry)
