"""The one JSON error format of the three services.

Every refusal is ``{"detail": "field: message; ...", "errors": [{"field": ..., "message": ...}]}`` with
its HTTP status (a service may add keys, as the pilot service adds ``model_version``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse


class ServiceError(Exception):
    """A refusal: ``status``, the ``field`` at fault ("" for none), a message, extra headers and the
    ``reason`` a service counts it under."""

    def __init__(self, status: int, field: str | None, message: str, headers: dict[str, str] | None = None,
                 reason: str = "invalid") -> None:
        super().__init__(message)
        self.status = status
        self.field = field or ""
        self.message = message
        self.headers = dict(headers or {})
        self.reason = reason

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [(self.field, self.message)]


def error_body(errors: Sequence[tuple[str, str]], **extra: Any) -> dict[str, Any]:
    detail = "; ".join(f"{f}: {m}" if f else m for f, m in errors)
    return {"detail": detail, "errors": [{"field": f, "message": m} for f, m in errors], **extra}


def error_response(status: int, errors: Sequence[tuple[str, str]], headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    return JSONResponse(error_body(errors, **extra), status, headers=headers)


def error_bytes(errors: Sequence[tuple[str, str]], **extra: Any) -> bytes:
    return json.dumps(error_body(errors, **extra)).encode()
