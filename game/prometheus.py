"""The game's ``GET /metrics``: the runner's and recorder's counters in Prometheus text format,
written by ``prometheus_client`` (as the evaluator's are), read from the runner when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Snapshot:
    """A collector over ``read()``, a dict of metric name -> value (``*_total`` names are counters)."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        for name, value in sorted(self.read().items()):
            if name.endswith("_total"):
                yield CounterMetricFamily(name.removesuffix("_total"), f"RallyRoboPilot game: {name}", value=value)
            else:
                yield GaugeMetricFamily(name, f"RallyRoboPilot game: {name}", value=value)


def registry_of(read: Callable[[], dict[str, float]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(read))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
