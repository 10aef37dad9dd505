"""Vision pilot speeds, measured side by side in one run: rendering, ONNX inference, the closed loop.

    python benchmarks/bench_pilot.py models/pilot [--frames 2000]

Prints frames/s of the offscreen renderer with capture (what collection pays per frame), the model's
latency per frame on onnxruntime (batch 1 and per frame in a batch of 64), and frames/s of a lap
driven from the camera (render + predict + step). Quote the machine's load average with any figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from game.scene import UrsinaRenderer
    from game.state import CarView
    from pilot.drive import drive_lap
    from pilot.runtime import PilotModel
    from pilot.tracks import track_by_name

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--track", default="circuit")
    args = p.parse_args()
    model = PilotModel.load(args.model)
    track = track_by_name(args.track)
    renderer = UrsinaRenderer(track, headless=True, frame_size=model.input_size, hud=False)
    c = np.asarray(track.centerline)
    heading = np.arctan2(*(np.roll(c, -1, 0) - c).T[::-1])
    images = []
    t0 = time.perf_counter()
    for i in range(args.frames):
        j = i % len(c)
        renderer.draw(CarView(float(c[j, 0]), float(c[j, 1]), float(heading[j]), 0.0))
        images.append(renderer.capture())
    render_fps = args.frames / (time.perf_counter() - t0)
    images = np.stack(images)
    speeds = np.full(len(images), 20.0)
    model.predict(images[:64], speeds[:64])  # warm up
    t0 = time.perf_counter()
    for i in range(len(images)):
        model.predict(images[i:i + 1], speeds[i:i + 1])
    single_ms = (time.perf_counter() - t0) / len(images) * 1e3
    t0 = time.perf_counter()
    for i in range(0, len(images) - 63, 64):
        model.predict(images[i:i + 64], speeds[i:i + 64])
    batch_ms = (time.perf_counter() - t0) / (len(images) // 64 * 64) * 1e3
    t0 = time.perf_counter()
    lap = drive_lap(renderer, track, model)
    loop_fps = lap.frames / (time.perf_counter() - t0)
    print(json.dumps({"model": model.version, "render_capture_fps": round(render_fps),
                      "onnx_ms_per_frame_batch1": round(single_ms, 3), "onnx_ms_per_frame_batch64": round(batch_ms, 3),
                      "closed_loop_fps": round(loop_fps), "lap": lap.to_dict(), "load_avg": os.getloadavg()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
