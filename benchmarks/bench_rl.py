"""PPO beside CMA-ES at equal car-frames: best lap on one track, with wall time, and the trainer's speed.

Both spend the same budget of *driven car-frames* (a frame one car actually simulated; a car whose lap is
over costs nothing). PPO counts its own (training laps and the deterministic policy's evaluation laps).
CMA-ES runs through ``ga.run`` itself (``--strategy cma``, its defaults: population 64, mlp 16-8-4,
frame limit 1.5 x the pursuit lap) with the local executor wrapped to count the frames of every lap it
returns (a finished lap drove ``frames``; an unfinished one ``min(max_frames, frames + stall_frames)``, the
frame the stall rule or the limit ended it), and is stopped at the first generation boundary past the
budget, as PPO stops at the first iteration boundary past it.

    python benchmarks/bench_rl.py --track circuit --car-frames 1e7 --seed 0 [--keep DIR] [--skip-cma]

Lap quality does not depend on load (both runs are deterministic); the wall times and car-frames/s
printed beside them do: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ga.run as ga_run  # noqa: E402
from ga.executors import LocalExecutor  # noqa: E402
from game import LapResult, Race  # noqa: E402
from rl.reward import RewardWeights  # noqa: E402
from rl.train import TrainConfig, train  # noqa: E402


def lap_car_frames(result: LapResult, max_frames: int, stall_frames: int) -> int:
    """Frames a lap actually drove (see the module docstring)."""
    if result.finished:
        return result.frames
    return min(max_frames, result.frames + stall_frames) if stall_frames else max_frames


class BudgetReached(KeyboardInterrupt):
    """Stops ga.run like Ctrl-C: its checkpoint and best.json of the last whole generation are kept."""


def counting_executor(budget: int, counter: dict):
    class Counting(LocalExecutor):
        def map(self, fn, *iterables, timeout=None, chunksize=None):
            if counter["frames"] >= budget:
                raise BudgetReached()
            results = list(super().map(fn, *iterables, timeout=timeout, chunksize=chunksize))
            counter["frames"] += sum(lap_car_frames(r, fn.max_frames, fn.stall_frames) for r in results)
            counter["laps"] += len(results)
            return iter(results)

    return Counting


def run_cma(out: Path, track: str, seed: int, budget: int, workers: int | None) -> dict:
    counter = {"frames": 0, "laps": 0}
    original = ga_run.LocalExecutor
    ga_run.LocalExecutor = counting_executor(budget, counter)
    argv = ["--track", track, "--seed", str(seed), "--strategy", "cma", "--generations", "100000", "--out", str(out)]
    if workers:
        argv += ["--workers", str(workers)]
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            ga_run.main(argv)
    finally:
        ga_run.LocalExecutor = original
    wall = time.perf_counter() - t0
    best = json.loads((out / "best.json").read_text())
    return {"method": "CMA-ES (ga.run --strategy cma, pop 64)", "car_frames": counter["frames"], "wall_s": wall,
            "laps": counter["laps"], "result": LapResult.from_dict(best["result"])}


def run_ppo(out: Path, track: str, seed: int, budget: int, reward: str, hidden: tuple[int, ...]) -> dict:
    config = TrainConfig(tracks=[track], car_frames=budget, seed=seed, hidden=hidden,
                         reward=RewardWeights.parse(reward))
    t0 = time.perf_counter()
    trainer = train(config, out, progress_bar=False)
    wall = time.perf_counter() - t0
    best = trainer.best
    return {"method": f"PPO (rl.train, {config.cars} cars, reward {config.reward.describe()})",
            "car_frames": trainer.car_frames, "wall_s": wall, "at": best["car_frames"],
            "result": LapResult.from_dict(best["record"]["result"])}


def raw_speed(track: str, cars: int, seconds: float = 5.0) -> float:
    """``Race.step`` alone, random keys precomputed, batch ``cars``: car-frames/s (laps restarted when over)."""
    race = Race(track, cars)
    keys = np.random.default_rng(0).random((256, cars, 4)) < 0.5
    keys[:, :, 0] = True
    race.step(keys[0])
    frames, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if race.all_done:
            race.reset()
        race.step(keys[frames % 256])
        frames += 1
    return frames * cars / (time.perf_counter() - t0)


def lap(result: LapResult) -> str:
    return f"{result.lap_time_s:.2f} s" if result.finished else f"DNF ({100 * result.progress:.0f}%)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--track", default="circuit")
    p.add_argument("--car-frames", type=float, default=1e7)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reward", default="", help="PPO reward weights (rl.train --reward)")
    p.add_argument("--hidden", default="8")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--keep", default=None, help="keep both run folders here")
    p.add_argument("--skip-cma", action="store_true")
    p.add_argument("--skip-ppo", action="store_true")
    args = p.parse_args()
    budget = int(args.car_frames)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        rows = []
        if not args.skip_ppo:
            rows.append(run_ppo(root / "ppo", args.track, args.seed, budget, args.reward, hidden))
            print(f"load {os.getloadavg()[0]:.1f}  {rows[-1]}", flush=True)
        if not args.skip_cma:
            rows.append(run_cma(root / "cma", args.track, args.seed, budget, args.workers))
            print(f"load {os.getloadavg()[0]:.1f}  {rows[-1]}", flush=True)
        raw = raw_speed(args.track, 64)
        load = os.getloadavg()[0]
    print(f"\n{args.track}, seed {args.seed}, budget {budget:,} car-frames (load average {load:.1f} on "
          f"{os.cpu_count()} cores)\n")
    print("| method | car-frames | best lap | wall | car-frames/s |")
    print("|---|---|---|---|---|")
    for r in rows:
        rate = r["car_frames"] / r["wall_s"]
        print(f"| {r['method']} | {r['car_frames']:,} | {lap(r['result'])} | {r['wall_s']:.0f} s | {rate:,.0f} |")
    print(f"| raw Race.step, 64 cars, random keys | | | | {raw:,.0f} |")
    return 0 if all(math.isfinite(r["wall_s"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
