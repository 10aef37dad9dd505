"""The one lap loop: a policy drives an environment from ``reset`` until every car's lap is over.

Evaluation in a pod, the GA's picture of the best lap, a lap through a remote game, the camera
pilot's laps and its data collection all drive through :func:`rollout`, so a lap is the same lap
wherever it is driven (the perturbation wrapper, the frame limit and the stall rule are the
environment's, never the caller's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from game.race import LapResult


class Policy(Protocol):
    """Who presses the keys: ``act(observation) -> keys``, batched.

    ``observation`` is what the environment returns (``(n, 16)`` rays and speed for the vector
    environment, ``(16,)`` for one car, a dict with the image for the camera environment); the keys
    have the action space's shape (``(n, 4)`` or ``(4,)``), booleans forward, back, left, right.
    A policy with memory (an open-loop schedule counts frames, the camera pilot keeps late images)
    also has ``reset()``, which the roll-out calls before the first frame.
    """

    def act(self, observation: Any) -> np.ndarray: ...


PolicyFor = Callable[[Any], Policy]
"""Builds the policy for an environment: the game calls it for every new race (the pursuit baseline
plans from the poses of the race it drives; an evolved controller ignores the environment)."""

OnFrame = Callable[[Any, np.ndarray], None]
"""Called once per frame, before the step, with the observation and the keys the policy chose."""


def rollout(env: Any, policy: Policy, on_frame: OnFrame | None = None, *, seed: int | None = None,
            options: dict[str, Any] | None = None) -> list[LapResult]:
    """Drive every car of ``env`` to the end of its lap; one :class:`LapResult` per car."""
    observation, _ = env.reset(seed=seed, options=options)
    reset = getattr(policy, "reset", None)
    if reset is not None:
        reset()
    while True:
        keys = policy.act(observation)
        if on_frame is not None:
            on_frame(observation, keys)
        observation, _, terminated, truncated, _ = env.step(keys)
        if np.all(np.logical_or(terminated, truncated)):
            return env.unwrapped.results()
