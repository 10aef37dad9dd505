"""The lap video's overlay: readable text, the keys held, the steering bar scaled to the pilot's output."""

from __future__ import annotations

import numpy as np

from pilot.pictures import overlay, steering_scale
from pilot.runtime import STEER_DEADBAND

YELLOW = np.array([255, 210, 0])


def _bar(img: np.ndarray) -> np.ndarray:
    """The columns of the bar's row that are the held-steering yellow."""
    row = img[img.shape[0] - 14]
    return np.flatnonzero((np.abs(row.astype(int) - YELLOW) < 3).all(axis=1))


def test_the_bar_is_scaled_to_the_pilots_steering_with_the_dead_band_marked():
    assert steering_scale([0.02, -0.26, 0.1]) == 0.3
    assert steering_scale([0.01]) == 2 * STEER_DEADBAND and steering_scale([3.0]) == 1.0
    frame = np.full((72, 96, 3), 30, np.uint8)
    left = overlay(frame, 0.26, 20, 15, full=0.3)
    cols = _bar(left)
    centre = left.shape[1] // 2
    assert len(cols) and cols.max() < centre + 10, "+ = left: the bar grows leftwards"
    assert len(_bar(overlay(frame, -0.26, 20, 15, full=0.3))) == len(cols), "the same length either way"
    unscaled = _bar(overlay(frame, 0.26, 20, 15, full=1.0))
    assert len(cols) > 3 * len(unscaled) / 1.5 > 0, "at full 0.3 the bar is ~3x the length it has at full 1"
    inside = overlay(frame, 0.05, 20, 15, full=0.3)
    assert not len(_bar(inside)), "inside the dead band no key is held: grey, not yellow"
    row = inside[inside.shape[0] - 14]
    white = np.flatnonzero((row == 255).all(axis=1))
    assert len(white) >= 4, "the dead band's edges are marked"


def test_the_keys_held_are_shown_and_the_text_reads_on_dark_and_bright_frames():
    for value in (0, 255):  # a black and a white picture
        frame = np.full((72, 96, 3), value, np.uint8)
        none = overlay(frame, 0.0, 20, 15, keys=[False] * 4)
        held = overlay(frame, 0.0, 20, 15, keys=[True, False, True, False])
        assert (np.abs(held.astype(int) - [40, 200, 60]) < 3).all(axis=2).sum() > 50, "forward lit green"
        assert (np.abs(held.astype(int) - YELLOW) < 3).all(axis=2).sum() > 50, "left lit yellow"
        assert not (np.abs(none.astype(int) - [40, 200, 60]) < 3).all(axis=2).any()
        box = held[2:20, 2:200].astype(int)  # the text box at the top left
        bright = (box > 200).all(axis=2).sum()
        dark = (box < 60).all(axis=2).sum()
        assert bright > 100 and dark > 100, f"white text on a dark box over a {value} picture"
