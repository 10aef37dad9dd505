"""A trained policy as an evolved controller: an ``mlp`` genome in a ``best.json`` the project can judge.

The deterministic PPO policy (a key held when its logit is positive) and
``evaluator.controllers.MLPController`` (tanh hidden layers, a key held when its output is positive)
are the same function when the weights are laid out the same way, so the actor network *is* a genome:
for every layer its ``(in, out)`` weights row by row, then its biases. The written ``best.json`` has the
shape ``ga.run`` writes (genome, controller, task, result, tracks), so every judge of evolved
controllers takes a PPO policy unchanged: ``python -m ga.replay RUN``, ``python -m ga.report RUN``
(held-out tracks, perturbed), the evaluator fleet, the game (``ga.replay --watch``).

That is why ``rl`` imports ``evaluator`` (the controller format and the task) but never ``ga``: the
export writes the shared record, and the judging stays in the layer that owns it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evaluator import ControllerSpec, EvaluationTask, fitness_over_tracks
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


def best_document(genes: list[float], spec: ControllerSpec, tasks: Sequence[EvaluationTask], labels: Sequence[str],
                  results: Sequence[LapResult], extra: dict) -> dict:
    """``best.json`` in ``ga.run``'s shape: ``task``/``result`` of the first track, every track in ``tracks``."""
    return {
        "genome": genes,
        "controller": spec.model_dump(mode="json"),
        "task": tasks[0].model_dump(mode="json"),
        "result": results[0].to_dict(),
        "fitness": fitness_over_tracks(results),
        "track": ",".join(labels),
        "strategy": "ppo",
        "tracks": [{"track": label, "task": task.model_dump(mode="json"), "result": result.to_dict()}
                   for label, task, result in zip(labels, tasks, results, strict=True)],
        **extra,
    }
