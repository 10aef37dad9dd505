"""A minimal keep-alive HTTP/1.1 client for the evaluation requests of the HTTP map.

Why not httpx here: the dispatch thread sends thousands of small POSTs per second on a machine
whose cores are busy simulating, and ``benchmarks/bench_http_map.py`` measured about 1.0 ms of
client CPU per request with httpx against 0.2-0.3 ms with this client. That difference is what
lets short tasks approach the process pool's efficiency. It speaks only what the evaluator
service answers (status line, headers, Content-Length or chunked bodies, keep-alive); probes,
health checks and ``https://`` endpoints go through httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx

try:
    import orjson
except ImportError:  # pragma: no cover - optional speed-up
    orjson = None

__all__ = ["Http1Pool", "Reply", "TransportError"]


class TransportError(Exception):
    """The request did not get an HTTP answer (connection refused or reset, timeout, garbage)."""


class Reply:
    """What the dispatcher needs of an HTTP answer."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes):
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        return orjson.loads(self.content) if orjson is not None else json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class Http1Connection:
    """One keep-alive HTTP/1.1 connection on asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()

    def usable(self, expiry: float) -> bool:
        return (
            not self.reader.at_eof()
            and not self.writer.is_closing()
            and time.monotonic() - self.idle_since < expiry
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()

    async def exchange(self, request: bytes) -> tuple[Reply, bool]:
        """Send one request, read its answer; returns (reply, connection still reusable)."""
        self.writer.write(request)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            version, status_text = lines[0].split(" ", 2)[:2]
            status = int(status_text)
        except ValueError:
            raise TransportError(f"not an HTTP answer: {lines[0][:80]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            content = b"".join(parts)
        elif "content-length" in headers:
            content = await self.reader.readexactly(int(headers["content-length"]))
        else:  # delimited by the end of the connection
            content = await self.reader.read()
            headers["connection"] = "close"
        keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        self.idle_since = time.monotonic()
        return Reply(status, headers, content), keep


class Http1Pool:
    """Keep-alive connections to one ``http://`` endpoint (see the module docstring for why)."""

    def __init__(self, url: str, headers: dict[str, str], expiry: float = 30.0):
        parsed = httpx.URL(url)
        self.host = parsed.host
        self.port = parsed.port or 80
        host_header = parsed.host if ":" not in parsed.host else f"[{parsed.host}]"
        self.prefix = f"{parsed.path.rstrip('/')}"
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head = (
            f"Host: {host_header}:{self.port}\r\nUser-Agent: rrp-http-executor\r\n"
            f"Accept: application/json\r\n{extra}"
        )
        self.expiry = expiry
        self._idle: list[Http1Connection] = []

    async def _connect(self, connect_timeout: float) -> Http1Connection:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=1 << 20), connect_timeout
        )
        return Http1Connection(reader, writer)

    async def post(self, path: str, body: bytes, timeout: float, connect_timeout: float) -> Reply:
        request = (
            f"POST {self.prefix}{path} HTTP/1.1\r\n{self._head}Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        while self._idle:
            conn = self._idle.pop()
            if not conn.usable(self.expiry):
                conn.close()
                continue
            try:
                return await self._exchange(conn, request, timeout)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                # a kept-alive connection the server had closed: try a fresh one, once
                if isinstance(exc, asyncio.IncompleteReadError) and exc.partial:
                    raise TransportError(f"connection closed mid-answer ({exc})") from None
                break
        try:
            conn = await self._connect(connect_timeout)
        except TimeoutError:
            raise TransportError(f"cannot connect (no answer within {connect_timeout:g} s)") from None
        except OSError as exc:
            raise TransportError(f"cannot connect ({exc.strerror or exc})") from None
        try:
            return await self._exchange(conn, request, timeout)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise TransportError(f"connection lost ({type(exc).__name__}: {exc})") from None

    async def _exchange(self, conn: Http1Connection, request: bytes, timeout: float) -> Reply:
        ok = False
        try:
            try:
                async with asyncio.timeout(timeout):  # no extra task per request, unlike wait_for
                    reply, keep = await conn.exchange(request)
            except TimeoutError:
                raise TransportError(f"timed out (no answer within {timeout:g} s)") from None
            ok = keep
            return reply
        finally:
            if ok:
                self._idle.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
