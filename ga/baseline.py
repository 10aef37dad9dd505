"""The classical baseline: one lap of the pure-pursuit driver on the run's track.

Every evolved lap is judged against it, and its lap length sets the default frame limit
of the evaluation task (a generous multiple of the baseline's frames: long enough for a
slow but complete lap, short enough that cars crawling around stop costing time).
"""

from __future__ import annotations

import math

from game import LapResult

FRAME_LIMIT_FACTOR = 1.5
"""Default frame limit = this many times the baseline lap's frames."""

FALLBACK_MAX_FRAMES = 2500
"""Frame limit when the baseline does not finish the track (100 s of simulated time)."""


def default_max_frames(baseline: LapResult) -> int:
    """Frame limit for evaluations, derived from the baseline lap."""
    if not baseline.finished:
        return FALLBACK_MAX_FRAMES
    return int(math.ceil(baseline.frames * FRAME_LIMIT_FACTOR))
