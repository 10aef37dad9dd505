"""The model card ``model.json`` beside ``model.onnx``: its record model.

Written by ``pilot.train`` and ``pilot.drive --update-card`` through ``pilot.runtime.write_card``;
read by ``pilot.runtime.read_card`` (``PilotModel.load``, so also ``pilot.serve``). It imports only
the record base, so the serving image needs nothing of the simulation.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from servicekit.records import Record


class CardInput(BaseModel):
    """What the runtime feeds the graph."""

    model_config = ConfigDict(extra="forbid")
    width: PositiveInt
    height: PositiveInt
    mode: str = Field("RGB", description="the PIL image mode of the frames it was trained on: a served image "
                      "of another mode (grayscale, RGBA, palette, ...) is refused, not converted")
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
