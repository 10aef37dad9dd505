"""``python -m ga.replay RUN_DIR``: re-drive a run's best genome and print its lap.

The lap is simulated again from ``best.json`` alone (genome, task), so this also checks
that the stored result is reproducible on this machine. To watch the evolved driver in the 3D game:
``python -m ga.replay RUN_DIR --watch`` (game flags after ``--``, e.g. ``-- --headless --redis URL``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from evaluator import EvaluationTask, make_controller
from evaluator.best import BestFileError as ReplayError
from evaluator.best import load_best
from game import LapResult, TrackError, load_track
from game.rollout import PolicyFor

PROG = "ga.replay"


def describe(result: LapResult) -> str:
    """One line for a lap result."""
    if result.finished:
        head = f"lap {result.lap_time_s:.3f}s ({result.frames} frames)"
    else:
        head = f"did not finish: {100 * result.progress:.1f}% of the lap in {result.frames} frames"
    return f"{head}, {result.collisions} wall contacts, {result.distance_m:.1f} m driven"


def evolved_driver(task: EvaluationTask, genome: list[float]) -> PolicyFor:
    """The genome's controller, a fresh one for each race the game starts."""
    return lambda env: make_controller(task.controller, task.genome_array([genome]))


def watch(run_dir: Path, task: EvaluationTask, genome: list[float], stored: LapResult | None,
          game_argv: list[str]) -> int:
    """Run the game with the evolved driver at the wheel (on its task's track unless ``--track``)."""
    from game.__main__ import machine_stdout, parse_args, play

    args = parse_args(game_argv)
    track = load_track(args.track) if args.track else task.load_track()
    lap = f", lap {stored.lap_time_s:.2f} s" if stored is not None and stored.finished else ""
    desc = f"replaying {run_dir} ({task.controller.describe()}{lap})"
    return play(args, track, evolved_driver(task, genome), desc, out=machine_stdout(),
                recording={"replay": str(run_dir)})


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    game_argv = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a ga.run output folder (or its best.json)")
    parser.add_argument("--watch", action="store_true",
                        help="drive it in the game (window, API, recorder; game flags after --)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    try:
        task, genome, stored = load_best(run_dir)
        if args.watch:
            return watch(run_dir, task, genome, stored, game_argv)
        result = task(genome)
    except (ReplayError, TrackError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    track = task.track if isinstance(task.track, str) else task.track.name
    print(f"{track}, {task.controller.kind} controller: {describe(result)}")
    status = 0
    if stored is not None:
        if stored == result:
            print("identical to the result stored in best.json")
        else:
            print(f"DIFFERS from best.json: {describe(stored)}")
            status = 1
    print(f"watch it in the game: python -m {PROG} {run_dir} --watch")
    return status


if __name__ == "__main__":
    try:
        status = main()
        sys.stdout.flush()  # inside the try: a reader that left (`| head`) is noticed here
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        status = 1
    sys.exit(status)
