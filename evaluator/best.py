"""The one reader of a GA run's ``best.json``: the task, the genome and the stored lap result.

Read by ``python -m ga.replay`` (re-drive it, watch it in the game), ``ga.remote`` (drive it through a
game's API) and the vision pilot's genome expert, so it lives in the layer all of them may import.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from evaluator.task import EvaluationTask
from game import LapResult


class BestFileError(ValueError):
    """A best.json (or run folder) that cannot be read; the message names the file and the problem."""


def load_best(run: str | Path) -> tuple[EvaluationTask, list[float], LapResult | None]:
    """The task, genome and stored result from ``RUN_DIR/best.json`` (validated); ``run`` is the run
    folder or the file itself. A controller given beside the task (``{"controller": ...}``) completes a
    task that names none."""
    run = Path(run)
    path = run if run.suffix == ".json" else run / "best.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BestFileError(f"no best.json in {path.parent} (is it a ga.run folder?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BestFileError(f"cannot read {path}: {exc}") from None
    if not isinstance(doc, dict) or not {"genome", "task"} <= doc.keys() or not isinstance(doc["task"], dict):
        raise BestFileError(f"{path} is not a ga.run best.json (needs 'genome' and 'task')")
    task_doc = dict(doc["task"])
    if "controller" in doc:
        task_doc.setdefault("controller", doc["controller"])
    try:
        task = EvaluationTask.model_validate(task_doc)
    except ValidationError as exc:
        raise BestFileError(f"{path}: invalid task: {exc.errors()[0]['msg']}") from None
    genome = doc["genome"]
    if not isinstance(genome, list) or not all(isinstance(g, int | float) for g in genome):
        raise BestFileError(f"{path}: genome must be a list of numbers")
    if len(genome) != task.controller.genome_length():
        raise BestFileError(f"{path}: genome has {len(genome)} genes, the controller needs "
                            f"{task.controller.genome_length()}")
    stored = None
    if isinstance(doc.get("result"), dict):
        try:
            stored = LapResult.from_dict(doc["result"])
        except (TypeError, ValueError, KeyError):
            stored = None
    return task, [float(g) for g in genome], stored
