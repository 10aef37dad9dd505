"""Evaluation: genome -> controller -> full lap(s) from the start line -> lap result.

This package is the contract between the GA and whoever runs laps (a local process pool or a
fleet of evaluator pods behind HTTP); ``python -m evaluator`` serves it over HTTP.
"""

from evaluator.controllers import CONTROLLER_KINDS, ControllerSpec, make_controller
from evaluator.metrics import METRICS, collisions, fitness, fitness_over_tracks, lap_time, progress, smoothness
from evaluator.task import EvaluationTask, Perturbation, TrackData

__all__ = [
    "CONTROLLER_KINDS", "METRICS", "ControllerSpec", "EvaluationTask", "Perturbation", "TrackData", "collisions",
    "fitness", "fitness_over_tracks", "lap_time", "make_controller", "progress", "smoothness",
]
