"""The vision pilot's boundary records: a collected episode's entry, the dataset manifest, the model card.

- :class:`EpisodeRecord`: the ``{prefix}:sessions`` entry of one collected episode, the 'done' mark
  written by ``pilot.collect`` after its frames, read by ``pilot.dataset`` export.
- :class:`DatasetManifest`: ``dataset.json``, written by ``pilot.dataset`` export, read by
  ``pilot.dataset.load`` for ``pilot.train``.
- :class:`ModelCard`: ``model.json`` beside ``model.onnx``, written by ``pilot.train`` (and
  ``pilot.drive --update-card``), read by ``pilot.runtime.PilotModel.load`` (so also ``pilot.serve``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from game.frame_records import SessionRecord
from game.records import Record


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


class CardInput(BaseModel):
    """What the runtime feeds the graph."""

    model_config = ConfigDict(extra="forbid")
    width: PositiveInt
    height: PositiveInt
    image: str = "RGB uint8 / 255, NHWC float32"
    speed: str = "m/s / 50, float32 [N, 1]"


class CardData(BaseModel):
    """What the model was trained on (``tracks``: the ones an evaluation must call seen)."""

    model_config = ConfigDict(extra="forbid")
    datasets: list[dict[str, Any]]
    frames: int
    train_frames: int
    validation_frames: int
    validation_tracks: list[str]
    tracks: list[str]


class ModelCard(Record):
    """``model.json``: the version and input size the runtime needs, plus what training and evaluation recorded."""

    NAME = "model card"
    REMEDY = "train the model again, or have pilot.train of this version rewrite its card"

    schema_version: Literal[1] = 1
    version: str
    input: CardInput
    created: str | None = None
    output: dict[str, str] = Field(default_factory=dict)
    architecture: dict[str, Any] = Field(default_factory=dict)
    data: CardData | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    history: dict[str, list[float]] = Field(default_factory=dict)
    evaluation: dict[str, Any] | None = Field(None, description="the last pilot.drive --pilot summary")

    @property
    def seen_tracks(self) -> set[str]:
        return set(self.data.tracks) if self.data else set()
