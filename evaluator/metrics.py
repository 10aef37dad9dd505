"""Named, reusable measures of a lap, and the fitness the GA maximises (over one or more tracks).

Each metric is a plain ``metric(result) -> float`` so reports, tests and other searches can use
them without the GA. ``fitness`` puts every finished lap above every unfinished one; among
finished laps the faster is better, among unfinished ones the further, then the sooner.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from game import DT, LapResult

FINISHED_BASE = 1_000.0  # above any unfinished score (at most 100)


def lap_time(result: LapResult) -> float:
    """Seconds for the lap, infinite when it was not finished."""
    return result.lap_time_s if result.finished and result.lap_time_s is not None else math.inf


def progress(result: LapResult) -> float:
    """Share of the lap covered, 0..1."""
    return result.progress


def collisions(result: LapResult) -> float:
    """Wall contacts during the lap."""
    return float(result.collisions)


def smoothness(result: LapResult) -> float:
    """1 for a car that never changed its steering, towards 0 for one that flickers every frame."""
    seconds = max(result.frames, 1) * DT
    return 1.0 / (1.0 + result.steering_changes / seconds)


def fitness(result: LapResult) -> float:
    """Scalar to maximise: 1000 - lap time if finished, else 100 x progress - 0.001 x frames."""
    if result.finished and result.lap_time_s is not None:
        return FINISHED_BASE - result.lap_time_s
    return 100.0 * result.progress - 0.001 * result.frames


def fitness_over_tracks(results: Sequence[LapResult]) -> float:
    """One genome's laps on several tracks as one scalar: the sum of their fitnesses.

    A finished lap is worth at least 1000 minus its time, an unfinished one at most 100, so a
    genome that finishes more tracks always ranks higher; among genomes finishing every track,
    the smaller total time wins. With one track this is :func:`fitness`.
    """
    return math.fsum(fitness(r) for r in results)


METRICS = {"lap_time": lap_time, "progress": progress, "collisions": collisions, "smoothness": smoothness}
