"""The simulation as a Gymnasium environment: one car (``RallyRoboPilot-v0``) or a batch of them.

People who learn to drive in simulators (``gym-donkeycar``, DeepRacer, RL libraries) expect
Gymnasium's contract, so the race speaks it: ``reset(seed=...)``, ``step(keys)`` returning
``(observation, reward, terminated, truncated, info)``, and explicit spaces.

* **Observation** ``Box(16,)`` float64: the 15 wall distances in metres (0..100, right to left
  over -90..+90 degrees from the heading), then the speed in m/s (-15..50). float64, not
  Gymnasium's usual float32, so a controller sees the simulation's own numbers and a lap is the
  same lap bit for bit here, in the evaluator and behind the game's HTTP API.
* **Action** ``MultiBinary(4)``: forward, back, left, right held for one frame (1/25 s). These
  are the car's real controls; a continuous steering/throttle box would have to be quantised to
  keys inside the environment, hiding the control from the learner. A learner that wants a
  continuous output maps it to keys itself, as the camera pilot does (``pilot.runtime.keys_from``).
* **terminated**: the lap is complete. **truncated**: the frame limit or the stall limit ended
  it unfinished. ``info["lap"]`` carries the :class:`~game.race.LapResult` on the frame a lap ends.
* **reward**: the share of the lap gained this frame (progress along the centre line, 0..1 over
  a lap); the lap time is in ``info``. Learners that want another reward compute it from there.

Every lap starts from the base state on the start line, so the nominal environment has no
randomness: ``reset(seed)`` seeds ``np_random`` only. Imperfect conditions (ray noise, action
latency, a shifted start) are one wrapper, :func:`game.perturbation.perturbed`.

:class:`RallyRoboPilotVectorEnv` is the batched race itself (``num_envs`` cars in one ``Race``,
one compiled step for all), not copies in subprocesses: ``gymnasium.make_vec("RallyRoboPilot-v0",
num_envs=256, vectorization_mode="vector_entry_point")``. Cars never interact, so a car's lap is
bit-identical alone or in any batch. Its autoreset mode is ``DISABLED``: evaluation drives every
car to the end of its lap, then resets them all.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from game import physics as P
from game.race import LapResult, Race
from game.track import Track

N_OBSERVATIONS = P.N_RAYS + 1
OBSERVATION_LOW = np.array([0.0] * P.N_RAYS + [P.MAX_REVERSE])
OBSERVATION_HIGH = np.array([P.RAY_RANGE] * P.N_RAYS + [P.MAX_SPEED])
OBSERVATION_SCALE = np.array([P.RAY_RANGE] * P.N_RAYS + [P.MAX_SPEED])
"""Divide an observation by this for inputs of order 1 (what the evolved MLP sees)."""
DEFAULT_MAX_FRAMES = 2_500
DEFAULT_STALL_FRAMES = 125


def observation_space() -> spaces.Box:
    return spaces.Box(OBSERVATION_LOW, OBSERVATION_HIGH, dtype=np.float64)


def action_space() -> spaces.MultiBinary:
    return spaces.MultiBinary(4)


def start_options(options: dict[str, Any] | None) -> tuple[float, float]:
    """``reset(options={"start_offset": (metres to the left, radians)})``: where every car starts."""
    side, turn = (options or {}).get("start_offset", (0.0, 0.0))
    return float(side), float(turn)


def place_cars(race: Race, options: dict[str, Any] | None) -> None:
    """``reset(options={"poses": [(x, y, heading, speed), ...]})``: cars start anywhere on the road
    (one pose per car, ``None`` keeps the start line). Data collection restarts off the line to show
    recoveries; a lap is still counted from the start line."""
    poses = (options or {}).get("poses")
    if poses is None:
        return
    if len(poses) != race.n_cars:
        raise ValueError(f"options['poses'] needs one pose per car ({race.n_cars}), got {len(poses)}")
    for car, pose in enumerate(poses):
        if pose is not None:
            race.place(car, *map(float, pose))


class RallyRoboPilotVectorEnv(VectorEnv):
    """``num_envs`` cars on one track, advanced together: the batched :class:`~game.race.Race`."""

    metadata = {"autoreset_mode": AutoresetMode.DISABLED, "render_modes": []}

    def __init__(self, num_envs: int = 1, *, track: Track | str | None = None,
                 max_frames: int | None = DEFAULT_MAX_FRAMES, stall_frames: int | None = DEFAULT_STALL_FRAMES,
                 continuous: bool = False, render_mode: str | None = None) -> None:
        from game.tracks import DEFAULT_TRACK

        self.race = Race(track if track is not None else DEFAULT_TRACK, num_envs, max_frames=max_frames,
                         stall_frames=stall_frames, continuous=continuous)
        self.track = self.race.track
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_observation_space = observation_space()
        self.single_action_space = action_space()
        self.observation_space = spaces.Box(np.tile(OBSERVATION_LOW, (num_envs, 1)),
                                            np.tile(OBSERVATION_HIGH, (num_envs, 1)), dtype=np.float64)
        self.action_space = spaces.MultiBinary((num_envs, 4))
        self._progress = np.zeros(num_envs)
        self._ended = np.zeros(num_envs, dtype=bool)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Every car back to the start line, frame 0 (``options["start_offset"]`` moves them all alike,
        ``options["poses"]`` puts cars elsewhere)."""
        super().reset(seed=seed)
        self.race.reset(offset=start_options(options))
        place_cars(self.race, options)
        self._progress = self.race.progress_m
        self._ended[:] = False
        return self._observation(), {}

    def step(self, actions: Any):
        """One frame of keys for every car, shape ``(num_envs, 4)``."""
        race = self.race
        race.step(actions)
        progress = race.progress_m
        reward = (progress - self._progress) / self.track.length
        self._progress = progress
        done = race.done
        finished = race.finished
        info: dict[str, Any] = {}
        new = done & ~self._ended
        if new.any():
            self._ended |= new
            laps = np.full(self.num_envs, None, dtype=object)
            ended = np.flatnonzero(new)
            for i, result in zip(ended, race.results(ended), strict=True):
                laps[i] = result
            info["lap"], info["_lap"] = laps, new
        return self._observation(), reward, finished, done & ~finished, info

    def _observation(self) -> np.ndarray:
        obs = self.race.observation
        return np.concatenate([obs.rays, obs.speed[:, None]], axis=1)

    def results(self) -> list[LapResult]:
        """The first lap of every car as it stands (complete once every car is done)."""
        return self.race.results()


class RallyRoboPilotEnv(gymnasium.Env):
    """One car: the vector environment of one, squeezed (so it is that same lap, bit for bit)."""

    metadata = {"render_modes": []}

    def __init__(self, *, track: Track | str | None = None, max_frames: int | None = DEFAULT_MAX_FRAMES,
                 stall_frames: int | None = DEFAULT_STALL_FRAMES, continuous: bool = False,
                 render_mode: str | None = None) -> None:
        self.cars = RallyRoboPilotVectorEnv(1, track=track, max_frames=max_frames, stall_frames=stall_frames,
                                            continuous=continuous)
        self.race = self.cars.race
        self.track = self.cars.track
        self.render_mode = render_mode
        self.observation_space = observation_space()
        self.action_space = action_space()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        observation, _ = self.cars.reset(options=options)
        return observation[0], {}

    def step(self, action: Any):
        observation, reward, terminated, truncated, info = self.cars.step(np.asarray(action).reshape(1, 4))
        single = {"lap": info["lap"][0]} if "lap" in info else {}
        return observation[0], float(reward[0]), bool(terminated[0]), bool(truncated[0]), single

    def results(self) -> list[LapResult]:
        return self.cars.results()

