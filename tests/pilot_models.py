"""Small ONNX pilots for the tests, built with the ``onnx`` helper API (no training framework).

They follow the runtime's contract (inputs ``image`` [N, H, W, 3] and ``speed`` [N, 1], output
``controls`` [N, 2]) with a graph whose answer depends on the pixels and the speed: steering from the
red/blue balance of the image, target speed from its brightness, the speed and a per-version bias, so
two versions answer differently.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from pilot.card import ModelCard
from pilot.runtime import write_card

SIZE = (32, 24)  # width, height


def write_model(folder: Path, version: str, bias: float = 0.0, size: tuple[int, int] = SIZE) -> Path:
    """``folder/model.onnx`` and ``folder/model.json``; returns the folder."""
    w, h = size
    weights = {
        "W": np.array([[8.0, 0.2], [0.0, 0.1], [-8.0, 0.1]], dtype=np.float32),
        "V": np.array([[0.0, 0.3]], dtype=np.float32),
        "b": np.array([0.0, bias], dtype=np.float32),
    }
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["rgb"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["rgb", "W"], ["from_image"]),
        helper.make_node("MatMul", ["speed", "V"], ["from_speed"]),
        helper.make_node("Add", ["from_image", "from_speed"], ["sum"]),
        helper.make_node("Add", ["sum", "b"], ["controls"]),
    ]
    graph = helper.make_graph(
        nodes, f"pilot-{version}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", h, w, 3]),
         helper.make_tensor_value_info("speed", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("controls", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    write_card(folder, ModelCard(version=version, input={"width": w, "height": h}))
    return folder


def frames(n: int, seed: int = 0, size: tuple[int, int] = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random RGB frames (uint8) and speeds (m/s)."""
    rng = np.random.default_rng(seed)
    w, h = size
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8), rng.uniform(0.0, 40.0, n).astype(np.float32)
