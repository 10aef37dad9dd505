"""Camera frames and the closed loop, two versions side by side in one run: rendering and driving from pixels.

    git archive <commit> | (mkdir -p /tmp/before && tar -x -C /tmp/before)      # the version to compare with
    python benchmarks/bench_camera.py --before /tmp/before [--model DIR] [--frames 1200] [--rounds 3]

For each version, in a process of its own (one renderer per process), alternating which goes first:

- ``render``: frames/s of the one-camera path (``draw`` + ``capture``) over poses along ``circuit``, and
  where the version has it ``draw_many`` in batches of 1, 5 and 16 (every frame compared with the
  one-camera path's: ``identical``);
- ``closed loop``: one lap from the camera (``pilot.drive.drive_lap``: render, predict, step) and, where the
  version has it, the laps of 5 image delays driven together (``drive_laps``, as ``pilot.drive --pilot`` does
  per track), car-frames/s (one prediction each) and CPU ms per car-frame, with the lap results (the same
  in both versions).

Without ``--model`` the pilot is ``bench_pilot_serve.pilotnet``: this project's PilotNet layout with seeded
random weights (it drives some way and stalls; both versions drive the same frames). The machine may be
shared: compare only the rows of one run; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SIDE = r"""
import json, os, sys, time
import numpy as np
from game.scene import UrsinaRenderer
from game.state import CarView
from pilot.runtime import PilotModel
from pilot.tracks import track_by_name
import pilot.drive as D
model_path, frames = sys.argv[1], int(sys.argv[2])
model = PilotModel.load(model_path)
track = track_by_name("circuit")
renderer = UrsinaRenderer(track, headless=True, frame_size=model.input_size, hud=False)
c = np.asarray(track.centerline)
heading = np.arctan2(*(np.roll(c, -1, 0) - c).T[::-1])
poses = [CarView(float(c[j, 0]), float(c[j, 1]), float(heading[j]), 0.0) for j in range(len(c))][:frames]

def timed(fn):
    w, p = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - p

def one_camera():
    out = []
    for pose in poses:
        renderer.draw(pose)
        out.append(renderer.capture())
    return np.stack(out)

report = {"load": round(os.getloadavg()[0], 1)}
one_camera()  # warm-up
ref, wall, cpu = timed(one_camera)
report["render draw+capture"] = {"frames_per_s": round(len(poses) / wall), "cpu_ms": round(cpu / len(poses) * 1e3, 3)}
if hasattr(renderer, "draw_many"):
    for n in (1, 5, 16):
        renderer.draw_many(poses[:n])
        many, wall, cpu = timed(lambda: np.concatenate([renderer.draw_many(poses[i:i + n])
                                                        for i in range(0, len(poses), n)]))
        report[f"render draw_many batch {n}"] = {"frames_per_s": round(len(poses) / wall),
                                                 "cpu_ms": round(cpu / len(poses) * 1e3, 3),
                                                 "identical": bool(np.array_equal(many, ref))}
driven = [0]  # car-frames driven: one prediction each (a lap that ended is not predicted any more)
predict = model.predict
def counted(images, speeds):
    driven[0] += len(images)
    return predict(images, speeds)
model.predict = counted
lap, wall, cpu = timed(lambda: D.drive_lap(renderer, track, model, max_frames=frames))
n, driven[0] = driven[0], 0
report["closed loop, one lap"] = {"frames_per_s": round(n / wall), "cpu_ms": round(cpu / n * 1e3, 3),
                                  "frames": n, "lap": lap.to_dict()}
if hasattr(D, "drive_laps"):
    laps, wall, cpu = timed(lambda: D.drive_laps(renderer, track, model, [0, 1, 2, 3, 4], max_frames=frames))
    n = driven[0]
    report["closed loop, 5 delays together"] = {"frames_per_s": round(n / wall), "cpu_ms": round(cpu / n * 1e3, 3),
                                                "frames": n, "delay 0 lap": laps[0].to_dict()}
report["load_after"] = round(os.getloadavg()[0], 1)
print(json.dumps(report))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", type=Path, required=True, help="a checkout of the version to compare with")
    p.add_argument("--after", type=Path, default=ROOT, help="this checkout unless told")
    p.add_argument("--model", type=Path, default=None, help="a pilot (model.onnx + model.json); default PilotNet")
    p.add_argument("--frames", type=int, default=1200)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model = args.model
        if model is None:
            sys.path.insert(0, str(ROOT / "benchmarks"))
            sys.path.insert(0, str(ROOT))
            from bench_pilot_serve import pilotnet

            model = pilotnet(Path(folder) / "pilotnet")
        sides = {"before": args.before.resolve(), "after": args.after.resolve()}
        for r in range(args.rounds):
            order = list(sides.items()) if r % 2 == 0 else list(sides.items())[::-1]
            for name, root in order:
                env = dict(os.environ, PYTHONPATH=str(root))
                with tempfile.TemporaryDirectory() as cwd:  # Ursina scans the working folder for assets
                    proc = subprocess.run([sys.executable, "-c", SIDE, str(model), str(args.frames)], cwd=cwd, env=env,
                                          capture_output=True, text=True)
                if proc.returncode != 0:
                    raise RuntimeError(f"{root}:\n{proc.stderr[-2000:]}")
                print(json.dumps({"round": r, "version": name, **json.loads(proc.stdout.strip().splitlines()[-1])}),
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
