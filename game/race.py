"""A batched race in the Gymnasium spirit: ``reset()`` then ``step(controls)`` until ``all_done``.

One ``Race`` holds N cars on one track, all starting from the base state on the start line at
frame 0 (the design's answer to keeping evaluation deterministic). Controls are the original
game's four keys per car. The evaluator, the game front end and the HTTP API all drive this
same class, so a lap is the same lap wherever it is run.

    python -m game.race --track hairpins --driver pursuit --json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from game import physics as P
from game.track import Track, TrackError


class Observation(NamedTuple):
    """What a controller sees: wall distances along 15 rays (metres, right to left) and speed."""

    rays: np.ndarray  # (n, 15)
    speed: np.ndarray  # (n,)


class CarState(NamedTuple):
    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray  # radians, counter-clockwise from +x
    speed: np.ndarray  # m/s, negative when reversing


class LapState(NamedTuple):
    progress: np.ndarray  # 0..1 of the current lap (best reached)
    finished: np.ndarray  # bool, the first lap is complete (non-continuous races)
    lap_time_s: np.ndarray  # last completed lap, NaN before the first
    best_lap_s: np.ndarray  # NaN before the first
    laps: np.ndarray  # completed laps
    checkpoint: np.ndarray  # checkpoints passed in the current lap
    collisions: np.ndarray  # wall contacts started in the current lap
    distance_m: np.ndarray  # driven in the current lap
    current_lap_s: np.ndarray  # time since the current lap started


@dataclass(frozen=True)
class LapResult:
    """The outcome of one lap from the start line.

    ``frames`` is how many frames the car needed to get as far as it got: the frame it crossed
    the finish line, or the frame it reached its best ``progress`` in an unfinished lap.
    """

    finished: bool
    lap_time_s: float | None
    frames: int
    progress: float
    collisions: int
    distance_m: float
    steering_changes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LapResult:
        return cls(**data)


class Race:
    """N cars on one track, advanced together in fixed steps of ``DT`` seconds.

    ``max_frames`` ends unfinished laps; ``stall_frames`` ends a lap early when a car has made
    no progress for that long (it cannot get better, so evaluation stops paying for it).
    With ``continuous=True`` cars keep lapping (the game); otherwise a car stops at the line.
    """

    def __init__(
        self,
        track: Track | str,
        n_cars: int = 1,
        *,
        max_frames: int | None = None,
        stall_frames: int | None = None,
        continuous: bool = False,
    ) -> None:
        from game.tracks import load_track

        self.track = load_track(track) if isinstance(track, str) else track
        if not isinstance(n_cars, int) or isinstance(n_cars, bool) or n_cars < 1:
            raise ValueError(f"n_cars must be a positive integer, got {n_cars!r}")
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        self.n_cars = n_cars
        self.max_frames = max_frames
        self.stall_frames = int(stall_frames or 0)
        self.continuous = continuous
        self._kernel_track = self.track.kernel_data
        self._checkpoints = np.ascontiguousarray(self.track.checkpoints)
        self._ray_cos = np.cos(P.RAY_ANGLES)
        self._ray_sin = np.sin(P.RAY_ANGLES)
        self._state = np.zeros((n_cars, P.N_FIELDS))
        self._rays = np.zeros((n_cars, P.N_RAYS))
        self._zeros = np.zeros((n_cars, 4), dtype=np.bool_)
        self.frame = 0
        self.reset()

    # ------------------------------------------------------------------ API
    def reset(self, seed: int | None = None, *, offset: tuple[float, float] = (0.0, 0.0)) -> Observation:
        """Every car back to the base state on the start line, frame 0.

        With a ``seed``, each car starts with a small seeded offset (up to 1 m sideways and
        3 degrees of heading), for testing how robust a controller is; without one, every car
        starts exactly on the line, which is what lap evaluation uses. ``offset`` (metres to the
        left, radians of heading) moves every car alike, so a car's lap does not depend on the
        batch it is driven in.
        """
        x, y, heading = self.track.start
        side, turn = offset
        x, y = x - math.sin(heading) * side, y + math.cos(heading) * side
        heading += turn
        s = self._state
        s[:] = 0.0
        s[:, P.X], s[:, P.Y], s[:, P.HEADING] = x, y, heading
        if seed is not None:
            rng = np.random.default_rng(seed)
            offset = rng.uniform(-1.0, 1.0, self.n_cars)
            s[:, P.X] += -math.sin(heading) * offset
            s[:, P.Y] += math.cos(heading) * offset
            s[:, P.HEADING] += np.radians(rng.uniform(-3.0, 3.0, self.n_cars))
        s[:, P.ACTIVE] = 1.0
        self.frame = 0
        P.sense_all(s, self._kernel_track, self._ray_cos, self._ray_sin, self._rays)
        return self.observation

    def place(self, car: int, x: float, y: float, heading: float, speed: float) -> None:
        """Put one car somewhere on the road (tests and tools; laps still count from the line)."""
        s = self._state
        s[car, P.X], s[car, P.Y], s[car, P.HEADING], s[car, P.SPEED] = x, y, heading, speed
        P.sense_all(s, self._kernel_track, self._ray_cos, self._ray_sin, self._rays)

    def step(self, controls: Any) -> Observation:
        """Apply one frame of controls, shape (n_cars, 4): forward, back, left, right."""
        if self.all_done:
            raise RuntimeError("the race is over: every car is done; call reset() to start again")
        keys = as_controls(controls, self.n_cars)
        self.frame += 1
        P.step_cars(
            self._state, keys, self.frame, self.continuous, self.stall_frames,
            self._kernel_track, self._checkpoints, self._ray_cos, self._ray_sin, self._rays,
        )
        if self.max_frames is not None and self.frame >= self.max_frames:
            self._state[:, P.ACTIVE] = 0.0
        return self.observation

    @property
    def observation(self) -> Observation:
        return Observation(self._rays.copy(), self._state[:, P.SPEED].copy())

    @property
    def done(self) -> np.ndarray:
        return self._state[:, P.ACTIVE] == 0.0

    @property
    def finished(self) -> np.ndarray:
        """Which cars have completed their (first) lap."""
        return self._state[:, P.FINISHED] == 1.0

    @property
    def progress_m(self) -> np.ndarray:
        """How far along the centre line each car has got in the current lap (metres, best reached)."""
        return self._state[:, P.BEST_ARC].copy()

    @property
    def all_done(self) -> bool:
        return bool(self.done.all())

    @property
    def state(self) -> CarState:
        s = self._state
        return CarState(s[:, P.X].copy(), s[:, P.Y].copy(), s[:, P.HEADING].copy(), s[:, P.SPEED].copy())

    @property
    def table(self) -> np.ndarray:
        """Every car's whole state as a read-only ``(n_cars, N_FIELDS)`` view, columns named in
        ``game.physics`` (X, Y, HEADING, SPEED, ARC, ...): for compiled drivers that read many cars at
        once without a copy per field."""
        view = self._state.view()
        view.flags.writeable = False
        return view

    @property
    def arc(self) -> np.ndarray:
        """Signed arc length driven in the current lap (metres along the centre line)."""
        return self._state[:, P.ARC].copy()

    @property
    def lap(self) -> LapState:
        s = self._state
        length = self.track.length
        finished = s[:, P.FINISHED] == 1.0
        progress = np.where(finished, 1.0, np.clip(s[:, P.BEST_ARC] / length, 0.0, 1.0))
        laps = s[:, P.LAPS]
        return LapState(
            progress=progress,
            finished=finished,
            lap_time_s=np.where(laps > 0, s[:, P.LAST_LAP] * P.DT, np.nan),
            best_lap_s=np.where(laps > 0, s[:, P.BEST_LAP] * P.DT, np.nan),
            laps=laps.astype(np.int64),
            checkpoint=s[:, P.NEXT_CP].astype(np.int64),
            collisions=s[:, P.COLLISIONS].astype(np.int64),
            distance_m=s[:, P.DISTANCE].copy(),
            current_lap_s=np.maximum(0.0, self.frame - s[:, P.LAP_START]) * P.DT,
        )

    def results(self, cars: Any = None) -> list[LapResult]:
        """The first lap of every car (or of the ``cars`` indices), as it stands now."""
        s = self._state
        length = self.track.length
        out = []
        for i in range(self.n_cars) if cars is None else cars:
            finished = bool(s[i, P.FINISHED] == 1.0)
            out.append(
                LapResult(
                    finished=finished,
                    lap_time_s=float(s[i, P.LAST_LAP] * P.DT) if finished else None,
                    frames=int(math.ceil(s[i, P.LAST_LAP])) if finished else int(s[i, P.BEST_ARC_FRAME]),
                    progress=1.0 if finished else float(np.clip(s[i, P.BEST_ARC] / length, 0.0, 1.0)),
                    collisions=int(s[i, P.COLLISIONS]),
                    distance_m=float(s[i, P.DISTANCE]),
                    steering_changes=int(s[i, P.STEER_CHANGES]),
                )
            )
        return out


def as_controls(controls: Any, n_cars: int) -> np.ndarray:
    """Validate controls into a contiguous (n_cars, 4) bool array, with an error that says why."""
    try:
        keys = np.asarray(controls)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"controls must be an array of shape ({n_cars}, 4): {exc}") from None
    if keys.shape == (4,) and n_cars == 1:
        keys = keys.reshape(1, 4)
    if keys.shape != (n_cars, 4):
        raise ValueError(
            f"controls must have shape ({n_cars}, 4) = (cars, [forward, back, left, right]), got {keys.shape}"
        )
    if keys.dtype != np.bool_:
        if keys.dtype.kind not in "biuf" or not np.isin(keys, (0, 1)).all():
            raise ValueError("controls must be booleans or 0/1 values (one per key)")
        keys = keys.astype(np.bool_)
    return np.ascontiguousarray(keys)


def main(argv: list[str] | None = None) -> int:
    from game.pursuit import pursuit_lap
    from game.tracks import DEFAULT_TRACK, load_track

    parser = argparse.ArgumentParser(prog="python -m game.race", description="Drive one lap and print the result.")
    parser.add_argument("--track", default=DEFAULT_TRACK, help="bundled track name or path to a track JSON file")
    parser.add_argument("--driver", default="pursuit", choices=["pursuit"], help="who drives")
    parser.add_argument("--max-frames", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print the lap result as JSON")
    args = parser.parse_args(argv)
    try:
        track = load_track(args.track)
    except TrackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = pursuit_lap(track, max_frames=args.max_frames)
    if args.json:
        print(json.dumps({"track": track.name, "driver": args.driver, **result.to_dict()}))
    else:
        status = f"lap {result.lap_time_s:.2f} s" if result.finished else f"unfinished at {result.progress:.0%}"
        print(
            f"{track.name}: {status}, {result.frames} frames, {result.collisions} wall contacts, "
            f"{result.distance_m:.0f} m driven"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
