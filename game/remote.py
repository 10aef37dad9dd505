"""A client of the game's HTTP API: reset, step in lock-step, read the state.

Each answer carries what the car senses (JSON floats round-trip exactly), so a controller on the
other side of the API drives the same lap, bit for bit, as in-process: :mod:`ga.remote` drives
evolved controllers this way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from game import KEYS, Observation

TOKEN_ENV = "RRP_GAME_TOKEN"


class RemoteGameError(RuntimeError):
    pass


class RemoteGame:
    """A thin lock-step client of the game's HTTP API."""

    def __init__(self, url: str, *, timeout: float = 30.0, client: Any = None, token: str | None = None):
        """``token``: the game's bearer token (default: the environment's ``RRP_GAME_TOKEN``, if set)."""
        import httpx

        self.url = url.rstrip("/")
        self._own = client is None
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        headers = {"Authorization": f"Bearer {token}"} if token else None
        self.client = client or httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = self.client.post(path, json=body)
        if r.status_code != 200:
            try:
                detail = r.json().get("detail")
            except ValueError:
                detail = r.text
            raise RemoteGameError(f"{path} -> {r.status_code}: {detail}")
        return r.json()

    def state(self) -> dict[str, Any]:
        r = self.client.get("/v1/state")
        if r.status_code != 200:
            raise RemoteGameError(f"/v1/state -> {r.status_code}: {r.text}")
        return r.json()

    def reset(self, *, track: str | None = None, track_data: dict[str, Any] | None = None,
              max_frames: int | None = None, stall_frames: int | None = None,
              continuous: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {"continuous": continuous}
        for k, v in (("track", track), ("track_data", track_data), ("max_frames", max_frames),
                     ("stall_frames", stall_frames)):
            if v is not None:
                body[k] = v
        return self._post("/v1/reset", body)

    def step(self, keys: Sequence[bool] | dict[str, bool], steps: int = 1) -> dict[str, Any]:
        if not isinstance(keys, dict):
            keys = {k: bool(v) for k, v in zip(KEYS, keys, strict=True)}
        return self._post("/v1/step", {"keys": keys, "steps": steps})

    def close(self) -> None:
        if self._own:
            self.client.close()

    def __enter__(self) -> RemoteGame:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def observation(state: dict[str, Any]) -> Observation:
    """The controller's view of a game state: the same float64 values the game's Race produced."""
    return Observation(np.array([state["rays"]], dtype=np.float64), np.array([state["speed"]], dtype=np.float64))
