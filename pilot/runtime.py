"""The pilot's runtime: load an exported model (ONNX + model card) and turn camera frames into keys.

This is the whole inference contract, shared by in-process driving (``python -m pilot.drive``) and
the HTTP service. It needs numpy and onnxruntime only, never the training framework, so a serving
image stays small and the exported file is the single source of truth for what the model does.

The ONNX graph (written by ``pilot.train``):

- input ``image``: float32 ``[N, H, W, 3]``, RGB uint8 / 255 (H, W from the model card);
- input ``speed``: float32 ``[N, 1]``, the measured speed in m/s / 50;
- output ``controls``: float32 ``[N, 2]``: steering in [-1, 1] (positive = left) and target
  speed / 50.

The model card ``model.json`` lies beside ``model.onnx`` (``pilot.card.ModelCard``): ``schema_version``,
``version`` and ``input: {width, height}``, plus what the training recorded (data, metrics, created).

The model predicts steering and a *target speed*, not the throttle keys: throttle and brake come
from the measured speed (``keys_from``). Predicting the keys directly was measured to fail: a net
that copies "brake" from a few frames before every corner brakes to a stop, although its per-frame
accuracy looks fine.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from pilot.card import ModelCard

SPEED_SCALE = 50.0  # m/s: the car's top speed; speeds enter and leave the graph divided by it
STEER_DEADBAND = 0.1  # |steering| below this holds neither left nor right
ACCELERATE_BELOW = 0.5  # m/s under the target speed: hold forward
BRAKE_ABOVE = 1.0  # m/s over the target speed: hold back
MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"
INPUTS = ("image", "speed")
OUTPUT = "controls"


class Prediction(NamedTuple):
    """What the model says for each frame: steering in [-1, 1] (+ = left) and a target speed in m/s."""

    steering: np.ndarray  # (N,) float32
    target_speed: np.ndarray  # (N,) float32, m/s


def keys_from(steering: Any, target_speed: Any, speed: Any) -> np.ndarray:
    """The four keys (forward, back, left, right) per car, shape (N, 4) bool.

    Steering is bang-bang with a dead band (the car has only left/right keys); the pedals hold the
    target speed: forward when more than 0.5 m/s under it, back when more than 1 m/s over it, which
    are the same rules the pursuit expert uses on its own target.
    """
    steering = np.atleast_1d(np.asarray(steering, dtype=np.float64))
    target = np.atleast_1d(np.asarray(target_speed, dtype=np.float64))
    speed = np.atleast_1d(np.asarray(speed, dtype=np.float64))
    if not steering.shape == target.shape == speed.shape or steering.ndim != 1:
        raise ValueError(f"steering, target_speed and speed must be (N,) arrays of one length, got "
                         f"{steering.shape}, {target.shape}, {speed.shape}")
    return np.stack([speed < target - ACCELERATE_BELOW, speed > target + BRAKE_ABOVE,
                     steering > STEER_DEADBAND, steering < -STEER_DEADBAND], axis=1)


class PilotPolicy:
    """A pilot at the wheel as a ``game.rollout.Policy`` of the camera environment (``RallyRoboPilotCamera-v0``).

    ``pilot`` is anything with ``predict(images, speeds) -> Prediction`` (a :class:`PilotModel`, the served
    API's ``PilotClient``). It sees the image of ``delay`` frames ago (the first image until there is one
    that old), as a slow camera or network would, and the speed measured now; its steering and target speed
    become the keys (:func:`keys_from`). ``prediction`` is its last answer, for overlays.
    """

    def __init__(self, pilot: Any, delay: int = 0) -> None:
        if delay < 0:
            raise ValueError(f"delay must be >= 0 frames, got {delay}")
        self.pilot = pilot
        self.delay = delay
        self.reset()

    def reset(self) -> None:
        self._seen: deque[np.ndarray] = deque(maxlen=self.delay + 1)
        self.prediction: Prediction | None = None

    def act(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        self._seen.append(observation["image"])
        speed = observation["speed"]
        self.prediction = p = self.pilot.predict(self._seen[0][None], speed)
        return keys_from(p.steering, p.target_speed, speed)[0]


def read_card(folder: Path) -> ModelCard:
    """The model card beside the ONNX file (its one reader)."""
    path = folder / CARD_FILE
    try:
        return ModelCard.read(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"no model card {path} beside the ONNX file (pilot.train writes one)") from None


def write_card(folder: Path, card: ModelCard) -> None:
    """The model card beside the ONNX file (its one writer: ``pilot.train``, ``pilot.drive --update-card``)."""
    card.write(folder / CARD_FILE)


class PilotModel:
    """An exported pilot on onnxruntime's CPU provider. ``PilotModel.load(path)``, then ``predict``."""

    def __init__(self, session: Any, card: ModelCard, path: Path) -> None:
        self.session = session
        self.card = card
        self.path = path
        self.version: str = card.version
        self.input_size: tuple[int, int] = (card.input.width, card.input.height)

    @classmethod
    def load(cls, path: str | Path, *, threads: int = 1) -> PilotModel:
        """Load ``model.onnx`` (or the folder holding it) and its card.

        One intra-op thread by default: a 200k-parameter net on one frame gains nothing from more,
        and the machines this runs on are shared.
        """
        import onnxruntime as ort

        path = Path(path)
        onnx_path = path / MODEL_FILE if path.is_dir() else path
        if not onnx_path.is_file():
            raise FileNotFoundError(f"no ONNX model at {onnx_path}")
        card = read_card(onnx_path.parent)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        names = tuple(sorted(i.name for i in session.get_inputs()))
        if names != tuple(sorted(INPUTS)) or [o.name for o in session.get_outputs()] != [OUTPUT]:
            raise ValueError(f"{onnx_path}: expected inputs {INPUTS} and output '{OUTPUT}', got inputs {names}")
        return cls(session, card, onnx_path)

    def predict(self, images: np.ndarray, speeds: Any) -> Prediction:
        """Steering and target speed for N frames: ``images`` uint8 (N, H, W, 3) RGB, ``speeds`` m/s (N,)."""
        images = np.asarray(images)
        w, h = self.input_size
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 RGB, got dtype {images.dtype}")
        if images.ndim != 4 or images.shape[1:] != (h, w, 3):
            raise ValueError(f"images must have shape (N, {h}, {w}, 3) for this model, got {images.shape}")
        speeds = np.asarray(speeds, dtype=np.float32).reshape(-1)
        if speeds.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {speeds.shape[0]} speeds")
        feeds = {"image": images.astype(np.float32) / np.float32(255.0),
                 "speed": (speeds / np.float32(SPEED_SCALE)).reshape(-1, 1)}
        (controls,) = self.session.run([OUTPUT], feeds)
        return Prediction(np.clip(controls[:, 0], -1.0, 1.0),
                          np.clip(controls[:, 1] * np.float32(SPEED_SCALE), 0.0, SPEED_SCALE))
