"""Evaluation laps driven in a running game over its lock-step HTTP API.

The game (``python -m game --mode lockstep``) holds the simulation; this side holds the controller.
The game is an environment (:class:`game.remote.RemoteGameEnv`) driven by the one roll-out under the
task's perturbation wrapper: each frame the controller sees the observation the game returned (JSON
floats round-trip exactly) and sends its four keys for one step, so the lap is the same lap, bit for
bit, as ``EvaluationTask(genome)`` in-process:

    python -m ga.remote --url http://127.0.0.1:8200 --best RUN_DIR/best.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluator import EvaluationTask, TrackData, make_controller
from ga.replay import ReplayError, load_best
from game import LapResult, TrackError, bundled_tracks
from game.perturbation import perturbed
from game.remote import RemoteGame, RemoteGameEnv, RemoteGameError
from game.rollout import rollout


def _track_args(task: EvaluationTask) -> dict[str, Any]:
    task = task.resolved()
    if isinstance(task.track, TrackData):
        return {"track_data": task.track.model_dump(mode="json")}
    if task.track in bundled_tracks():
        return {"track": task.track}
    raise RemoteGameError(f"track {task.track!r} cannot be sent to a game")


def remote_lap(task: EvaluationTask, genome: Sequence[float], game: RemoteGame | str) -> LapResult:
    """One evaluation lap of ``genome`` driven in a lock-step game; equals ``task(genome)``."""
    own = isinstance(game, str)
    game = RemoteGame(game) if own else game
    try:
        env = RemoteGameEnv(game, task.load_track(), _track_args(task), max_frames=task.max_frames,
                            stall_frames=task.stall_frames)
        controller = make_controller(task.controller, task.genome_array([genome]))
        return rollout(perturbed(env, task.perturbation), controller)[0]
    finally:
        if own:
            game.close()


def remote_evaluate(task: EvaluationTask, genomes: Sequence[Sequence[float]], url: str) -> list[LapResult]:
    """``task.evaluate_batch`` against a game: one lap after another on one game."""
    with RemoteGame(url) as game:
        return [remote_lap(task, g, game) for g in genomes]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ga.remote",
                                description="Drive an evolved controller's lap in a running lock-step game.")
    p.add_argument("--url", default="http://127.0.0.1:8200")
    p.add_argument("--best", required=True, help="RUN_DIR/best.json (or RUN_DIR)")
    args = p.parse_args(argv)
    try:
        task, genome, recorded = load_best(Path(args.best))
        result = remote_lap(task, genome, args.url)
    except (OSError, ReplayError, TrackError, RemoteGameError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = {"result": result.to_dict(), "matches_recorded": (result == recorded) if recorded else None}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
