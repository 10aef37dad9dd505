"""The vision pilot: drives the game from camera frames (plus the measured speed) only.

Layers: ``pilot`` imports ``game`` (and ``evaluator`` for a genome expert), never ``ga``; ``game``
never imports ``pilot``. The runtime needs numpy and onnxruntime only, so a serving image carries no
training framework:

    from pilot import PilotModel, keys_from
    model = PilotModel.load("models/pilot")            # model.onnx + model.json
    p = model.predict(images, speeds)                  # uint8 (N, H, W, 3), m/s (N,)
    keys = keys_from(p.steering, p.target_speed, speeds)   # (N, 4) forward, back, left, right
"""

from pilot.runtime import PilotModel, PilotPolicy, Prediction, keys_from

__all__ = ["PilotModel", "PilotPolicy", "Prediction", "keys_from"]
