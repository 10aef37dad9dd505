"""Imperfect driving conditions as one wrapper around the environment, drawn from a seed.

A controller that only ever saw perfect sensors, instant keys and the exact start line is brittle;
evolving and judging under a :class:`Perturbation` makes that visible. It is applied in exactly
one place, :func:`perturbed`, around whatever environment drives the lap (the batched race in an
evaluator, one car for a picture or a replay, a game behind HTTP), so a perturbed lap is the same
lap wherever it is driven. Its randomness comes from its own seed and is the same for every car of
a batch, so a car's lap does not depend on the batch, process or pod it lands in.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import VectorEnv, VectorWrapper
from pydantic import BaseModel, ConfigDict, Field

from game.physics import CAR_RADIUS, N_RAYS, RAY_RANGE
from game.track import Track


class Perturbation(BaseModel):
    """Imperfect driving conditions, drawn from ``seed``: the same draws for every car of a race.

    * ``ray_noise``: every ray distance is multiplied by ``1 + ray_noise x N(0, 1)`` (one draw per
      ray and frame), then clipped to the sensor's range;
    * ``latency_frames``: the keys a controller chooses at frame k act at frame k + latency (the
      car rolls with no key held meanwhile);
    * ``start_offset_m`` / ``start_heading_deg``: the start is moved sideways by up to that many
      metres and turned by up to that many degrees (uniform draws).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="seeds every random draw of the perturbation")
    ray_noise: float = Field(default=0.0, ge=0.0, le=1.0, description="relative std-dev of the ray noise")
    latency_frames: int = Field(default=0, ge=0, le=25, description="frames between choosing and applying keys")
    start_offset_m: float = Field(default=0.0, ge=0.0, le=3.0, description="largest sideways start offset (m)")
    start_heading_deg: float = Field(default=0.0, ge=0.0, le=15.0, description="largest start heading offset")

    def start_offset(self, track: Track) -> tuple[float, float]:
        """(metres to the left, radians) for this seed, kept on the road of ``track``."""
        rng = np.random.default_rng([self.seed, 0])
        side, turn = rng.uniform(-1.0, 1.0, 2)
        room = max(0.0, track.width / 2 - CAR_RADIUS - 0.5)
        return float(np.clip(side * self.start_offset_m, -room, room)), float(np.radians(turn * self.start_heading_deg))

    def ray_noise_stream(self) -> np.random.Generator:
        """A generator whose k-th draw is the multiplicative noise of frame k (shape (15,))."""
        return np.random.default_rng([self.seed, 1])

    def describe(self) -> str:
        parts = [f"{100 * self.ray_noise:g}% ray noise" if self.ray_noise else "",
                 f"{self.latency_frames} frame(s) of latency" if self.latency_frames else "",
                 f"start shifted up to {self.start_offset_m:g} m / {self.start_heading_deg:g} deg"
                 if self.start_offset_m or self.start_heading_deg else ""]
        return ", ".join(p for p in parts if p) or "nominal"


class _Perturbing:
    """What both wrappers do: shift the start, then noise every observation and delay every action.

    ``reset(seed=s)`` draws the conditions from ``s`` instead of the perturbation's own seed."""

    env: Any
    perturbation: Perturbation

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        p = self.perturbation if seed is None else self.perturbation.model_copy(update={"seed": seed})
        self._noise = p.ray_noise_stream()
        shape = self.env.action_space.shape
        self._pending = deque(np.zeros((p.latency_frames, *shape), dtype=bool))
        options = {**(options or {}), "start_offset": p.start_offset(self.env.unwrapped.track)}
        observation, info = self.env.reset(seed=seed, options=options)
        return self._sense(observation), info

    def step(self, action: Any):
        self._pending.append(np.asarray(action, dtype=bool))
        observation, reward, terminated, truncated, info = self.env.step(self._pending.popleft())
        return self._sense(observation), reward, terminated, truncated, info

    def _sense(self, observation: np.ndarray) -> np.ndarray:
        if not self.perturbation.ray_noise:
            return observation
        factor = 1.0 + self.perturbation.ray_noise * self._noise.standard_normal(N_RAYS)
        noisy = observation.copy()
        noisy[..., :N_RAYS] = np.clip(observation[..., :N_RAYS] * factor, 0.0, RAY_RANGE)
        return noisy


class PerturbedEnv(_Perturbing, gymnasium.Wrapper):
    def __init__(self, env: gymnasium.Env, perturbation: Perturbation) -> None:
        gymnasium.Wrapper.__init__(self, env)
        self.perturbation = perturbation


class PerturbedVectorEnv(_Perturbing, VectorWrapper):
    def __init__(self, env: VectorEnv, perturbation: Perturbation) -> None:
        VectorWrapper.__init__(self, env)
        self.perturbation = perturbation


def perturbed(env: Any, perturbation: Perturbation | None) -> Any:
    """``env`` driven under ``perturbation`` (``env`` itself when there is none)."""
    if perturbation is None:
        return env
    wrapper = PerturbedVectorEnv if isinstance(env, VectorEnv) else PerturbedEnv
    return wrapper(env, perturbation)
