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


SPEED_SCALE = 900.0  # the most the speed term adds (a lap at the track's reference time)
PROGRESS_SCALE = 99.0  # the most the progress term adds


def fitness_over_tracks(results: Sequence[LapResult], references: Sequence[float] | None = None) -> float:
    """One genome's laps on several tracks as one scalar; with one track this is :func:`fitness`.

    With several tracks: ``1000 x (tracks finished)`` plus a term in [0, 999] that ranks genomes
    finishing the same number of tracks, so a genome that finishes more tracks always ranks higher
    (however many tracks, however slow):

    * speed on the finished tracks: ``900 x mean(reference / lap time)``, each ratio at most 1, where
      ``references`` are the tracks' reference times (``game.bounds.lap_lower_bound``; 1 s each
      when not given). Each track counts by its relative speed, so a second gained on a short track
      is worth more than on a long one, and no track can be sacrificed for another's seconds;
    * progress on the unfinished ones: ``99 x mean(progress)``.
    """
    if len(results) == 1:
        return fitness(results[0])
    refs = [1.0] * len(results) if references is None else list(references)
    if len(refs) != len(results):
        raise ValueError(f"{len(results)} lap results but {len(refs)} reference times")
    finished = [(r.lap_time_s, ref) for r, ref in zip(results, refs, strict=True)
                if r.finished and r.lap_time_s is not None]
    unfinished = [r.progress for r in results if not (r.finished and r.lap_time_s is not None)]
    score = FINISHED_BASE * len(finished)
    if finished:
        score += SPEED_SCALE * math.fsum(min(1.0, ref / max(t, 1e-9)) for t, ref in finished) / len(finished)
    if unfinished:
        score += PROGRESS_SCALE * math.fsum(min(1.0, max(0.0, p)) for p in unfinished) / len(unfinished)
    return score


METRICS = {"lap_time": lap_time, "progress": progress, "collisions": collisions, "smoothness": smoothness}
