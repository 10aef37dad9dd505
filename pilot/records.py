"""The vision pilot's data records: a collected episode's entry and the dataset manifest.

- :class:`EpisodeRecord`: the ``{prefix}:sessions`` entry of one collected episode, the 'done' mark
  written by ``pilot.collect`` after its frames, read by ``pilot.dataset`` export.
- :class:`DatasetManifest`: ``dataset.json``, written by ``pilot.dataset`` export, read by
  ``pilot.dataset.load`` for ``pilot.train``.

The model card is in ``pilot.card``: serving needs it, and must not import the frame records (they
pull in the simulation).
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, PositiveInt

from game.frame_records import SessionRecord
from servicekit.records import Record


class EpisodeRecord(SessionRecord):
    """One collected episode: everything that decided its frames (``pilot.collect.Episode``) and its size."""

    model_config = ConfigDict(extra="forbid")
    NAME = "episode record"
    REMEDY = "collect the run again with this version (python -m pilot.collect)"

    kind: Literal["episode"] = "episode"
    track: str
    run: str
    index: int = Field(ge=0)
    seed: int
    frames: PositiveInt
    driver: Literal["expert", "model"]
    restart: bool
    noise: float
    speed_factor: float
    delay: int = Field(ge=0)
    expert: str
    width: PositiveInt
    height: PositiveInt
    wall_contacts: int = Field(ge=0)


class DatasetManifest(Record):
    """``dataset.json``: the run a dataset came from, its frame size and every episode in it."""

    NAME = "dataset manifest"
    REMEDY = "export the dataset again with this version (python -m pilot.dataset export)"

    schema_version: Literal[1] = 1
    run: str
    frames: int = Field(ge=0)
    width: PositiveInt
    height: PositiveInt
    tracks: list[str]
    episodes: list[EpisodeRecord]
