"""The evolution configuration: everything that decides a run's course, and nothing else.

Two runs with equal configurations produce identical logbooks and ``best.json`` files,
whichever executor evaluates them and however many workers it has; that is why the number
of generations (a stopping point that ``--resume`` may move) and the executor settings are
kept out of it. It is stored in ``config.json`` and in every checkpoint, and a checkpoint
whose configuration differs from its run folder's is refused.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from evaluator import EvaluationTask

STRATEGIES = ("ga", "cma")


class EvolutionConfig(BaseModel):
    """Parameters of one GA run (see DEFAULTS in ``ga.run`` for how they were tuned)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    strategy: Literal["ga", "cma"] = Field(description="genetic algorithm or CMA-ES")
    population: int = Field(128, ge=2, description="individuals per generation (CMA-ES: lambda)")
    tasks: tuple[EvaluationTask, ...] = Field(min_length=1, max_length=64,
                                              description="one per track; a genome drives them all")
    track_label: str = Field(description="short name of the track set for folder names and reports")

    init_sigma: float = Field(0.5, gt=0, description="std-dev of the random initial genes")
    cxpb: float = Field(0.5, ge=0, le=1, description="probability that a pair is crossed")
    blend_alpha: float = Field(0.3, ge=0, description="cxBlend extension beyond the parents")
    mutpb: float = Field(0.8, ge=0, le=1, description="probability that a child is mutated")
    mut_sigma: float = Field(0.3, ge=0, description="std-dev of the gaussian gene mutation")
    mut_indpb: float = Field(0.1, ge=0, le=1, description="share of genes a mutation touches")
    tournsize: int = Field(3, ge=1)
    elite: int = Field(2, ge=0, description="best individuals copied unchanged each generation")
    hof_size: int = Field(5, ge=1)

    restarts: int = Field(0, ge=0, description="CMA-ES: most IPOP restarts (0: one plain pycma run)")
    restart_factor: float = Field(2.0, ge=1.0, le=10.0, description="CMA-ES: population growth per restart")
    stall_laps: int = Field(1_000, ge=1, description="CMA-ES: the stall rule's window, in laps (>= 10 generations)")
    stall_tol: float = Field(0.05, ge=0.0, description="CMA-ES: least fitness gain (s of lap) over the window")
    restart_sigma: float | None = Field(None, gt=0, description="CMA-ES: restart around the best genome so far "
                                        "with this step size (None: from scratch, mean 0 and init_sigma)")

    @model_validator(mode="after")
    def _one_controller(self) -> EvolutionConfig:
        if len({task.controller for task in self.tasks}) != 1:
            raise ValueError("every task of a run must use the same controller")
        return self

    @property
    def controller(self):
        """The controller spec shared by every task (it fixes the genome)."""
        return self.tasks[0].controller

    def generation_tasks(self, generation: int) -> tuple[EvaluationTask, ...]:
        """The tasks of one generation: perturbations are drawn afresh for every generation and track
        (seeded by the run's seed, the generation and the track), so no driver can fit one noise
        sequence; nominal tasks are the run's tasks."""
        return tuple(
            task if task.perturbation is None else task.model_copy(update={"perturbation": task.perturbation.model_copy(
                update={"seed": perturbation_seed(self.seed, generation, i)})})
            for i, task in enumerate(self.tasks))

    def genome_length(self) -> int:
        """Number of floats in one genome for this run's controller."""
        return self.controller.genome_length()


def perturbation_seed(run_seed: int, generation: int, track: int) -> int:
    """The seed of the perturbations of ``track`` (its index) in ``generation`` of the run ``run_seed``."""
    word = np.random.SeedSequence([run_seed, generation, track]).generate_state(1, dtype=np.uint64)[0]
    return int(word) >> 1  # a Perturbation seed is at most 2**63 - 1
