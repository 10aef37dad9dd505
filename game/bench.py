"""How fast the simulation runs: car-frames per second at several batch sizes.

    python -m game.bench [--json] [--track NAME] [--seconds 3]

Each batch drives the baseline pursuit driver on the track, restarting laps as cars finish,
for about ``--seconds`` of wall time per batch size, all in this one process (one core).
Simulated seconds per wall second = car-frames per second x DT.
"""

from __future__ import annotations

import argparse
import json
import time

from game.physics import DT
from game.pursuit import PursuitDriver
from game.race import Race
from game.tracks import DEFAULT_TRACK, load_track


def measure(track_name: str, batch: int, seconds: float) -> dict[str, float]:
    track = load_track(track_name)
    driver = PursuitDriver(track)
    race = Race(track, batch, max_frames=2_000)
    race.step(driver.keys(race))  # compile and warm up outside the timing
    race.reset()
    frames = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            if race.all_done:
                race.reset()
            race.step(driver.keys(race))
            frames += 1
    elapsed = time.perf_counter() - start
    rate = frames * batch / elapsed
    return {"batch": batch, "car_frames_per_s": rate, "sim_s_per_wall_s": rate * DT}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m game.bench", description="Simulation speed.")
    parser.add_argument("--track", default=DEFAULT_TRACK)
    parser.add_argument("--seconds", type=float, default=3.0, help="wall time per batch size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = [measure(args.track, batch, args.seconds) for batch in (1, 64, 256)]
    if args.json:
        print(json.dumps({"track": args.track, "driver": "pursuit", "results": rows}, indent=2))
        return 0
    print(f"track {args.track}, pursuit driver, one process")
    print(f"{'batch':>6} {'car-frames/s':>14} {'sim s / wall s':>15}")
    for r in rows:
        print(f"{r['batch']:>6} {r['car_frames_per_s']:>14,.0f} {r['sim_s_per_wall_s']:>15,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
