"""The game's ``GET /metrics``: the runner's and recorder's counters in Prometheus text format,
written by ``prometheus_client`` (as the evaluator's are), read from the runner when scraped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


HELP = {
    "rrp_game_frames_stepped_total": "Simulation frames stepped",
    "rrp_game_frames_rendered_total": "Frames drawn by the renderer",
    "rrp_game_frames_late_total": "Frames stepped late to catch up with real time",
    "rrp_game_commands_total": "Control commands accepted",
    "rrp_game_commands_applied_total": "Control commands applied at their frame",
    "rrp_game_commands_refused_total": "Control commands refused (past, too far ahead, too many pending)",
    "rrp_game_laps_total": "Laps completed",
    "rrp_game_resets_total": "Resets to the start line",
    "rrp_game_frame": "Frames since the last reset",
    "rrp_game_ready": "1 once the game loop runs",
    "rrp_game_max_lag_seconds": "Largest delay of a frame behind its real-time due time",
    "rrp_game_pending_commands": "Control commands waiting for their frame",
    "rrp_recorder_frames_offered_total": "Camera frames handed to the Redis recorder",
    "rrp_recorder_frames_written_total": "Camera frames written to Redis",
    "rrp_recorder_frames_dropped_total": "Camera frames that never reached Redis",
    "rrp_recorder_frames_dropped_full_total": "Camera frames dropped because the recorder queue was full",
    "rrp_recorder_frames_dropped_redis_total": "Camera frames dropped because Redis was unavailable",
    "rrp_recorder_reconnects_total": "Reconnections to Redis after losing it",
    "rrp_recorder_connected": "1 while the recorder is connected to Redis",
    "rrp_recorder_queued": "Camera frames waiting to be written",
}
"""What each metric the runner reports means (its Prometheus HELP line)."""


class _Snapshot:
    """A collector over ``read()``, a dict of metric name -> value (``*_total`` names are counters)."""

    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        for name, value in sorted(self.read().items()):
            if name.endswith("_total"):
                yield CounterMetricFamily(name.removesuffix("_total"), HELP.get(name, name), value=value)
            else:
                yield GaugeMetricFamily(name, HELP.get(name, name), value=value)


def registry_of(read: Callable[[], dict[str, float]]) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(read))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
