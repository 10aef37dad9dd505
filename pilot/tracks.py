"""Naming tracks on the command line: bundled names, JSON paths, and generated tracks by seed.

``random-17`` is ``game.generate_track(17)`` (the generator's own naming), and ``random-0..39`` is forty
of them, so a collection, a training card and an evaluation can name exactly which tracks they used.
"""

from __future__ import annotations

import re
from functools import lru_cache

from game import generate_track, load_track
from game.track import Track

_GENERATED = re.compile(r"random-(\d+)")
_RANGE = re.compile(r"random-(\d+)\.\.(\d+)")
BUNDLED = "circuit,hairpins,oval,rally"


def parse_tracks(spec: str) -> list[str]:
    """``"circuit,random-0..3"`` -> ``["circuit", "random-0", "random-1", "random-2", "random-3"]``."""
    names: list[str] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        m = _RANGE.fullmatch(part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise ValueError(f"empty track range {part!r}")
            names += [f"random-{s}" for s in range(lo, hi + 1)]
        else:
            names.append(part)
    if not names:
        raise ValueError(f"no tracks in {spec!r}")
    return names


@lru_cache(maxsize=64)
def track_by_name(name: str) -> Track:
    """A generated track (``random-SEED``), a bundled track or a track JSON file; TrackError if none."""
    m = _GENERATED.fullmatch(name)
    return generate_track(int(m.group(1))) if m else load_track(name)
