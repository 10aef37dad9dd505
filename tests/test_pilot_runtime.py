"""The pilot runtime contract: graph inputs/outputs, scaling, the model card, and keys from predictions.

The model here is a hand-built ONNX graph with a known answer (steering = mean pixel value, target
speed = the speed input), so the test pins down exactly how images and speeds are scaled on the way in
and out; the trained-model path is covered by the training tests.
"""

from __future__ import annotations

import json

import numpy as np
import onnx  # from the 'train' extra, which .ci/run installs
import pytest

from pilot import PilotModel, keys_from


def write_known_model(folder, width=8, height=6, card=None):
    """controls = [mean(image), speed]: steering is the mean brightness, target speed the input speed."""
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, height, width, 3])
    speed = helper.make_tensor_value_info("speed", TensorProto.FLOAT, [None, 1])
    controls = helper.make_tensor_value_info("controls", TensorProto.FLOAT, [None, 2])
    axes = helper.make_tensor("axes", TensorProto.INT64, [3], [1, 2, 3])
    nodes = [helper.make_node("ReduceMean", ["image", "axes"], ["mean"], keepdims=0),
             helper.make_node("Unsqueeze", ["mean", "one"], ["mean2"]),
             helper.make_node("Concat", ["mean2", "speed"], ["controls"], axis=1)]
    one = helper.make_tensor("one", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(nodes, "known", [image, speed], [controls], initializer=[axes, one])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    card = card if card is not None else {"schema_version": 1, "version": "known-1",
                                          "input": {"width": width, "height": height}}
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def test_predict_scales_images_and_speeds_as_the_contract_says(tmp_path):
    model = PilotModel.load(write_known_model(tmp_path / "m"))
    assert model.version == "known-1" and model.input_size == (8, 6)
    images = np.zeros((3, 6, 8, 3), np.uint8)
    images[1] = 51  # 51 / 255 = 0.2
    images[2] = 255  # the brightest image: steering 1.0, the edge of [-1, 1]
    p = model.predict(images, np.array([0.0, 20.0, 80.0]))
    np.testing.assert_allclose(p.steering, [0.0, 0.2, 1.0], atol=1e-6)
    np.testing.assert_allclose(p.target_speed, [0.0, 20.0, 50.0], atol=1e-4)  # m/s in, m/s out, <= top speed
    # the folder and the file itself both load
    assert PilotModel.load(tmp_path / "m" / "model.onnx").version == "known-1"


def test_bad_input_is_refused_with_a_message_naming_it(tmp_path):
    model = PilotModel.load(write_known_model(tmp_path / "m"))
    with pytest.raises(ValueError, match=r"shape \(N, 6, 8, 3\)"):
        model.predict(np.zeros((1, 8, 6, 3), np.uint8), [0.0])
    with pytest.raises(ValueError, match="uint8"):
        model.predict(np.zeros((1, 6, 8, 3), np.float32), [0.0])
    with pytest.raises(ValueError, match="2 images but 1 speeds"):
        model.predict(np.zeros((2, 6, 8, 3), np.uint8), [0.0])


def test_a_model_without_a_valid_card_does_not_load(tmp_path):
    folder = write_known_model(tmp_path / "m", card={"schema_version": 1, "version": 3})
    with pytest.raises(ValueError, match="invalid model card: version"):
        PilotModel.load(folder)
    (folder / "model.json").unlink()
    with pytest.raises(FileNotFoundError, match="no model card"):
        PilotModel.load(folder)
    with pytest.raises(FileNotFoundError, match="no ONNX model"):
        PilotModel.load(tmp_path / "nowhere")


def test_keys_hold_the_target_speed_and_steer_outside_the_dead_band():
    steering = np.array([0.0, 0.5, -0.5, 0.05, -0.05])
    target = np.array([20.0, 20.0, 20.0, 20.0, 20.0])
    speed = np.array([10.0, 19.8, 30.0, 20.8, 21.5])
    keys = keys_from(steering, target, speed)
    assert keys.dtype == np.bool_ and keys.shape == (5, 4)
    assert keys.tolist() == [
        [True, False, False, False],   # well under the target: accelerate
        [False, False, True, False],   # within 0.5 m/s under: coast, steer left
        [False, True, False, True],    # over by more than 1 m/s: brake, steer right
        [False, False, False, False],  # inside the dead band, within the margin
        [False, True, False, False],
    ]
    with pytest.raises(ValueError, match="one length"):
        keys_from([0.0, 1.0], [1.0], [1.0])


def test_the_pilot_policy_sees_the_image_delay_frames_late_and_the_speed_of_now(tmp_path):
    """PilotPolicy is the camera environment's policy: image ``delay`` frames ago, speed now, keys out."""
    from pilot import PilotPolicy

    model = PilotModel.load(write_known_model(tmp_path / "m"))
    policy = PilotPolicy(model, delay=2)
    frames = [np.full((6, 8, 3), 51 * k, dtype=np.uint8) for k in range(5)]  # mean brightness 0.0, 0.2, ... 0.8
    seen = []
    for k, image in enumerate(frames):
        keys = policy.act({"image": image, "speed": np.array([10.0 + k])})
        seen.append(round(float(policy.prediction.steering[0]), 3))
        assert keys.shape == (4,) and keys.dtype == np.bool_
        assert (keys == keys_from(policy.prediction.steering, policy.prediction.target_speed, [10.0 + k])[0]).all()
        assert policy.prediction.target_speed[0] == pytest.approx(10.0 + k)
    assert seen == [0.0, 0.0, 0.0, 0.2, 0.4]  # the first image until one is 2 frames old
    policy.reset()
    policy.act({"image": frames[4], "speed": np.array([0.0])})
    assert round(float(policy.prediction.steering[0]), 3) == 0.8  # a new lap forgets the old images
    with pytest.raises(ValueError, match="delay"):
        PilotPolicy(model, delay=-1)
