"""What the game looks like at one frame: one frozen value read by the API, the renderer and the recorder.

:meth:`game.app.GameRunner.state` builds it under the runner's lock, so every reader sees one
consistent frame; floats are exact copies of the simulation's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from game.physics import DT, KEYS
from game.race import LapResult, Race

Keys = tuple[bool, bool, bool, bool]


def seconds_or_none(value: float) -> float | None:
    """A lap time, or None for 'no lap yet' (the simulation's 0 or infinity)."""
    return value if math.isfinite(value) and value > 0 else None


@dataclass(frozen=True)
class CarView:
    x: float
    y: float
    heading: float
    speed: float

    @classmethod
    def of(cls, race: Race, car: int = 0) -> CarView:
        st = race.state
        return cls(float(st.x[car]), float(st.y[car]), float(st.heading[car]), float(st.speed[car]))


@dataclass(frozen=True)
class LapView:
    progress: float
    checkpoint: int
    laps: int
    finished: bool
    current_lap_s: float
    last_lap_s: float | None
    best_lap_s: float | None
    collisions: int
    distance_m: float

    @classmethod
    def of(cls, race: Race, car: int = 0) -> LapView:
        lap = race.lap
        return cls(
            progress=float(lap.progress[car]),
            checkpoint=int(lap.checkpoint[car]),
            laps=int(lap.laps[car]),
            finished=bool(lap.finished[car]),
            current_lap_s=float(lap.current_lap_s[car]),
            last_lap_s=seconds_or_none(float(lap.lap_time_s[car])),
            best_lap_s=seconds_or_none(float(lap.best_lap_s[car])),
            collisions=int(lap.collisions[car]),
            distance_m=float(lap.distance_m[car]),
        )


@dataclass(frozen=True)
class GameState:
    frame: int
    clock_s: float
    mode: str
    track: str
    reset_count: int
    car: CarView
    speed: float
    """What the car's sensors read (the observation), as the controller sees it."""
    rays: tuple[float, ...]
    controls: Keys
    """Keys the car drove the last frame with."""
    held_keys: Keys
    """Keys the controls currently hold (the last command)."""
    lap: LapView
    done: bool
    result: LapResult | None
    pending_commands: int

    @property
    def time_s(self) -> float:
        return self.frame * DT

    def to_json(self) -> dict[str, Any]:
        """The API's ``/v1/state`` body: plain JSON values."""
        lap = self.lap
        return {
            "frame": self.frame,
            "time_s": self.time_s,
            "clock_s": self.clock_s,
            "mode": self.mode,
            "track": self.track,
            "reset_count": self.reset_count,
            "car": {"x": self.car.x, "y": self.car.y, "heading": self.car.heading, "speed": self.car.speed},
            "speed": self.speed,
            "rays": list(self.rays),
            "controls": dict(zip(KEYS, self.controls, strict=True)),
            "held_keys": dict(zip(KEYS, self.held_keys, strict=True)),
            "lap": {
                "progress": lap.progress, "checkpoint": lap.checkpoint, "laps": lap.laps, "finished": lap.finished,
                "current_lap_s": lap.current_lap_s, "last_lap_s": lap.last_lap_s, "best_lap_s": lap.best_lap_s,
                "collisions": lap.collisions, "distance_m": lap.distance_m,
            },
            "done": self.done,
            "result": self.result.to_dict() if self.result is not None else None,
            "pending_commands": self.pending_commands,
        }

    def sensing(self) -> dict[str, Any]:
        """What the recorder stores next to a camera frame."""
        return {"speed": self.speed, "rays": list(self.rays), "x": self.car.x, "y": self.car.y,
                "heading": self.car.heading, "progress": self.lap.progress, "track": self.track,
                "episode": self.reset_count}
