"""The HTTP calls the map makes to one evaluator, and how their answers are read.

One :class:`Transport` per endpoint holds an ``httpx.AsyncClient`` with persistent keep-alive
connections. ``evaluate`` sends one ``POST /v1/evaluations`` and sorts the answer into what the
dispatcher does next (:class:`Answer`); ``probe`` and ``check_health`` are the readiness and liveness
checks. Connection problems raise :class:`TransportError` with a one-line reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

try:
    import orjson
except ImportError:  # pragma: no cover - optional speed-up
    orjson = None

from game import LapResult

EVALUATIONS_PATH = "/v1/evaluations"


class TransportError(Exception):
    """The request did not get an HTTP answer (connection refused or reset, timeout, garbage)."""


def describe_error(exc: BaseException) -> str:
    """One line saying why a call failed."""
    if isinstance(exc, TransportError):
        return str(exc)
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc or type(exc).__name__})"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _dumps(obj: Any) -> bytes:
    """JSON bytes; floats are written in their shortest exact form either way."""
    if orjson is not None:
        return orjson.dumps(obj)
    return json.dumps(obj, allow_nan=True).encode()


def request_body(task_json: str, genomes: list[list[float]], races: list[int] | None) -> bytes:
    """The ``POST /v1/evaluations`` body; the task's JSON is written once per task, not per request."""
    tail = b"" if races is None else b',"races":' + _dumps(races)
    return b'{"task":' + task_json.encode() + b',"genomes":' + _dumps(genomes) + tail + b"}"


@dataclass(frozen=True)
class Answer:
    """An evaluator's answer, sorted: ``results`` (one per genome), ``busy`` (a 503: retry after
    ``retry_after`` s, not a fault), ``fault`` (the endpoint misbehaved: 5xx, an unreadable body) or
    ``refused`` (a 4xx: the request itself is wrong, retrying cannot help)."""

    kind: str
    results: list[LapResult] | None = None
    retry_after: float = 0.0
    reason: str = ""


def _detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", resp.text))[:500]
    except Exception:
        return resp.text[:500]


def read_answer(resp: httpx.Response, n_genomes: int) -> Answer:
    status = resp.status_code
    if status == 200:
        try:
            content = resp.content
            data = orjson.loads(content) if orjson is not None else json.loads(content)
            results = [LapResult.from_dict(r) for r in data["results"]]
            if len(results) != n_genomes:
                raise ValueError(f"{len(results)} results for {n_genomes} genomes")
        except Exception as exc:
            return Answer("fault", reason=f"unreadable answer: {describe_error(exc)}")
        return Answer("results", results=results)
    if status == 503:
        try:
            retry_after = float(resp.headers.get("retry-after", "1"))
        except ValueError:
            retry_after = 1.0
        return Answer("busy", retry_after=retry_after)
    if status >= 500:
        return Answer("fault", reason=f"HTTP {status}: {_detail(resp)}")
    return Answer("refused", reason=f"HTTP {status}: {_detail(resp)}")


class Transport:
    """Keep-alive HTTP connections to one evaluator."""

    def __init__(self, url: str, headers: dict[str, str], *, timeout: float) -> None:
        self.url = url
        self._headers = headers
        self._client = httpx.AsyncClient(
            base_url=url,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=64, keepalive_expiry=60),
            timeout=timeout,
        )

    async def evaluate(self, body: bytes, n_genomes: int, timeout: float, connect_timeout: float) -> Answer:
        try:
            resp = await self._client.post(
                EVALUATIONS_PATH,
                content=body,
                headers=self._headers,
                timeout=httpx.Timeout(timeout, connect=connect_timeout),
            )
        except httpx.HTTPError as exc:
            raise TransportError(describe_error(exc)) from None
        return read_answer(resp, n_genomes)

    async def probe(self, timeout: float) -> dict[str, Any]:
        """Ready to take work? ``/readyz`` must answer 200; returns ``/v1/info`` (capacity, limits)."""
        ready = await self._client.get("/readyz", timeout=timeout)
        if ready.status_code != 200:
            raise TransportError(f"/readyz answered {ready.status_code}")
        info = await self._client.get("/v1/info", timeout=timeout)
        info.raise_for_status()
        return info.json()

    async def check_health(self, timeout: float) -> None:
        """Raises unless ``/healthz`` answers 200 within ``timeout`` (the process is alive and serving)."""
        resp = await self._client.get("/healthz", timeout=httpx.Timeout(timeout, connect=timeout))
        if resp.status_code != 200:
            raise TransportError(f"/healthz answered {resp.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
