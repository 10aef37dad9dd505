"""Strategies compared at equal lap budgets, over many seeds: medians, quartiles, escapes, laps driven.

Every arm is a set of ``python -m ga.run`` options (``--arm NAME=OPTIONS``, repeatable); each run gets
``--budget`` laps (``ga.run --budget``: it stops before the generation that would exceed them), so
the generations follow from the population. Runs go through ``ga.run`` itself, one after the other
in this process, seeds and arms interleaved so that background load hits every arm alike. Lap
quality does not depend on load (the runs are deterministic); only the wall times do.

Per arm and track it prints the median best lap with its quartiles, how many runs went below each
``--threshold`` (the escapes from the plateau), the median ratio to the pursuit baseline and to the
lower bound (``game.bounds``), and the laps actually driven (the logbook's evaluations: the GA does
not re-drive its elites and unchanged children). ``--curve 1000,10000`` also prints each arm's best
lap within the first N laps of its runs (a run's restarts do not depend on its budget, so a shorter
run is a prefix of a longer one).

    python benchmarks/bench_strategies.py --tracks circuit,hairpins --seeds 0-7 --budget 6528 \\
        --arm "ipop=--strategy cma" --arm "pycma=--strategy cma --restarts 0" [--threshold 23,24] [--keep DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ga import checkpoint  # noqa: E402
from ga.run import main as ga_run  # noqa: E402
from game import load_track  # noqa: E402
from game.bounds import lap_lower_bound  # noqa: E402
from game.pursuit import pursuit_lap  # noqa: E402

DEFAULT_ARMS = ["ipop=--strategy cma", "pycma=--strategy cma --restarts 0"]


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        seeds += list(range(int(first), int(last or first) + 1))
    return seeds


def parse_arm(text: str) -> tuple[str, list[str]]:
    name, sep, options = text.partition("=")
    if not sep or not name.strip():
        raise SystemExit(f"--arm needs NAME=OPTIONS, got {text!r}")
    return name.strip(), shlex.split(options)


def run_facts(run_dir: Path) -> dict:
    """Best lap (inf: never finished), laps driven, restarts and the best-so-far curve of a run."""
    cp = checkpoint.load(run_dir / "checkpoint.json")
    state, tasks = cp.state, len(cp.config.tasks)
    best = state.halloffame[0]
    lap = math.fsum(r.lap_time_s for r in best.results) if all(r.finished for r in best.results) else math.inf
    curve, laps, so_far = [], 0, math.inf
    for entry in state.logbook:
        laps += int(entry["nevals"]) * tasks
        if entry["best_lap"] is not None:
            so_far = min(so_far, entry["best_lap"])
        curve.append((laps, so_far))
    restarts = 0 if state.strategy is None else len(state.strategy.restarts) - 1
    return {"lap": lap, "laps": laps, "restarts": restarts, "curve": curve}


def one_run(out: Path, track: str, seed: int, options: list[str], budget: int, workers: int | None) -> dict:
    """Run ``ga.run`` to ``budget`` laps; a folder left by an interrupted benchmark is resumed."""
    if (out / "checkpoint.json").exists():
        argv = ["--resume", str(out), "--budget", str(budget)]
    else:
        argv = ["--track", track, "--seed", str(seed), "--budget", str(budget), "--out", str(out), *options]
    if workers:
        argv += ["--workers", str(workers)]
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        status = ga_run(argv)
    if status != 0:
        raise SystemExit(f"ga.run {' '.join(argv)} failed with status {status}")
    (out / "bench-done").write_text(str(budget))
    return {**run_facts(out), "wall": time.perf_counter() - t0}


def fmt(lap: float) -> str:
    return "   DNF" if math.isinf(lap) else f"{lap:6.2f}"


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile), DNF counted as infinitely slow."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive") if all(math.isfinite(x) for x in xs) else None
    if q is None:  # quantiles cannot interpolate infinities: nearest rank
        def rank(p: float) -> float:
            return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))]
        return rank(0.25), rank(0.5), rank(0.75)
    return q[0], q[1], q[2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tracks", default="circuit,hairpins")
    p.add_argument("--seeds", default="0-7", help="e.g. 0-7 or 0,3,5")
    p.add_argument("--arm", action="append", default=None, help="NAME=ga.run options (repeatable)")
    p.add_argument("--budget", type=int, default=128 * 51, help="laps per run (default 6528)")
    p.add_argument("--threshold", default="23,24", help="count the runs whose best lap is below these (s)")
    p.add_argument("--curve", default="", help="also report the best lap within these many laps, e.g. 1000,10000")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--keep", default=None, help="keep the run folders here (and reuse finished ones)")
    args = p.parse_args(argv)
    tracks = args.tracks.split(",")
    seeds = parse_seeds(args.seeds)
    arms = [parse_arm(a) for a in (args.arm or DEFAULT_ARMS)]
    thresholds = [float(t) for t in args.threshold.split(",") if t]
    cuts = [int(c) for c in args.curve.split(",") if c]
    refs = {t: (pursuit_lap(load_track(t)).lap_time_s, lap_lower_bound(load_track(t))) for t in tracks}

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-strategies-"))
    facts: dict[tuple[str, str], list[dict]] = {(t, name): [] for t in tracks for name, _ in arms}
    print(f"budget {args.budget:,} laps per run; arms: " + "; ".join(f"{n} = {' '.join(o)}" for n, o in arms))
    print("cells: best lap (s) / laps driven / restarts / wall s (wall: noisy, shared machine)", flush=True)
    print(f"{'track':10s} {'seed':>4s}  " + "  ".join(f"{n:>26s}" for n, _ in arms), flush=True)
    for track in tracks:
        for seed in seeds:
            cells = []
            for name, options in arms:
                out = root / f"{track}-{name}-s{seed}"
                done = out / "bench-done"
                if args.keep and done.exists() and done.read_text() == str(args.budget):
                    f = {**run_facts(out), "wall": math.nan}
                else:
                    f = one_run(out, track, seed, options, args.budget, args.workers)
                facts[(track, name)].append(f)
                cells.append(f"{fmt(f['lap'])} {f['laps']:6d} r{f['restarts']} {f['wall']:5.0f}s")
            print(f"{track:10s} {seed:4d}  " + "  ".join(f"{c:>26s}" for c in cells), flush=True)

    print(f"\nsummary over seeds {args.seeds} ({len(seeds)} runs per cell)")
    below = "  ".join(f"<{t:g}s" for t in thresholds)
    print(f"{'track':10s} {'arm':10s} {'median':>7s} {'q1':>7s} {'q3':>7s}  {below}  {'xpursuit':>8s} {'xbound':>6s}"
          f" {'laps/run':>8s}")
    for track in tracks:
        pursuit, bound = refs[track]
        for name, _ in arms:
            rows = facts[(track, name)]
            laps = [r["lap"] for r in rows]
            q1, med, q3 = quartiles(laps)
            counts = "  ".join(f"{sum(lap < t for lap in laps):>{len(f'<{t:g}s')}d}" for t in thresholds)
            print(f"{track:10s} {name:10s} {fmt(med):>7s} {fmt(q1):>7s} {fmt(q3):>7s}  {counts}  "
                  f"{med / pursuit:8.3f} {med / bound:6.3f} {statistics.fmean(r['laps'] for r in rows):8.0f}")
        print(f"{'':10s} {'(pursuit':10s} {pursuit:7.2f}, lower bound {bound:.2f})")
    if cuts:
        print("\nmedian best lap within the first N laps of each run (DNF: none finished yet)")
        print(f"{'track':10s} {'arm':10s} " + " ".join(f"{c:>9,d}" for c in cuts))
        for track in tracks:
            for name, _ in arms:
                cells = []
                for cut in cuts:
                    within = [min((b for n, b in r["curve"] if n <= cut), default=math.inf)
                              for r in facts[(track, name)]]
                    cells.append(f"{fmt(quartiles(within)[1]):>9s}")
                print(f"{track:10s} {name:10s} " + " ".join(cells))
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
