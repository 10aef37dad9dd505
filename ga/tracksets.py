"""Which tracks a run drives: ``--track`` (names, files, ``all``) plus ``--generated N``.

A run may evolve one controller on several tracks at once; each track becomes one evaluation
task and a genome's fitness combines its laps (``evaluator.metrics.fitness_over_tracks``).
Generated tracks (``game.generate_track``) take seeds derived from the run's seed, far from the
seeds ``ga.report`` holds out for judging, so a report's unseen tracks are never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluator import TrackData
from game import Track, bundled_tracks, generate_track, load_track

ALL = "all"
TRAINING_SEED_STRIDE = 1_000
"""Generated training track i of a run with seed s has seed ``s * 1000 + i``."""
HELD_OUT_SEED_BASE = 1_000_000_000
"""Generated tracks for reports have seeds from here on; no run trains on them."""
MAX_TRACKS = 64


@dataclass(frozen=True)
class TrackEntry:
    """One track of a run: a short label, what a task names it by, and the loaded track."""

    label: str
    ref: str | TrackData  # a bundled name, a file path, or inline data (generated tracks)
    track: Track


def training_seeds(run_seed: int, generated: int) -> list[int]:
    """Seeds of a run's generated training tracks."""
    return [run_seed * TRAINING_SEED_STRIDE + i for i in range(generated)]


def held_out_seeds(n: int) -> list[int]:
    """Seeds of generated tracks that no run trains on."""
    return [HELD_OUT_SEED_BASE + i for i in range(n)]


def generated(seeds: list[int]) -> list[TrackEntry]:
    """Generated tracks, shipped inline (no evaluator has them on disk)."""
    entries = []
    for seed in seeds:
        track = generate_track(seed)
        entries.append(TrackEntry(track.name, TrackData.from_track(track), track))
    return entries


def parse(spec: str, n_generated: int = 0, run_seed: int = 0) -> tuple[list[TrackEntry], str]:
    """The tracks named by ``spec`` (comma separated names or files, or ``all``) and ``n_generated``
    generated ones, with a short label for the set; TrackError or ValueError say what is wrong."""
    if n_generated < 0:
        raise ValueError(f"--generated must be at least 0, got {n_generated}")
    names = [s.strip() for s in spec.split(",")]
    if any(not n for n in names):
        raise ValueError(f"--track: empty track name in {spec!r}")
    if ALL in names:
        if len(names) > 1:
            raise ValueError(f"--track: '{ALL}' stands alone, got {spec!r}")
        names = bundled_tracks()
    entries = []
    for name in names:
        track = load_track(name)
        label = track.name if name == track.name else Path(name).stem
        entries.append(TrackEntry(label, name, track))
    entries += generated(training_seeds(run_seed, n_generated))
    labels = [e.label for e in entries]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--track: a track is named twice ({', '.join(labels)})")
    if len(entries) > MAX_TRACKS:
        raise ValueError(f"at most {MAX_TRACKS} tracks per run, got {len(entries)}")
    head = ALL if spec.strip() == ALL else "+".join(labels[: min(3, len(names))])
    if spec.strip() != ALL and len(names) > 3:
        head += f"+{len(names) - 3}"
    return entries, head + (f"+gen{n_generated}" if n_generated else "")




def task_label(task) -> str:
    """The short name of an evaluation task's track, for reports."""
    return task.track.name if isinstance(task.track, TrackData) else Path(task.track).stem
