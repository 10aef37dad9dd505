"""Judge an evolved driver on tracks and conditions: nominal and perturbed, against the baseline.

A controller is only as good as its laps on tracks it never saw, with sensors and timing that
are not perfect. :func:`judge` drives one genome on every (track, condition) pair through an
executor (one lap each, all submitted at once) and compares each lap with the pure-pursuit
baseline's nominal lap on that track. ``python -m ga.report RUN_DIR`` prints the table and
draws it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from evaluator import ControllerSpec, EvaluationTask, Perturbation
from ga.baseline import default_max_frames
from ga.tracksets import TrackEntry
from game import LapResult
from game.pursuit import pursuit_lap

REPORT_SEED = 7
"""Seed of the perturbations a report draws (the same for every run, so reports compare)."""

CONDITIONS: dict[str, Perturbation | None] = {
    "nominal": None,
    "latency 1": Perturbation(seed=REPORT_SEED, latency_frames=1),
    "noise 5%": Perturbation(seed=REPORT_SEED, ray_noise=0.05),
    "start +-1m/3deg": Perturbation(seed=REPORT_SEED, start_offset_m=1.0, start_heading_deg=3.0),
    "all three": Perturbation(seed=REPORT_SEED, latency_frames=1, ray_noise=0.05, start_offset_m=1.0,
                              start_heading_deg=3.0),
}


@dataclass(frozen=True)
class Row:
    """One track: the baseline lap and the driver's lap under each condition."""

    track: str
    trained: bool
    baseline: LapResult
    laps: dict[str, LapResult]


def judge(genome: Sequence[float], controller: ControllerSpec, tracks: Sequence[TrackEntry],
          trained: set[str], executor: Executor) -> list[Row]:
    """Drive ``genome`` once per track and condition; rows in track order."""
    baselines = [pursuit_lap(entry.track) for entry in tracks]
    futures = {}
    for entry, baseline in zip(tracks, baselines, strict=True):
        for name, perturbation in CONDITIONS.items():
            task = EvaluationTask(track=entry.ref, max_frames=default_max_frames(baseline),
                                  controller=controller, perturbation=perturbation).resolved()
            futures[entry.label, name] = executor.submit(task, list(genome))
    return [Row(entry.label, entry.label in trained, baseline,
                {name: futures[entry.label, name].result() for name in CONDITIONS})
            for entry, baseline in zip(tracks, baselines, strict=True)]


def cell(lap: LapResult, baseline: LapResult) -> str:
    """``24.31s x0.91 2c`` (time, ratio to the baseline, wall contacts) or ``DNF 62%``."""
    if not lap.finished:
        return f"DNF {100 * lap.progress:.0f}%"
    ratio = f" x{lap.lap_time_s / baseline.lap_time_s:.2f}" if baseline.finished else ""
    return f"{lap.lap_time_s:.2f}s{ratio} {lap.collisions}c"


def table(rows: Sequence[Row]) -> str:
    """The report as a Markdown table, with a line of finished counts per condition."""
    head = ["track", "baseline", *CONDITIONS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        base = f"{row.baseline.lap_time_s:.2f}s" if row.baseline.finished else "DNF"
        name = f"{row.track} (trained)" if row.trained else row.track
        lines.append("| " + " | ".join([name, base, *(cell(row.laps[c], row.baseline) for c in CONDITIONS)]) + " |")
    counts = [f"{sum(r.laps[c].finished for r in rows)}/{len(rows)}" for c in CONDITIONS]
    lines.append("| finished | | " + " | ".join(counts) + " |")
    return "\n".join(lines)


def to_json(rows: Sequence[Row]) -> list[dict]:
    return [{"track": r.track, "trained": r.trained, "baseline": r.baseline.to_dict(),
             "laps": {c: lap.to_dict() for c, lap in r.laps.items()}} for r in rows]


def plot(path: str | os.PathLike, rows: Sequence[Row], title: str) -> None:
    """A grid of tracks x conditions coloured by lap time / baseline (grey: did not finish)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conditions = list(CONDITIONS)
    ratio = np.full((len(rows), len(conditions)), np.nan)
    for i, row in enumerate(rows):
        for j, c in enumerate(conditions):
            lap = row.laps[c]
            if lap.finished and row.baseline.finished:
                ratio[i, j] = lap.lap_time_s / row.baseline.lap_time_s
    fig, ax = plt.subplots(figsize=(1.6 * len(conditions) + 3, 0.42 * len(rows) + 1.8), dpi=100)
    cmap = matplotlib.colormaps["RdYlGn_r"].copy()
    cmap.set_bad("0.6")
    image = ax.imshow(np.ma.masked_invalid(ratio), cmap=cmap, vmin=0.8, vmax=1.2, aspect="auto")
    for i, row in enumerate(rows):
        for j, c in enumerate(conditions):
            lap = row.laps[c]
            text = f"{lap.lap_time_s:.1f}s" if lap.finished else f"DNF {100 * lap.progress:.0f}%"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(conditions)), conditions, fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{r.track}{' *' if r.trained else ''}" for r in rows], fontsize=8)
    finished = ", ".join(f"{c} {sum(r.laps[c].finished for r in rows)}/{len(rows)}" for c in conditions)
    ax.set_title(f"{title}\nfinished: {finished}\n(* trained on; grey: did not finish)", fontsize=9)
    fig.colorbar(image, ax=ax, label="lap time / pursuit baseline", shrink=0.8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
