"""Worker efficiency of the local executor: evaluations per second with 1 vs 2 workers.

Both executors evaluate the same real generation (the seeded initial population that
``python -m ga.run`` starts from, or the last population of a run folder with ``--run``) in
the same process, alternating over several rounds so that background load hits both alike.
One worker evaluates in-process (no inter-process overhead at all), so the ratio is the
honest speed-up of the process pool.

    python benchmarks/bench_workers.py [--run RUN_DIR] [--track NAME] [--population 128] [--warm 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ga import checkpoint  # noqa: E402
from ga.evolve import initial_generation, next_generation  # noqa: E402
from ga.executors import LocalExecutor  # noqa: E402
from ga.run import build_parser, new_config  # noqa: E402
from ga.toolbox import make_statistics, make_toolbox  # noqa: E402


def generation(args: argparse.Namespace):
    """The task and genomes of one real generation.

    Random genomes mostly stall within seconds, so the initial population is not a typical
    workload: by default the seeded run is evolved for ``--warm`` generations first and the
    population it reaches is measured.
    """
    if args.run:
        cp = checkpoint.load(Path(args.run) / "checkpoint.json")
        what = f"{args.run}, generation {cp.state.generation}"
        return cp.config.task, [list(ind) for ind in cp.state.population], what
    run_args = build_parser().parse_args(["--track", args.track, "--population", str(args.population)])
    config, _ = new_config(run_args)
    random.seed(config.seed)
    with LocalExecutor() as executor:
        toolbox = make_toolbox(config, executor)
        stats = make_statistics()
        state = initial_generation(config, toolbox, stats)
        while state.generation < args.warm:
            next_generation(state, config, toolbox, stats)
    what = f"{config.track_label}, population {config.population}, seed 0, generation {args.warm}"
    return config.task, [list(ind) for ind in state.population], what


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="use the last population of this run folder")
    p.add_argument("--track", default="circuit")
    p.add_argument("--population", type=int, default=128)
    p.add_argument("--warm", type=int, default=10, help="generations evolved before measuring")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    task, genomes, what = generation(args)
    executors = {1: LocalExecutor(1), 2: LocalExecutor(2)}
    rates: dict[int, list[float]] = {1: [], 2: []}
    try:
        reference = None
        for _ in range(args.rounds):
            for workers, executor in executors.items():
                t0 = time.perf_counter()
                results = list(executor.map(task, genomes))
                rates[workers].append(len(genomes) / (time.perf_counter() - t0))
                reference = reference or results
                assert results == reference, "executors disagree"
    finally:
        for executor in executors.values():
            executor.shutdown()
    best = {w: max(r) for w, r in rates.items()}
    median = {w: statistics.median(r) for w, r in rates.items()}
    frames = sum(r.frames for r in reference)
    summary = {
        "generation": what, "genomes": len(genomes), "car_frames": frames, "rounds": args.rounds,
        "evals_per_s_1_worker": round(median[1], 1), "evals_per_s_2_workers": round(median[2], 1),
        "ratio_median": round(median[2] / median[1], 3), "ratio_best": round(best[2] / best[1], 3),
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{what}: {len(genomes)} genomes, {frames} car-frames per generation, {args.rounds} rounds")
    print(f"{'workers':>8} {'evals/s (median)':>17} {'evals/s (best)':>15}")
    for w in (1, 2):
        print(f"{w:>8} {median[w]:>17.1f} {best[w]:>15.1f}")
    print(f"2 vs 1 workers: x{summary['ratio_median']:.2f} (median), x{summary['ratio_best']:.2f} (best)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
