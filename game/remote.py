"""A client of the game's HTTP API: reset, step in lock-step, read the state.

Each answer carries what the car senses (JSON floats round-trip exactly), so a controller on the
other side of the API drives the same lap, bit for bit, as in-process. :class:`RemoteGameEnv` is that
game as a Gymnasium vector environment of one car, so the one roll-out and the perturbation wrapper
drive it like the local race: :mod:`ga.remote` drives evolved controllers this way.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from game import KEYS, LapResult
from game.env import action_space, observation_space, start_options
from game.track import Track

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
              continuous: bool = True, start_offset: tuple[float, float] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"continuous": continuous}
        for k, v in (("track", track), ("track_data", track_data), ("max_frames", max_frames),
                     ("stall_frames", stall_frames), ("start_offset", start_offset)):
            if v is not None:
                body[k] = v
        return self._post("/v1/reset", body)

    def advance(self, keys: Sequence[bool] | dict[str, bool], steps: int = 1) -> dict[str, Any]:
        """``POST /v1/step``: hold ``keys`` for ``steps`` frames (lock-step); the game's state."""
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


def observation(state: dict[str, Any]) -> np.ndarray:
    """The environment's observation of a game state, shape (1, 16): the game's own float64 values."""
    return np.array([[*state["rays"], state["speed"]]], dtype=np.float64)


class RemoteGameEnv(VectorEnv):
    """One lap at a time in a lock-step game, as a vector environment of one car.

    ``track`` is the game's track loaded here (the perturbation wrapper keeps a shifted start on its
    road); ``track_args`` names it to the game (``track`` or ``track_data``, see :meth:`RemoteGame.reset`).
    """

    metadata = {"autoreset_mode": AutoresetMode.DISABLED, "render_modes": []}

    def __init__(self, game: RemoteGame, track: Track, track_args: dict[str, Any], *,
                 max_frames: int | None, stall_frames: int | None) -> None:
        self.game, self.track, self.track_args = game, track, track_args
        self.max_frames, self.stall_frames = max_frames, stall_frames
        self.num_envs = 1
        self.single_observation_space, self.single_action_space = observation_space(), action_space()
        self.observation_space = spaces.Box(self.single_observation_space.low[None],
                                            self.single_observation_space.high[None], dtype=np.float64)
        self.action_space = spaces.MultiBinary((1, 4))
        self._state: dict[str, Any] = {}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if (options or {}).get("poses") is not None:
            raise ValueError("a remote game starts its car on the start line: options['poses'] is not supported")
        self._state = self.game.reset(**self.track_args, max_frames=self.max_frames, stall_frames=self.stall_frames,
                                      continuous=False, start_offset=start_options(options))
        return observation(self._state), {}

    def step(self, actions: Any):
        before = self._state["lap"]["progress"]
        self._state = state = self.game.advance([bool(k) for k in np.asarray(actions).reshape(4)], 1)
        result = LapResult.from_dict(state["result"]) if state["done"] else None
        finished = np.array([result is not None and result.finished])
        info = {"lap": np.array([result], dtype=object), "_lap": np.array([True])} if result else {}
        reward = np.array([state["lap"]["progress"] - before])
        return observation(state), reward, finished, np.array([state["done"]]) & ~finished, info

    def results(self) -> list[LapResult]:
        return [LapResult.from_dict(self._state["result"])]
