"""Which tracks a GA command drives, in the form evaluation tasks name them.

The list syntax and the held-out rule are ``game.tracklist``'s, shared with the camera pilot. What is the
GA's own: ``ga.run --generated N`` (N generated tracks seeded from the run's seed, added to the list as
one more ``random-A..B`` range, so the same parser checks them against the held-out seeds), the cap of
tracks per run, and shipping generated tracks inline, since no evaluator has them on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluator import TrackData
from game import Track, tracklist
from game.tracklist import Purpose

TRAINING_SEED_STRIDE = 1_000
"""Generated training track i of a run with seed s has seed ``s * 1000 + i``."""
MAX_TRACKS = 64
"""Tracks per run: each is a task, and an evaluator keeps every task's track cached."""


@dataclass(frozen=True)
class TrackEntry:
    """One track of a run: a short label, what a task names it by, and the loaded track."""

    label: str
    ref: str | TrackData  # a bundled name, a file path, or inline data (generated tracks)
    track: Track


def generated_range(run_seed: int, n: int) -> str:
    """``--generated n`` of a run with seed ``run_seed`` in the list syntax ("" for none)."""
    if n < 0:
        raise ValueError(f"--generated must be at least 0, got {n}")
    first = run_seed * TRAINING_SEED_STRIDE
    return f"{tracklist.GENERATED_PREFIX}{first}..{first + n - 1}" if n else ""


def names(spec: str, purpose: Purpose, n_generated: int = 0, run_seed: int = 0) -> list[str]:
    """The track names of ``spec`` plus ``n_generated`` generated ones; ValueError (HeldOutError for a
    training command naming a held-out track) says what is wrong, loading nothing."""
    extra = generated_range(run_seed, n_generated)
    return tracklist.parse(f"{spec},{extra}" if extra else spec, purpose, max_tracks=MAX_TRACKS)


def entries(track_names: list[str]) -> list[TrackEntry]:
    """Load the named tracks; generated ones travel inline. TrackError for a name that is no track."""
    out = []
    for name in track_names:
        track = tracklist.load(name)
        ref = TrackData.from_track(track) if tracklist.generated_seed(name) is not None else name
        out.append(TrackEntry(tracklist.label(name), ref, track))
    return out


def parse(spec: str, purpose: Purpose, n_generated: int = 0, run_seed: int = 0) -> tuple[list[TrackEntry], str]:
    """The tracks of ``spec`` and ``n_generated`` generated ones, with a short label for the set (for
    run folder names): ``all``, or the first three tracks and how many more, then ``+genN``."""
    loaded = entries(names(spec, purpose, n_generated, run_seed))
    named = loaded[: len(loaded) - n_generated]
    if spec.strip() == tracklist.ALL:
        head = tracklist.ALL
    else:
        head = "+".join(e.label for e in named[:3]) + (f"+{len(named) - 3}" if len(named) > 3 else "")
    return loaded, head + (f"+gen{n_generated}" if n_generated else "")


def task_label(task) -> str:
    """The short name of an evaluation task's track, for reports."""
    return task.track.name if isinstance(task.track, TrackData) else Path(task.track).stem
