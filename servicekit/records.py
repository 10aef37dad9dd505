"""Records that cross a process boundary: one pydantic model each, with a schema version.

Whatever one process writes and another reads later (a GA run's ``best.json``, a frame in a Redis
stream, a session's metadata, a dataset manifest, a model card) is a :class:`Record` with exactly one
writer and one reader going through its model, so the two cannot drift apart unnoticed. A record from
another version of the code (no ``schema_version``, or another number) is refused with one line that
names the file or key and says what to do, instead of a ``KeyError`` deep inside a reader.

The base is in the bottom layer because the game writes records too (frames, sessions) and the pilot's
serving image reads a model card without the simulation; each model lives beside its one writer. The
frame records themselves are in ``game.frame_records``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError

from servicekit import atomic


class RecordError(ValueError):
    """A record that cannot be read; the message is one line naming the file (or key) and what to do."""


class Record(BaseModel):
    """A versioned record. Subclasses declare ``schema_version: Literal[N] = N`` (N is the version
    their reader accepts), a ``NAME`` for messages and a ``REMEDY`` for a file of another version."""

    model_config = ConfigDict(extra="forbid")

    NAME: ClassVar[str] = "record"
    REMEDY: ClassVar[str] = "write it again with this version"

    @classmethod
    def current_version(cls) -> int:
        return cls.model_fields["schema_version"].default

    @classmethod
    def from_doc(cls, doc: Any, where: str) -> Self:
        """Validate a decoded document; ``where`` (a path, a Redis key) names it in messages."""
        current = cls.current_version()
        found = doc.get("schema_version") if isinstance(doc, dict) else None
        if found != current:
            written = ("an older version (no schema_version)" if found is None
                       else f"another version (schema_version {found!r})")
            raise RecordError(f"{where}: {cls.NAME} written by {written}, this version reads schema_version "
                              f"{current}: {cls.REMEDY}")
        try:
            return cls.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(map(str, err["loc"])) or "document"
            raise RecordError(f"{where}: invalid {cls.NAME}: {loc}: {err['msg']}") from None

    @classmethod
    def from_json(cls, text: str | bytes, where: str) -> Self:
        try:
            doc = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RecordError(f"{where}: {cls.NAME} is not JSON: {exc}") from None
        return cls.from_doc(doc, where)

    @classmethod
    def read(cls, path: str | os.PathLike) -> Self:
        """The one file reader. A missing file raises ``FileNotFoundError`` (the caller knows what it means)."""
        path = Path(path)
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise RecordError(f"cannot read {path}: {exc}") from None
        return cls.from_json(text, str(path))

    def to_doc(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_json(self) -> str:
        return json.dumps(self.to_doc(), sort_keys=True, allow_nan=False)

    def write(self, path: str | os.PathLike) -> None:
        """The one file writer: stable JSON (sorted keys), replaced atomically."""
        atomic.write_json(path, self.to_doc())
