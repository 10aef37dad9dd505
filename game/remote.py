"""Lock-step remote backend: run an evaluation lap against a game's HTTP API.

The game (``python -m game --mode lockstep``) holds the simulation; this side holds the controller.
Each frame the controller sees the observation the game returned (JSON floats round-trip exactly)
and sends its four keys for one step, so the lap is the same lap, bit for bit, as
``EvaluationTask(genome)`` in-process. ``--replay`` style watching of an evolved controller in a
running game (with its window, or recording frames) works the same way:

    python -m game.remote --url http://127.0.0.1:8200 --best RUN_DIR/best.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from game import KEYS, LapResult, Observation, bundled_tracks

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


def _track_args(task: Any) -> dict[str, Any]:
    from evaluator import TrackData

    task = task.resolved()
    if isinstance(task.track, TrackData):
        return {"track_data": task.track.model_dump(mode="json")}
    if task.track in bundled_tracks():
        return {"track": task.track}
    raise RemoteGameError(f"track {task.track!r} cannot be sent to a game")


def remote_lap(task: Any, genome: Sequence[float], game: RemoteGame | str) -> LapResult:
    """One evaluation lap of ``genome`` driven in a lock-step game; equals ``task(genome)``."""
    from evaluator import make_controller

    own = isinstance(game, str)
    game = RemoteGame(game) if own else game
    try:
        controller = make_controller(task.controller, task.genome_array([genome]))
        state = game.reset(**_track_args(task), max_frames=task.max_frames, stall_frames=task.stall_frames,
                           continuous=False)
        while not state["done"]:
            keys = controller.act(observation(state), state["frame"])
            state = game.step([bool(k) for k in np.asarray(keys)[0]], 1)
        return LapResult.from_dict(state["result"])
    finally:
        if own:
            game.close()


def remote_evaluate(task: Any, genomes: Sequence[Sequence[float]], url: str) -> list[LapResult]:
    """``task.evaluate_batch`` against a game: one lap after another on one game."""
    with RemoteGame(url) as game:
        return [remote_lap(task, g, game) for g in genomes]


def load_best(path: str) -> tuple[Any, list[float], dict[str, Any]]:
    """Read a GA run's best.json -> (EvaluationTask, genome, recorded result dict)."""
    from evaluator import EvaluationTask

    with open(path) as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or "genome" not in doc:
        raise ValueError(f"{path}: not a best.json (expected an object with 'genome', 'controller', 'task')")
    task_doc = dict(doc.get("task") or {})
    if "controller" in doc:
        task_doc.setdefault("controller", doc["controller"])
    task = EvaluationTask.model_validate(task_doc)
    genome = [float(g) for g in doc["genome"]]
    if len(genome) != task.controller.genome_length():
        raise ValueError(f"{path}: genome has {len(genome)} genes, {task.controller.describe()} needs "
                         f"{task.controller.genome_length()}")
    return task, genome, doc.get("result") or {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m game.remote",
                                description="Drive an evolved controller's lap in a running lock-step game.")
    p.add_argument("--url", default="http://127.0.0.1:8200")
    p.add_argument("--best", required=True, help="RUN_DIR/best.json")
    args = p.parse_args(argv)
    try:
        task, genome, recorded = load_best(args.best)
        result = remote_lap(task, genome, args.url)
    except (OSError, ValueError, RemoteGameError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = {"result": result.to_dict(), "matches_recorded": (result.to_dict() == recorded) if recorded else None}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
