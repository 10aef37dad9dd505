"""The evaluation contract as the GA's executors apply it, written once for the local pool and the HTTP map.

DEAP evaluates through ``toolbox.map(fn, population)``. Whatever runs the laps, ``fn`` must be a declared
:class:`evaluator.EvaluationTask` (never arbitrary code: the HTTP map ships it as JSON), genomes become
plain lists of finite floats before any work starts, and a population is cut into chunks, each driven as
one batched race. What runs a chunk is :mod:`evaluator.worker` in both cases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache

from evaluator import EvaluationTask

CHUNKS_PER_WORKER = 2
"""Default number of chunks per worker and generation (see :func:`default_chunksize`)."""
MIN_CHUNK = 8
"""Below this many genomes per chunk the per-frame overhead dominates (many-core machines)."""


def require_task(fn: object) -> EvaluationTask:
    """Refuse anything but a declared evaluation task, before any work is started."""
    if not isinstance(fn, EvaluationTask):
        raise TypeError(
            "executors run declared evaluation tasks only (evaluator.EvaluationTask), "
            f"not {type(fn).__name__}: no code is shipped to evaluators"
        )
    return fn


def genome_list(genome: Iterable[float], index: int) -> list[float]:
    """A plain list of finite floats (DEAP individuals carry a fitness workers do not need; numpy rows);
    ValueError names the gene."""
    values = [float(x) for x in genome]
    if not all(map(math.isfinite, values)):
        bad = next(j for j, v in enumerate(values) if not math.isfinite(v))
        raise ValueError(f"genomes[{index}][{bad}] is {values[bad]}: genes must be finite numbers")
    return values


@lru_cache(maxsize=8)
def wire_json(task: EvaluationTask) -> str:
    """The task as it travels to an evaluator: a track read from a file here goes inline."""
    return task.resolved().model_dump_json()


def default_chunksize(n_items: int, workers: int, chunks_per_worker: int = CHUNKS_PER_WORKER) -> int:
    """Chunk size giving each worker about ``chunks_per_worker`` chunks of ``n_items``.

    Few, large chunks, because a batch of cars simulates more cheaply per car; two per worker still let a
    fast worker take over work. On machines or fleets with many workers that would make tiny batches;
    chunks are then kept at ``MIN_CHUNK`` genomes, but never so big that a worker gets nothing.
    """
    if n_items <= 0:
        return 1
    workers = max(1, workers)
    size = math.ceil(n_items / (workers * chunks_per_worker))
    if size < MIN_CHUNK:
        size = min(MIN_CHUNK, math.ceil(n_items / workers))
    return max(1, size)


def split(items: Sequence, chunksize: int) -> list[Sequence]:
    """Consecutive slices of ``items`` of at most ``chunksize`` (order is kept)."""
    return [items[i : i + chunksize] for i in range(0, len(items), chunksize)]
