"""The Redis frame record and the sessions-hash entry: what a frame stream holds, for every writer and reader.

Writers: the game's in-loop recorder (``game.recorder``) and the pilot's collection
(``pilot.collect.write_episode``). Readers: ``pilot.dataset`` export and ``game.frames`` export.

A frame is one Redis stream entry, a flat field -> value map (that is all a stream entry can be):
numbers as text, ``rays`` and ``controls`` as JSON, ``image`` as the encoded bytes, absent optional
fields left out. :meth:`FrameRecord.to_fields` and :meth:`FrameRecord.from_fields` are the only two
places that know this layout.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from game.physics import KEYS
from servicekit.records import Record, RecordError

_JSON_FIELDS = ("rays", "controls")


class FrameRecord(Record):
    """One camera frame with what the car sensed, did and where it was; collection adds the labels.

    Version 2 added ``expert`` (who labelled a collected frame); a version 1 reader would refuse it as an
    unknown field, so the version says it first."""

    NAME = "frame record"
    REMEDY = "record or collect the frames again with this version (python -m game --redis, python -m pilot.collect)"

    schema_version: Literal[2] = 2
    session: str
    frame: int = Field(ge=0, description="frame index in its episode (restarts at 0 with each reset)")
    image: bytes
    format: Literal["jpeg", "png"]
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    track: str
    speed: float = Field(description="m/s")
    rays: list[float] = Field(description="wall distances in m, -90..+90 degrees from the heading")
    controls: dict[str, bool] = Field(description="the four keys held: forward, back, left, right")
    x: float
    y: float
    heading: float
    t: float | None = Field(None, description="wall time the game offered the frame (the game's recorder)")
    progress: float | None = None
    episode: int | None = Field(None, description="the game's resets so far, or the collection episode index")
    steering: float | None = Field(None, description="label: the expert's steering in -1..1 (collection)")
    target_speed: float | None = Field(None, description="label: the expert's target speed, m/s (collection)")
    expert: str | None = Field(None, description="who labelled the frame: 'pursuit' or 'genome' (collection)")

    @field_validator("controls")
    @classmethod
    def _four_keys(cls, value: dict[str, bool]) -> dict[str, bool]:
        if set(value) != set(KEYS):
            raise ValueError(f"controls must name exactly the keys {KEYS}")
        return {k: value[k] for k in KEYS}

    def to_fields(self) -> dict[str, bytes | str | int]:
        """The stream entry (the one writer of the layout)."""
        out: dict[str, bytes | str | int] = {}
        for name, value in self:
            if value is None:
                continue
            if name in _JSON_FIELDS:
                out[name] = json.dumps(value)
            elif isinstance(value, float):
                out[name] = repr(value)
            else:
                out[name] = value
        return out

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, Any], where: str) -> FrameRecord:
        """A stream entry as read back (the one reader of the layout); ``where`` names it in messages."""
        doc: dict[str, Any] = {}
        for key, value in fields.items():
            name = key.decode() if isinstance(key, bytes) else key
            if name != "image" and isinstance(value, bytes):
                value = value.decode()
            doc[name] = value
        try:
            for name in _JSON_FIELDS:
                if name in doc:
                    doc[name] = json.loads(doc[name])
            if "schema_version" in doc:
                doc["schema_version"] = int(doc["schema_version"])
        except ValueError as exc:
            raise RecordError(f"{where}: invalid {cls.NAME}: {exc}") from None
        return cls.from_doc(doc, where)


class SessionRecord(Record):
    """An entry of the ``{prefix}:sessions`` hash (session id -> JSON): what every recorded stream has.

    ``kind`` tells a game session (:class:`GameSession`) from a collection episode (the pilot's
    ``EpisodeRecord``, which extends this). A reader that only lists sessions reads this base, which
    keeps the fields of either kind."""

    model_config = ConfigDict(extra="allow")
    NAME = "session record"
    REMEDY = "record or collect the session again with this version"

    schema_version: Literal[1] = 1
    kind: str
    session: str
    track: str | None = Field(None, description="the (first) track driven")
    format: Literal["jpeg", "png"]
    started: float = Field(description="Unix time the session (or episode) was written")


class GameSession(SessionRecord):
    """The game's recorder session: the tracks driven so far and how it records."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["game"] = "game"
    tracks: list[str] = []
    every: int = Field(ge=1, description="every k-th frame is recorded")
    stream: str
    size: list[int] | None = None
    mode: str | None = None
    replay: str | None = Field(None, description="the GA run being replayed, if any")
