"""RallyRoboPilot: the deterministic racing simulation and, imported lazily, its front ends.

The simulation core (tracks, car physics, sensors, lap timing, the baseline driver) never
imports Ursina, FastAPI or Redis, so an evaluator needs no display, no OpenGL and no server.
Names are loaded on first use so that ``python -m game.race`` and friends run their module
exactly once.

Importing ``game`` registers the Gymnasium environments (``RallyRoboPilot-v0``, see ``game.env``;
``RallyRoboPilotCamera-v0``, see ``game.camera_env``) by name, without loading them.
"""

from importlib import import_module
from typing import Any

import gymnasium

for _id, _entry, _vector in (
    ("RallyRoboPilot-v0", "game.env:RallyRoboPilotEnv", "game.env:RallyRoboPilotVectorEnv"),
    ("RallyRoboPilotCamera-v0", "game.camera_env:RallyRoboPilotCameraEnv",
     "game.camera_env:RallyRoboPilotCameraVectorEnv"),
):
    if _id not in gymnasium.registry:
        gymnasium.register(_id, entry_point=_entry, vector_entry_point=_vector)

_EXPORTS = {
    "DT": "game.physics", "FPS": "game.physics", "KEYS": "game.physics", "MAX_SPEED": "game.physics",
    "N_RAYS": "game.physics", "RAY_RANGE": "game.physics",
    "CarState": "game.race", "LapResult": "game.race", "LapState": "game.race", "Observation": "game.race",
    "Race": "game.race", "as_controls": "game.race",
    "PursuitDriver": "game.pursuit",
    "Perturbation": "game.perturbation", "perturbed": "game.perturbation",
    "Policy": "game.rollout", "rollout": "game.rollout",
    "RallyRoboPilotEnv": "game.env", "RallyRoboPilotVectorEnv": "game.env",
    "Track": "game.track", "TrackError": "game.track",
    "generate_track": "game.trackgen",
    "DEFAULT_TRACK": "game.tracks", "bundled_tracks": "game.tracks", "load_bundled_track": "game.tracks",
    "load_track": "game.tracks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'game' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
