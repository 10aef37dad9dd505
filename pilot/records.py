"""The vision pilot's data records: a collected episode's entry and the dataset manifest.

- :class:`EpisodeRecord`: the ``{prefix}:sessions`` entry of one collected episode, the 'done' mark
  written by ``pilot.collect`` after its frames, read by ``pilot.dataset`` export.
- :class:`GameEpisodeRecord`: a stretch of a game session driven with the keys (one lap, or what is
  left of one), as a dataset episode: written into the manifest by ``pilot.dataset`` export.
- :class:`DatasetManifest`: ``dataset.json``, written by ``pilot.dataset`` export, read by
  ``pilot.dataset.load`` for ``pilot.train``.

The model card is in ``pilot.card``: serving needs it, and must not import the frame records (they
pull in the simulation).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

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


class GameEpisodeRecord(BaseModel):
    """A dataset episode cut from a game session (``python -m game --redis``): one lap of one reset, driven
    with the keys and labelled from them (``pilot.expert.keys_labels``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["game"] = "game"
    session: str = Field(description="the game's recording session")
    game_episode: int = Field(ge=0, description="resets of the game before this stretch")
    lap: int = Field(ge=0, description="laps of that reset driven before this stretch")
    track: str
    run: str
    index: int = Field(ge=0, description="the episode file episodes/NNNNN.npz")
    frames: PositiveInt = Field(description="labelled frames in the dataset")
    first_frame: int = Field(ge=0)
    last_frame: int = Field(ge=0)
    driver: Literal["keys"] = "keys"
    horizon: int = Field(ge=1, description="target speed: the speed reached this many frames later")
    format: Literal["jpeg", "png"]
    width: PositiveInt
    height: PositiveInt


DatasetEpisode = Annotated[EpisodeRecord | GameEpisodeRecord, Field(discriminator="kind")]


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
    episodes: list[DatasetEpisode] = Field(description="collected episodes and game laps, by index")
