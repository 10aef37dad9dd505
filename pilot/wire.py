"""The pilot service's HTTP contract: request and response models (they make the OpenAPI document),
decoding of the two request forms, and the refusals in the services' one error format."""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from servicekit.errors import ServiceError

IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}

Speed = Annotated[
    float,
    Field(ge=-50.0, le=50.0, allow_inf_nan=False, description="measured speed of the car, m/s (reverse < 0)"),
]


# --- the contract ---------------------------------------------------------------------------------


class Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field(description="PNG or JPEG bytes, base64, of the model's input size (GET /v1/model)")
    speed: Speed


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frames: list[Frame] = Field(min_length=1, description="one frame or a batch, answered in this order")


class Keys(BaseModel):
    forward: bool
    back: bool
    left: bool
    right: bool


class FramePrediction(BaseModel):
    steering: float = Field(description="-1..1, positive steers left")
    target_speed: float = Field(description="m/s the model wants to drive at")
    keys: Keys = Field(description="the game's four keys: steering with a dead band, pedals from the speeds")


class PredictResponse(BaseModel):
    model_version: str
    predictions: list[FramePrediction]


class ModelInfo(BaseModel):
    model_version: str | None = Field(description="the version serving now (None before a model loaded)")
    input: dict[str, int | str] | None = Field(description="{width, height, mode} every image must have")
    card: dict[str, Any] | None = Field(description="the model card (model.json) of the serving model")
    last_error: str | None = Field(description="why the latest file at the model path was not loaded")


class ReloadResponse(BaseModel):
    model_version: str
    reloaded: bool


class ErrorResponse(BaseModel):
    detail: str
    errors: list[dict[str, str]]
    model_version: str | None = None


class ApiError(ServiceError):
    """A refusal (:mod:`servicekit.errors`), counted under ``reason``."""

    def __init__(self, status: int, field: str, message: str, reason: str) -> None:
        super().__init__(status, field, message, reason=reason)


def _field(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


MODE_NAMES = {"1": "1-bit black and white", "L": "grayscale", "LA": "grayscale with alpha", "I": "32-bit grayscale",
              "I;16": "16-bit grayscale", "P": "palette", "PA": "palette with alpha", "RGB": "RGB", "RGBA": "RGBA",
              "CMYK": "CMYK", "YCbCr": "YCbCr", "F": "floating-point grayscale"}


def decode_image(data: bytes, size: tuple[int, int], field: str, mode: str = "RGB") -> np.ndarray:
    """PNG/JPEG bytes -> uint8 (H, W, 3) RGB; the size and the mode are read from the header and checked
    before decoding. Another mode than the model's (``mode``, the card's ``input.mode``) is refused, not
    converted: a grayscale or palette camera, or an alpha channel, is a camera set up unlike the
    training frames, and a silent conversion would hide it."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=tuple(IMAGE_TYPES.values())) as image:
            if image.size != size:
                raise ApiError(422, field, f"{image.size[0]}x{image.size[1]} image, this model takes "
                               f"{size[0]}x{size[1]} (GET /v1/model)", "wrong_size")
            if image.mode != mode:
                name = MODE_NAMES.get(image.mode, image.mode)
                raise ApiError(422, field, f"{name} image (mode {image.mode}), this model takes "
                               f"{MODE_NAMES.get(mode, mode)} (mode {mode}, GET /v1/model)", "wrong_mode")
            return np.asarray(image)
    except ApiError:
        raise
    except Exception as exc:  # PIL raises several kinds (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise ApiError(422, field, f"not a decodable PNG or JPEG image ({type(exc).__name__})", "bad_image") from None


def _frames_from_json(body: bytes) -> list[tuple[bytes, float]]:
    try:
        request = PredictRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = []
        for err in exc.errors(include_input=False):
            if err["type"] == "json_invalid":
                errors.append(("body", f"not valid JSON: {err.get('ctx', {}).get('error', err['msg'])}"))
            else:
                errors.append((_field(err["loc"]), err["msg"]))
        raise _Invalid(errors) from None
    frames = []
    for i, frame in enumerate(request.frames):
        try:
            frames.append((base64.b64decode(frame.image, validate=True), frame.speed))
        except (binascii.Error, ValueError):  # a str with non-ASCII characters raises ValueError
            raise ApiError(422, f"frames[{i}].image", "not valid base64", "bad_image") from None
    return frames


class _Invalid(Exception):
    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors


_SPEED = TypeAdapter(Speed)


def _frame_from_raw(body: bytes, speed: str | None) -> list[tuple[bytes, float]]:
    if speed is None:
        raise _Invalid([("speed", "query parameter required with an image body (?speed=M/S)")])
    try:
        return [(body, _SPEED.validate_strings(speed))]
    except ValidationError as exc:
        raise _Invalid([("speed", exc.errors(include_input=False)[0]["msg"])]) from None


def _inline(schema: dict) -> dict:
    """A pydantic JSON schema with its ``$defs`` inlined (for the OpenAPI request body)."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return walk(defs[node["$ref"].rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items()}
        return [walk(v) for v in node] if isinstance(node, list) else node

    return walk(schema)


