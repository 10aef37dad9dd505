"""The evaluator's HTTP contract: request and response models (they make the OpenAPI document) and
the error answers, whose ``detail`` names the field that is wrong (``genomes[3]: ...``)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, model_validator

from evaluator.task import EvaluationTask
from game import bundled_tracks
from game.race import LapResult
from servicekit.errors import ServiceError, error_response


class EvaluationRequest(BaseModel):
    """A declared task and the genomes to drive with it."""

    model_config = ConfigDict(extra="forbid")

    task: EvaluationTask = Field(description="track (bundled name or inline track data), frame limit, controller spec")
    genomes: list[list[FiniteFloat]] = Field(
        min_length=1, description="flat float vectors, each of the controller spec's genome length"
    )
    races: list[int] | None = Field(
        default=None,
        description="sizes of the consecutive races the genomes are driven in (default: one race of them all); "
        "results are the same either way, cars never interact",
    )

    @model_validator(mode="before")
    @classmethod
    def _track_is_bundled_or_inline(cls, data: Any) -> Any:
        # Runs before the task is built: a string that is not a bundled track name (for example a path
        # on this machine) never reaches the track loader.
        if isinstance(data, dict):
            task = data.get("task")
            if isinstance(task, dict):
                track = task.get("track")
                if isinstance(track, str) and track not in bundled_names():
                    raise ValueError(
                        f"task.track: unknown track {track!r}; over HTTP a track is a bundled name "
                        f"({', '.join(bundled_names())}) or inline track data"
                    )
        return data

    @model_validator(mode="after")
    def _genome_lengths(self) -> EvaluationRequest:
        if self.races is not None and (any(n < 1 for n in self.races) or sum(self.races) != len(self.genomes)):
            raise ValueError(f"races: sizes must be >= 1 and add up to the {len(self.genomes)} genomes")
        expected = self.task.controller.genome_length()
        for i, genome in enumerate(self.genomes):
            if len(genome) != expected:
                raise ValueError(
                    f"genomes[{i}]: expected {expected} floats for controller "
                    f"{self.task.controller.describe()}, got {len(genome)}"
                )
        return self


class EvaluationResponse(BaseModel):
    results: list[LapResult] = Field(description="one per genome, in request order")
    evaluator: str = Field(description="which evaluator answered")
    elapsed_s: float = Field(description="seconds spent evaluating (excluding the network)")


class InfoResponse(BaseModel):
    version: str
    evaluator: str
    tracks: list[str]
    controller_kinds: list[str]
    capacity: int = Field(description="evaluation requests taken at once; beyond it 503")
    workers: int
    max_batch: int
    max_frames: int
    max_body_bytes: int
    auth: bool


class ErrorResponse(BaseModel):
    detail: str
    errors: list[dict[str, str]] = Field(default_factory=list)


@cache
def bundled_names() -> tuple[str, ...]:
    """The tracks a request may name (anything else must come inline)."""
    return tuple(bundled_tracks())


class ApiError(ServiceError):
    """A refusal in the services' one error format (:mod:`servicekit.errors`)."""

    def response(self) -> JSONResponse:
        return error_response(self.status, self.errors, self.headers)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "tuple"}


def _field_name(loc: Sequence[Any]) -> str:
    # drop "body" and the tags pydantic adds for union members ("str", "TrackData", "function-after[..]")
    parts = [
        p
        for p in loc
        if p != "body" and not (isinstance(p, str) and (p in _TYPE_TAGS or p[:1].isupper() or "[" in p))
    ]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
    return out


ERROR_REASONS = {
    400: "invalid", 401: "unauthorized", 408: "slow_body", 413: "too_large", 422: "invalid", 500: "internal",
    503: "overloaded",
}
"""The ``reason`` label of ``rrp_errors_total`` for each error status."""


def validation_errors(errors: Sequence[dict]) -> JSONResponse:
    """pydantic errors -> 422 whose ``detail`` names each field (``genomes[3]: ...``)."""
    out = []
    for err in errors:
        field = _field_name(err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        if err.get("type") == "json_invalid":
            field, msg = "body", f"not valid JSON: {err.get('ctx', {}).get('error', msg)}"
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
            # our model validators name the field at the start of the message
            head, sep, rest = msg.partition(": ")
            if sep and " " not in head:
                field, msg = head, rest
        out.append({"field": field, "message": msg})
    detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in out)
    return JSONResponse({"detail": detail or "invalid request", "errors": out}, 422)
