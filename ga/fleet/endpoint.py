"""One evaluator endpoint as the dispatcher sees it: its state, capacity and counters.

An endpoint moves between four states, and only along the arrows of :data:`TRANSITIONS`::

    PROBING --answers /readyz and /v1/info--> UP --request or health check fails--> BENCHED
    BENCHED --answers again--> UP        any state --no longer discovered--> GONE
    GONE --discovered again--> PROBING

Only ``UP`` endpoints get work. ``PROBING`` and ``BENCHED`` ones are probed with a growing interval;
a ``GONE`` one finishes the requests it has in flight and is then forgotten.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_BATCH = 1024
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


class EndpointState(enum.Enum):
    PROBING = "probing"
    UP = "up"
    BENCHED = "benched"
    GONE = "gone"


TRANSITIONS: dict[EndpointState, frozenset[EndpointState]] = {
    EndpointState.PROBING: frozenset({EndpointState.UP, EndpointState.GONE}),
    EndpointState.UP: frozenset({EndpointState.BENCHED, EndpointState.GONE}),
    EndpointState.BENCHED: frozenset({EndpointState.UP, EndpointState.GONE}),
    EndpointState.GONE: frozenset({EndpointState.PROBING}),
}


class IllegalTransition(RuntimeError):
    """A move that :data:`TRANSITIONS` does not allow: a bug in the dispatcher."""


@dataclass(eq=False)
class Endpoint:
    """What the scheduler knows of one evaluator (no connection: that is the transport's)."""

    url: str
    state: EndpointState = EndpointState.PROBING
    limit: int = 1
    """Requests it may have in flight (its ``/v1/info`` capacity, or the executor's cap)."""
    workers: int = 1
    max_batch: int = DEFAULT_MAX_BATCH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    inflight: int = 0
    failures: int = 0
    """Consecutive failures: the bench delay grows with them."""
    retry_at: float = 0.0
    """Next probe (``PROBING``/``BENCHED``)."""
    cooldown_until: float = 0.0
    """No new request before this time (after a ``503``)."""
    last_error: str = ""
    completed: int = 0
    probed_once: bool = False

    def move(self, to: EndpointState) -> None:
        if to not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"endpoint {self.url}: {self.state.value} -> {to.value}")
        self.state = to

    @property
    def probing(self) -> bool:
        """Waiting for a probe to bring it (back) into service."""
        return self.state in (EndpointState.PROBING, EndpointState.BENCHED)

    def apply_info(self, info: dict[str, Any], max_inflight: int | None) -> None:
        """Capacity and limits from the evaluator's ``/v1/info`` answer."""
        self.limit = max(1, max_inflight if max_inflight is not None else int(info.get("capacity", 1)))
        self.workers = max(1, int(info.get("workers", 1)))
        self.max_batch = max(1, int(info.get("max_batch", DEFAULT_MAX_BATCH)))
        self.max_body_bytes = max(1024, int(info.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)))
