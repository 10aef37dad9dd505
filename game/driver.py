"""Who holds the wheel of the game: any callable that turns what a car senses into its four keys.

The game never needs to know where a driver comes from (the keyboard, the pursuit baseline, an evolved
genome from ``python -m ga.replay RUN --watch``, the vision pilot from ``python -m pilot.drive``): it
calls it once per frame, before stepping, with the race and the observation, and holds the keys it
returns for that frame. A driver from a higher layer is built there and handed to
:class:`game.app.GameRunner`, so the game imports nothing above it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from game.race import Observation, Race
    from game.track import Track


class Driver(Protocol):
    def __call__(self, race: Race, observation: Observation) -> np.ndarray:
        """``(n_cars, 4)`` booleans (forward, back, left, right) to hold for the race's next frame."""
        ...


def pursuit_driver(track: Track) -> Driver:
    """The pure-pursuit baseline as a game driver."""
    from game.pursuit import PursuitDriver

    pursuit = PursuitDriver(track)
    return lambda race, observation: pursuit.act(race)
