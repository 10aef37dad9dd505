"""What the Gymnasium interface costs: the vector environment's step against the bare batched ``Race``.

    python benchmarks/bench_env.py [--batch 256] [--rounds 6] [--seconds 1] [--track circuit]

Both drive the same precomputed keys (forward with random steering, so cars spread over the track
and hit walls) on one core; the two alternate in rounds so machine noise hits both alike. Prints the
car-frames per second of each and the ratio (the environment aims for at least 0.9).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from game.env import RallyRoboPilotVectorEnv
from game.race import Race

MAX_FRAMES = 1_000


def keys_for(batch: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    keys = np.zeros((MAX_FRAMES, batch, 4), dtype=bool)
    keys[:, :, 0] = rng.random((MAX_FRAMES, batch)) < 0.9
    steer = rng.integers(-1, 2, (MAX_FRAMES // 10, batch)).repeat(10, axis=0)
    keys[:, :, 2], keys[:, :, 3] = steer > 0, steer < 0
    return keys


def race_rate(race: Race, keys: np.ndarray, seconds: float) -> float:
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        race.reset()
        for k in keys:
            if race.all_done:
                break
            race.step(k)
            frames += 1
    return frames * keys.shape[1] / (time.perf_counter() - start)


def env_rate(env: RallyRoboPilotVectorEnv, keys: np.ndarray, seconds: float) -> float:
    frames, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.reset()
        for k in keys:
            _, _, terminated, truncated, _ = env.step(k)
            frames += 1
            if (terminated | truncated).all():
                break
    return frames * keys.shape[1] / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=1.0, help="wall time of each measurement")
    p.add_argument("--track", default="circuit")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    keys = keys_for(args.batch)
    race = Race(args.track, args.batch, max_frames=MAX_FRAMES, stall_frames=125)
    env = RallyRoboPilotVectorEnv(args.batch, track=race.track, max_frames=MAX_FRAMES, stall_frames=125)
    race_rate(race, keys[:5], 0.0), env_rate(env, keys[:5], 0.0)  # compile outside the timing
    rates: dict[str, list[float]] = {"race": [], "env": []}
    for _ in range(args.rounds):
        rates["race"].append(race_rate(race, keys, args.seconds))
        rates["env"].append(env_rate(env, keys, args.seconds))
    race_best, env_best = max(rates["race"]), max(rates["env"])
    row = {"batch": args.batch, "race_car_frames_per_s": round(race_best), "env_car_frames_per_s": round(env_best),
           "env_over_race": round(env_best / race_best, 3)}
    if args.json:
        print(json.dumps(row))
    else:
        print(f"batch {args.batch} on {args.track}, best of {args.rounds} alternating rounds of {args.seconds:g} s:")
        print(f"  Race.step            {race_best:>12,.0f} car-frames/s")
        print(f"  vector env .step     {env_best:>12,.0f} car-frames/s   ({env_best / race_best:.3f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
