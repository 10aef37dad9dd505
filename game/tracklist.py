"""Track lists on the command line, and the held-out rule: the one place for both.

Every command that names several tracks (``ga.run``, ``ga.report``, ``pilot.collect``,
``pilot.drive``) reads them with :func:`parse`, so a list means the same thing everywhere::

    circuit,all,random-0..35,path/to/track.json,random-7

``all`` is every bundled track, ``random-N`` is ``game.generate_track(N)`` (the generator's own
name for it), ``random-A..B`` is A to B inclusive, anything else is a bundled name or a JSON path.

A driver is only judged fairly on tracks it never saw. So a range of generator seeds is held out:
a command that trains or tunes (``Purpose.TRAINING``) may not draw a held-out track, and judging
commands (``Purpose.JUDGING``) default to held-out tracks (:data:`UNSEEN`). The rule lives here, in
the bottom layer, so the GA and the camera pilot cannot drift apart again (they once did: a GA run
with ``--seed 1 --generated 10`` trained on exactly the pilot's unseen tracks).
"""

from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache
from pathlib import Path

from game.track import Track
from game.trackgen import generate_track
from game.tracks import bundled_tracks, load_track

ALL = "all"
GENERATED_PREFIX = "random-"
MAX_TRACKS = 1000
"""No list expands beyond this: a typo like ``random-0..9999999`` fails at once, not after an hour."""

HELD_OUT_SEEDS = range(1_000_000_000, 1_000_001_000)
"""Generator seeds no training or tuning command may draw. Far above any seed a person types or a
collection uses (``random-0..35``) and above every ``ga.run --generated`` seed (``run seed x 1000 + i``)
for run seeds below one million; ``ga.report`` judged on these very seeds before this rule existed,
so its held-out tables stay comparable. A thousand leaves room for larger judging sets."""
HELD_OUT_LOOKS: tuple[str, ...] = ()
"""Visual looks no training command may draw (none exist yet; the looks issue declares them here)."""
UNSEEN = f"{GENERATED_PREFIX}{HELD_OUT_SEEDS.start}..{HELD_OUT_SEEDS.start + 9}"
"""The held-out tracks every judging command drives by default (``ga.report``, ``pilot.drive --pilot``)."""
JUDGING_DEFAULT = f"{ALL},{UNSEEN}"
"""A judging command's default list: the bundled tracks (for comparison) and the unseen ones."""

_GENERATED = re.compile(r"random-(\d+)")
_RANGE = re.compile(r"random-(\d+)\.\.(\d+)")


class Purpose(Enum):
    """Why a command names tracks: only training and tuning are kept off the held-out tracks."""

    TRAINING = "training"
    JUDGING = "judging"


class HeldOutError(ValueError):
    """A training command named a held-out track."""


def held_out_range() -> str:
    """The held-out seeds in the list syntax, for messages and docs."""
    return f"{GENERATED_PREFIX}{HELD_OUT_SEEDS.start}..{HELD_OUT_SEEDS.stop - 1}"


def generated_seed(name: str) -> int | None:
    """The generator seed of ``random-N``; None for bundled names and paths."""
    m = _GENERATED.fullmatch(name)
    return int(m.group(1)) if m else None


def is_held_out(name: str) -> bool:
    """True for a generated track whose seed is held out."""
    seed = generated_seed(name)
    return seed is not None and seed in HELD_OUT_SEEDS


def check(names: list[str], purpose: Purpose) -> None:
    """Raise HeldOutError if a training command names a held-out track (used for track names that
    arrive by other ways than a list, e.g. a dataset's manifest)."""
    if purpose is Purpose.TRAINING:
        for name in names:
            if is_held_out(name):
                raise HeldOutError(f"{name} is held out for judging ({held_out_range()}): no training or "
                                   "tuning command may use it")


def label(name: str) -> str:
    """A short name for reports: the name itself, or a JSON path's file name without ``.json``."""
    return Path(name).stem


def parse(spec: str, purpose: Purpose, *, max_tracks: int = MAX_TRACKS) -> list[str]:
    """``"oval,random-3..5"`` -> ``["oval", "random-3", "random-4", "random-5"]``, in the order given.

    Names are not loaded here (see :func:`load`). ValueError for an empty name, an empty or reversed
    range, a track named twice (also through ``all``), more than ``max_tracks``; HeldOutError when
    ``purpose`` is training and a name is held out."""
    parts = [p.strip() for p in spec.split(",")]
    if not spec.strip() or any(not p for p in parts):
        raise ValueError(f"empty track name in {spec!r} (names are separated by single commas)")
    names: list[str] = []
    for part in parts:
        m = _RANGE.fullmatch(part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"empty track range {part!r} (write random-LOW..HIGH)")
            if hi - lo + 1 > max_tracks:
                raise ValueError(f"{part} is {hi - lo + 1} tracks; at most {max_tracks}")
            names += [f"{GENERATED_PREFIX}{s}" for s in range(lo, hi + 1)]
        elif part == ALL:
            names += bundled_tracks()
        else:
            names.append(part)
        if len(names) > max_tracks:
            raise ValueError(f"{spec!r} names more than {max_tracks} tracks")
    seen: set[str] = set()
    for name in names:
        if label(name) in seen:
            raise ValueError(f"track {label(name)!r} is named twice in {spec!r}")
        seen.add(label(name))
    check(names, purpose)
    return names


@lru_cache(maxsize=64)
def load(name: str) -> Track:
    """A generated track (``random-SEED``), a bundled track or a track JSON file; TrackError if none."""
    seed = generated_seed(name)
    return generate_track(seed) if seed is not None else load_track(name)

