"""The bundled tracks, and the one place that turns a track name or a file path into a Track.

Every CLI, API and task that names a track goes through ``load_track``, so users add tracks by
writing a JSON file anywhere, without touching the package.
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path

from game.track import Track, TrackError

TRACK_DIR = Path(__file__).parent
DEFAULT_TRACK = "circuit"


def bundled_tracks() -> list[str]:
    """Names of the tracks shipped with the package, in a stable order."""
    return sorted(p.stem for p in TRACK_DIR.glob("*.json"))


def load_track(name_or_path: str) -> Track:
    """A bundled track by name, or a track JSON file by path; TrackError says what is wrong."""
    if not isinstance(name_or_path, str) or not name_or_path:
        raise TrackError(f"a track is named by a bundled name or a JSON file path, got {name_or_path!r}")
    if name_or_path in bundled_tracks():
        return _bundled(name_or_path)
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        return _from_file(str(path.resolve()), _mtime(path))
    raise TrackError(
        f"unknown track '{name_or_path}': not a bundled track ({', '.join(bundled_tracks())}) "
        "and not a path to a track JSON file"
    )


def load_bundled_track(name: str) -> Track:
    """A bundled track only: what services use for names that arrive over the network."""
    if name not in bundled_tracks():
        raise TrackError(f"unknown track '{name}': bundled tracks are {', '.join(bundled_tracks())}")
    return _bundled(name)


@cache
def _bundled(name: str) -> Track:
    return Track.from_file(TRACK_DIR / f"{name}.json")


@lru_cache(maxsize=32)
def _from_file(path: str, mtime: float) -> Track:
    return Track.from_file(path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
