"""RallyRoboPilot: the deterministic racing simulation and, imported lazily, its front ends.

The simulation core (tracks, car physics, sensors, lap timing, the baseline driver) never
imports Ursina, FastAPI or Redis, so an evaluator needs no display, no OpenGL and no server.
"""

from game.physics import DT, FPS, KEYS, MAX_SPEED, N_RAYS, RAY_RANGE
from game.pursuit import PursuitDriver
from game.race import CarState, LapResult, LapState, Observation, Race, as_controls
from game.track import Track, TrackError
from game.trackgen import generate_track
from game.tracks import DEFAULT_TRACK, bundled_tracks, load_bundled_track, load_track

__all__ = [
    "DEFAULT_TRACK", "DT", "FPS", "KEYS", "MAX_SPEED", "N_RAYS", "RAY_RANGE",
    "CarState", "LapResult", "LapState", "Observation", "PursuitDriver", "Race", "Track", "TrackError",
    "as_controls", "bundled_tracks", "generate_track", "load_bundled_track", "load_track",
]
