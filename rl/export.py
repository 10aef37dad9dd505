"""A trained policy as an evolved controller: an ``mlp`` genome in a ``best.json`` the project can judge.

The deterministic PPO policy (a key held when its logit is positive) and
``evaluator.controllers.MLPController`` (tanh hidden layers, a key held when its output is positive)
are the same function when the weights are laid out the same way, so the actor network *is* a genome:
for every layer its ``(in, out)`` weights row by row, then its biases. The ``best.json`` is written by its
one writer, ``evaluator.best.BestRecord``, as ``ga.run`` writes it, so every judge of evolved
controllers takes a PPO policy unchanged: ``python -m ga.replay RUN``, ``python -m ga.report RUN``
(held-out tracks, perturbed), the evaluator fleet, the game (``ga.replay --watch``).

That is why ``rl`` imports ``evaluator`` (the controller format and the task) but never ``ga``: the
export writes the shared record, and the judging stays in the layer that owns it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evaluator import ControllerSpec, EvaluationTask, fitness_over_tracks
from evaluator.best import BestRecord, TrackLap
from game import LapResult
from rl.ppo import Layers


def controller_spec(hidden: Sequence[int]) -> ControllerSpec:
    return ControllerSpec(kind="mlp", hidden=tuple(hidden))


def genome(actor: Layers) -> list[float]:
    """The actor's weights in ``MLPController``'s layout."""
    return [float(g) for w, b in actor for g in np.concatenate([w.reshape(-1), b])]


def layers(spec: ControllerSpec, genes: Sequence[float]) -> Layers:
    """The inverse of :func:`genome` (for ``--init`` from a best.json)."""
    genes = np.asarray(genes, dtype=np.float64)
    out: Layers = []
    sizes = spec.layer_sizes()
    offset = 0
    for a, b in zip(sizes, sizes[1:], strict=False):
        w = genes[offset : offset + a * b].reshape(a, b)
        offset += a * b
        out.append((w.copy(), genes[offset : offset + b].copy()))
        offset += b
    return out


def best_record(genes: list[float], tasks: Sequence[EvaluationTask], labels: Sequence[str],
                results: Sequence[LapResult]) -> BestRecord:
    """``best.json`` through its one writer (``evaluator.best.BestRecord``, as ``ga.run`` writes it): the
    first track's task and lap, every track in ``tracks``, strategy ``ppo``."""
    return BestRecord(genome=genes, task=tasks[0], result=results[0], fitness=fitness_over_tracks(results),
                      track=",".join(labels), strategy="ppo",
                      tracks=[TrackLap(track=label, task=task, result=result)
                              for label, task, result in zip(labels, tasks, results, strict=True)])
