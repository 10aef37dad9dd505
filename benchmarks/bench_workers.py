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
from ga.executors import LocalExecutor, default_chunksize  # noqa: E402
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
        return cp.config.tasks[0], [list(ind) for ind in cp.state.population], what
    run_args = build_parser().parse_args(["--track", args.track, "--population", str(args.population),
                                          "--strategy", "ga"])
    config, _ = new_config(run_args)
    random.seed(config.seed)
    with LocalExecutor() as executor:
        toolbox = make_toolbox(config, executor)
        stats = make_statistics()
        state = initial_generation(config, toolbox, stats)
        while state.generation < args.warm:
            next_generation(state, config, toolbox, stats)
    what = f"{config.track_label}, population {config.population}, seed 0, generation {args.warm}"
    return config.tasks[0], [list(ind) for ind in state.population], what


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
    two_worker_chunk = default_chunksize(len(genomes), 2)
    # (label, executor, chunksize): each executor with its default chunking, and the single
    # worker once more with the 2-worker chunks, which isolates the parallel speed-up from the
    # cost of smaller batches.
    one, two = LocalExecutor(1), LocalExecutor(2)
    setups = [("1 worker", one, None), ("2 workers", two, None),
              (f"1 worker, chunks of {two_worker_chunk}", one, two_worker_chunk)]
    rates: dict[str, list[float]] = {label: [] for label, _, _ in setups}
    try:
        reference = None
        for _ in range(args.rounds):
            for label, executor, chunksize in setups:
                t0 = time.perf_counter()
                results = list(executor.map(task, genomes, chunksize=chunksize))
                rates[label].append(len(genomes) / (time.perf_counter() - t0))
                reference = reference or results
                assert results == reference, "executors disagree"
    finally:
        one.shutdown()
        two.shutdown()
    median = {label: statistics.median(r) for label, r in rates.items()}
    best = {label: max(r) for label, r in rates.items()}
    labels = [label for label, _, _ in setups]
    ratio = median[labels[1]] / median[labels[0]]
    ratio_same_chunks = median[labels[1]] / median[labels[2]]
    frames = sum(r.frames for r in reference)
    summary = {
        "generation": what, "genomes": len(genomes), "car_frames": frames, "rounds": args.rounds,
        "evals_per_s_median": {k: round(v, 1) for k, v in median.items()},
        "ratio_2_vs_1": round(ratio, 3), "ratio_2_vs_1_same_chunks": round(ratio_same_chunks, 3),
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"{what}: {len(genomes)} genomes, {frames} car-frames per generation, {args.rounds} rounds")
    print(f"{'':>24} {'evals/s (median)':>17} {'evals/s (best)':>15}")
    for label in labels:
        print(f"{label:>24} {median[label]:>17.1f} {best[label]:>15.1f}")
    print(f"2 vs 1 workers, default chunking: x{ratio:.2f}; with equal chunks: x{ratio_same_chunks:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
