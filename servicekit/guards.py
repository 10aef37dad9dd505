"""Admission guards: what every request meets before a route runs, and the capacity a route takes.

:class:`Admission` is ASGI middleware in front of a service's routes. In order:

1. the bearer token, compared in constant time, on the paths the service protects (401);
2. a declared ``Content-Length`` over the limit: 413 before a byte is read, connection closed;
3. the body, read whole before any route runs: 413 as soon as it crosses the limit (chunked uploads
   too), 408 if it does not arrive at :attr:`BodyPolicy.min_rate` bytes per second after a short grace,
   or not at all within :attr:`BodyPolicy.timeout_s`; 503 when the bodies being received at once
   would exceed the :class:`ByteBudget`.

Why a minimum rate and not a count of uploads: a count is a shared resource, so a few connections
trickling bytes take it from everyone (8 of them shut out an evaluator for its whole body timeout).
A rate costs the slow client only: it is cut after ``grace_s`` plus what it did send, and until then
it holds its own connection and the bytes it sent, nothing anyone else needs. Per-address limits were
not taken: clients behind one proxy or NAT, and everything on loopback, share an address. What stays
global is memory, counted in bytes received (:class:`ByteBudget`): to fill it a client must really
send that many bytes, so it costs the sender bandwidth, not the server a slot.

Routes take a :class:`Capacity` slot only once their body is in (503 + ``Retry-After`` when full).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from servicekit.errors import ServiceError, error_bytes

DEFAULT_MIN_RATE = 1024
"""Bytes per second a body must average once the grace has passed (a 2G phone link does 10 times this)."""
DEFAULT_GRACE_S = 5.0


def bearer_ok(authorization: str | bytes | None, token: str | None) -> bool:
    """Whether an ``Authorization`` header carries ``Bearer TOKEN`` (always true without a token);
    the comparison takes the same time wherever the tokens differ."""
    if token is None:
        return True
    if isinstance(authorization, str):
        authorization = authorization.encode("latin-1", "replace")
    scheme, _, given = (authorization or b"").partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token.encode())


@dataclass(frozen=True)
class BodyPolicy:
    """How a request body must arrive."""

    max_bytes: int
    timeout_s: float
    min_rate: float = DEFAULT_MIN_RATE
    """bytes per second, averaged from the start of the body after ``grace_s`` (0: no minimum)"""
    grace_s: float = DEFAULT_GRACE_S


class ByteBudget:
    """Bytes of request bodies being received at once, all requests together (one event loop)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.receiving = 0  # bodies being received now

    def take(self, n: int) -> None:
        if self.used + n > self.limit:
            raise ServiceError(503, None, f"busy: {self.used} bytes of request bodies being received "
                               f"(limit {self.limit}); retry", {"Retry-After": "1"}, reason="overloaded")
        self.used += n


async def read_body(receive: Callable[[], Any], policy: BodyPolicy, budget: ByteBudget | None = None) -> bytes:
    """The whole body from ASGI ``receive``, or a :class:`ServiceError` (413, 408, 503); None if the
    client left."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    hard = start + policy.timeout_s
    chunks: list[bytes] = []
    size = 0
    if budget is not None:
        budget.receiving += 1
    try:
        while True:
            due = hard if not policy.min_rate else min(hard, start + policy.grace_s + size / policy.min_rate)
            try:
                message = await asyncio.wait_for(receive(), max(0.0, due - loop.time()))
            except TimeoutError:
                if due >= hard:
                    message = f"request body not received within {policy.timeout_s:g} s"
                else:
                    message = (f"request body arriving slower than {policy.min_rate:g} bytes/s "
                               f"({size} bytes in {loop.time() - start:.1f} s)")
                raise ServiceError(408, "body", message, {"Connection": "close"}, reason="body_timeout") from None
            if message["type"] == "http.disconnect":
                raise ClientLeft
            chunk = message.get("body", b"")
            if size + len(chunk) > policy.max_bytes:
                raise ServiceError(413, "body", f"request body exceeds the limit of {policy.max_bytes} bytes",
                                   {"Connection": "close"}, reason="too_large")
            if budget is not None:
                budget.take(len(chunk))
            size += len(chunk)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    finally:
        if budget is not None:
            budget.used -= size
            budget.receiving -= 1


class ClientLeft(Exception):
    """The client disconnected before its body was complete (nothing to answer)."""


def declared_length(headers: list[tuple[bytes, bytes]], limit: int) -> None:
    """400 for a ``Content-Length`` that is not a number, 413 for one over ``limit`` (nothing read)."""
    for name, value in headers:
        if name == b"content-length":
            if not value.strip().isdigit():
                raise ServiceError(400, "Content-Length", "not an integer")
            if int(value) > limit:
                raise ServiceError(413, "body", f"request body of {int(value)} bytes exceeds the limit of "
                                   f"{limit} bytes", {"Connection": "close"}, reason="too_large")


class Admission:
    """ASGI middleware: token, declared size, the body at a minimum rate within a deadline (see the module).

    ``protected(method, path)``: whether the route needs the bearer token. ``on_refuse(error)`` is called for
    each refusal (to count it) and may return extra keys for the error body.
    """

    def __init__(self, app, policy: BodyPolicy, *, budget: ByteBudget | None = None, token: str | None = None,
                 protected: Callable[[str, str], bool] = lambda method, path: True,
                 on_refuse: Callable[[ServiceError], dict | None] | None = None) -> None:
        self.app = app
        self.policy = policy
        self.budget = budget or ByteBudget(16 * policy.max_bytes)
        self.token = token
        self.protected = protected
        self.on_refuse = on_refuse

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = scope.get("headers", [])
        try:
            if self.token is not None and self.protected(scope["method"], scope["path"]):
                auth = next((v for k, v in headers if k == b"authorization"), None)
                if not bearer_ok(auth, self.token):
                    raise ServiceError(401, "Authorization", "missing or wrong bearer token (Authorization: "
                                       "Bearer TOKEN)", {"WWW-Authenticate": "Bearer"}, reason="unauthorized")
            declared_length(headers, self.policy.max_bytes)
            body = await read_body(receive, self.policy, self.budget)
        except ClientLeft:
            return None
        except ServiceError as exc:
            return await self.refuse(send, exc)
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        return await self.app(scope, replay, send)

    async def refuse(self, send, exc: ServiceError) -> None:
        extra = (self.on_refuse(exc) if self.on_refuse else None) or {}
        body = error_bytes(exc.errors, **extra)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Capacity:
    """Requests a route serves at once; beyond ``limit`` the next is refused at once (503 + Retry-After)
    rather than queued. Taken once the body is in, so slow uploads never hold one."""

    def __init__(self, limit: int, busy_message: Callable[[int], str], retry_after_s: int = 1) -> None:
        self.limit = limit
        self.inflight = 0
        self.busy_message = busy_message
        self.retry_after_s = retry_after_s

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if self.inflight >= self.limit:
            raise ServiceError(503, None, self.busy_message(self.inflight),
                               {"Retry-After": str(self.retry_after_s)}, reason="overloaded")
        self.inflight += 1
        try:
            yield
        finally:
            self.inflight -= 1
