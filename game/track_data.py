"""The one model of a track carried inline (in an evaluation task, in the game API's reset).

A pod or a game can then drive a track that only exists on the sender's disk. It is validated like a
track file (closed, no self-intersection, minimum width) when it becomes a :class:`~game.track.Track`,
and its point limit is the track format's own, :data:`game.track.MAX_POINTS`.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

from game.track import MAX_POINTS, Track


class TrackData(BaseModel):
    """A track as JSON data: name, road width, closed centre-line control points."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    width: FiniteFloat
    points: tuple[tuple[FiniteFloat, FiniteFloat], ...] = Field(min_length=4, max_length=MAX_POINTS)
    description: str = Field(default="", max_length=500)

    def to_track(self, source: str | None = None, *, cached: bool = True) -> Track:
        """The validated track (TrackError says what is wrong, naming ``source``). ``cached``: kept in a
        small cache (a track may hold up to 64 MB of grid); an evaluator worker builds its own and keeps
        it in its byte-bounded cache instead."""
        build = _track_from_data if cached else _track_from_data.__wrapped__
        return build(self, source or f"inline track '{self.name}'")

    @classmethod
    def from_track(cls, track: Track) -> TrackData:
        """The data of a loaded or generated track, to ship it inline."""
        return cls(name=track.name, width=track.width, points=tuple(map(tuple, track.points.tolist())),
                   description=track.description)


@lru_cache(maxsize=4)
def _track_from_data(data: TrackData, source: str) -> Track:
    doc = {"name": data.name, "width": data.width, "points": [list(p) for p in data.points],
           "description": data.description}
    return Track.from_json(doc, source=source)
