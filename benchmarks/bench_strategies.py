"""Strategies compared at equal lap budgets: best lap of the GA and of CMA-ES over seeds and tracks.

Every variant (``strategy:population``) gets the same number of laps per track (``--budget``,
default: what ``python -m ga.run`` spends with the GA defaults, 128 x 51 generations), so
the generations follow from the population. Runs go through ``ga.run`` itself, one after the
other in this process, seeds and tracks interleaved so that background load hits every
variant alike. Lap quality does not depend on load (the runs are deterministic); only the wall
times printed beside them do.

    python benchmarks/bench_strategies.py [--tracks circuit,hairpins] [--seeds 0,1,2]
        [--variants ga:128,cma:64] [--budget 6528] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ga import checkpoint  # noqa: E402
from ga.run import main as ga_run  # noqa: E402


def parse_variants(text: str) -> list[tuple[str, int]]:
    out = []
    for item in text.split(","):
        strategy, _, population = item.partition(":")
        out.append((strategy.strip(), int(population)))
    return out


def best_lap(run_dir: Path) -> float:
    """The run's best lap (infinite if no car finished)."""
    best = checkpoint.load(run_dir / "checkpoint.json").state.halloffame[0].results[0]
    return best.lap_time_s if best.finished else math.inf


def one_run(out: Path, track: str, seed: int, strategy: str, population: int, budget: int,
            workers: int | None) -> tuple[float, int, float]:
    """(best lap, laps driven, wall seconds) of one run with ``budget`` laps."""
    generations = max(1, round(budget / population) - 1)
    argv = ["--track", track, "--seed", str(seed), "--strategy", strategy, "--population", str(population),
            "--generations", str(generations), "--out", str(out)]
    if workers:
        argv += ["--workers", str(workers)]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = ga_run(argv)
    if status != 0:
        raise SystemExit(f"ga.run {' '.join(argv)} failed with status {status}")
    return best_lap(out), population * (generations + 1), time.perf_counter() - t0


def fmt(lap: float) -> str:
    return "   DNF" if math.isinf(lap) else f"{lap:6.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracks", default="circuit,hairpins")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default="ga:128,cma:64", help="strategy:population, comma separated")
    p.add_argument("--budget", type=int, default=128 * 51, help="laps per track and run")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--keep", default=None, help="keep the run folders here")
    args = p.parse_args(argv)
    tracks = args.tracks.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = parse_variants(args.variants)
    names = [f"{s}:{n}" for s, n in variants]

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-strategies-"))
    laps: dict[tuple[str, str], list[float]] = {(t, v): [] for t in tracks for v in names}
    print(f"budget {args.budget} laps per run; columns: best lap (s), laps driven, wall s", flush=True)
    print(f"{'track':10s} {'seed':>4s}  " + "  ".join(f"{v:>22s}" for v in names), flush=True)
    for track in tracks:
        for seed in seeds:
            cells = []
            for (strategy, population), name in zip(variants, names, strict=True):
                out = root / f"{track}-{strategy}{population}-s{seed}"
                lap, n, wall = one_run(out, track, seed, strategy, population, args.budget, args.workers)
                laps[(track, name)].append(lap)
                cells.append(f"{fmt(lap)} {n:6d} {wall:6.1f}s")
            print(f"{track:10s} {seed:4d}  " + "  ".join(f"{c:>22s}" for c in cells), flush=True)

    print("\nmean best lap over seeds (ratio to the first variant; below 1 = faster)")
    print(f"{'track':10s}  " + "  ".join(f"{v:>16s}" for v in names))
    for track in tracks:
        means = [statistics.fmean(laps[(track, v)]) for v in names]
        cells = [f"{fmt(m)} (x{m / means[0]:.3f})" if math.isfinite(m) and math.isfinite(means[0]) else fmt(m)
                 for m in means]
        print(f"{track:10s}  " + "  ".join(f"{c:>16s}" for c in cells))
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
