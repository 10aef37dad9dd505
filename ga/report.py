"""Run reports: the log table, the fitness curve, the best lap on the track map, held-out tracks.

All of it is derived from the checkpointed logbook and ``best.json``, so reports can be
regenerated at any time (``ga.run --resume`` of a finished run does exactly that).
Plots use matplotlib's Agg backend: no display needed.

``python -m ga.report RUN_DIR [--tracks LIST]`` drives the run's best genome on the bundled tracks
and on held-out generated tracks no run trains on (``game.tracklist.JUDGING_DEFAULT``), nominal and
perturbed (one frame of latency, 5% ray noise, a shifted start, all three), and writes
``heldout.md``, ``heldout.json`` and ``heldout.png`` into the run folder (see ``ga.holdout``).
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from evaluator import EvaluationTask
from ga.trace import drive_recorded
from servicekit import atomic

CSV_FIELDS = (
    "gen", "nevals", "best_lap_s", "mean_lap_s", "finished_share", "best_progress",
    "fitness_max", "fitness_mean", "wall_s", "evals_per_s",
)


def _cell(value: object, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def write_log_csv(path: str | os.PathLike, logbook: Sequence[dict], wall: Sequence[dict]) -> None:
    """One row per generation: the logbook's figures plus wall-clock timings."""
    timings = {w["gen"]: w for w in wall}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for e in logbook:
        t = timings.get(e["gen"], {})
        writer.writerow([
            e["gen"], e["nevals"], _cell(e["best_lap"], 3), _cell(e["mean_lap"], 3),
            _cell(e["finished"], 3), _cell(e["best_progress"], 4), _cell(e["fit_max"], 4),
            _cell(e["fit_mean"], 4), _cell(t.get("seconds"), 3), _cell(t.get("evals_per_s"), 1),
        ])
    atomic.write_text(path, out.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fitness(path: str | os.PathLike, logbook: Sequence[dict], baseline_lap: float | None,
                 title: str) -> None:
    """Best and mean lap time (finished laps) per generation, with the finished share and
    the furthest car's progress (the only sign of learning before the first lap is finished)."""
    plt = _pyplot()
    gens = [e["gen"] for e in logbook]
    best = [np.nan if e["best_lap"] is None else e["best_lap"] for e in logbook]
    mean = [np.nan if e["mean_lap"] is None else e["mean_lap"] for e in logbook]
    share = [100.0 * e["finished"] for e in logbook]

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(gens, best, label="best lap", color="tab:blue", lw=2)
    ax.plot(gens, mean, label="mean lap (finished cars)", color="tab:orange", lw=1.5)
    if baseline_lap is not None:
        ax.axhline(baseline_lap, color="tab:red", ls="--", lw=1,
                   label=f"pursuit baseline {baseline_lap:.2f} s")
    ax.set_xlabel("generation")
    ax.set_ylabel("lap time (s)")
    ax.grid(alpha=0.3)
    ax2 = ax.twinx()
    ax2.fill_between(gens, share, color="tab:green", alpha=0.12, step="mid", label="finished share")
    progress = [100.0 * e["best_progress"] for e in logbook]
    ax2.plot(gens, progress, color="tab:green", lw=1, ls=":", label="furthest car (% of lap)")
    ax2.set_ylim(0, 100)
    ax2.set_ylabel("% of cars finishing / of the lap")
    lines = ax.get_legend_handles_labels()
    fills = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + fills[0], lines[1] + fills[1], loc="upper center", fontsize=8)
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_best_lap(path: str | os.PathLike, task: EvaluationTask, genome: Sequence[float], title: str) -> None:
    """The best lap's path on the track map, coloured by speed."""
    plt = _pyplot()
    from matplotlib.collections import LineCollection

    track, result, trace = drive_recorded(task, genome)
    fig, ax = plt.subplots(figsize=(7.5, 7), dpi=100)
    for wall in (track.left_wall, track.right_wall):
        closed = np.vstack([wall, wall[:1]])
        ax.plot(closed[:, 0], closed[:, 1], color="0.25", lw=1)
    ax.plot(track.centerline[:, 0], track.centerline[:, 1], color="0.75", lw=0.6, ls=":")
    x0, y0, heading = track.start
    nx, ny = -np.sin(heading) * track.width / 2, np.cos(heading) * track.width / 2
    ax.plot([x0 - nx, x0 + nx], [y0 - ny, y0 + ny], color="k", lw=3, label="start / finish")

    points = np.column_stack([trace.x, trace.y]).reshape(-1, 1, 2)
    segments = np.concatenate([points[:-1], points[1:]], axis=1)
    lc = LineCollection(segments, cmap="plasma", linewidths=2.2)
    lc.set_array(trace.speed[1:])
    lc.set_clim(0.0, max(1.0, float(np.max(trace.speed))))
    ax.add_collection(lc)
    fig.colorbar(lc, ax=ax, shrink=0.75, label="speed (m/s)")
    lap = f"{result.lap_time_s:.2f} s" if result.finished else f"unfinished ({100 * result.progress:.0f}%)"
    ax.set_title(f"{title}\nbest lap {lap}, {result.collisions} wall contacts")
    ax.set_aspect("equal")
    ax.autoscale_view()
    ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --- held-out report (python -m ga.report) ---------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    from game import tracklist

    parser = argparse.ArgumentParser(prog="python -m ga.report",
                                     description="Judge a run's best genome on unseen tracks, nominal and perturbed.")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a ga.run output folder")
    parser.add_argument("--tracks", default=tracklist.JUDGING_DEFAULT,
                        help="comma list of bundled names, 'all', JSON paths, random-SEED or random-A..B "
                        f"(default {tracklist.JUDGING_DEFAULT}: the bundled tracks and held-out ones no run trains on)")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    return parser


def main(argv: list[str] | None = None) -> int:
    from evaluator.best import read_best
    from ga import holdout, tracksets
    from ga.executors import LocalExecutor
    from ga.replay import ReplayError
    from game import TrackError, tracklist

    prog = "ga.report"
    parser = build_parser()
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    try:
        if args.workers is not None and args.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {args.workers}")
        best = read_best(run_dir)
        task, genome = best.task, best.genome
        trained = {t.track for t in best.tracks} or {best.track}
        tracks, _ = tracksets.parse(args.tracks, tracklist.Purpose.JUDGING)
    except (ReplayError, TrackError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    with LocalExecutor(args.workers) as executor:
        rows = holdout.judge(genome, task.controller, tracks, trained, executor)
    text = holdout.table(rows)
    print(text)
    title = f"{run_dir.name}: best genome on {len(rows)} tracks"
    atomic.write_text(run_dir / "heldout.md", text + "\n")
    atomic.write_json(run_dir / "heldout.json", holdout.to_json(rows))
    holdout.plot(run_dir / "heldout.png", rows, title)
    print(f"written: {run_dir / 'heldout.md'}, heldout.json, heldout.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
