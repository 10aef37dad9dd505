"""The vision pilot in-process vs over HTTP: latency percentiles and frames/s, measured in one run.

    python benchmarks/bench_pilot_serve.py [--model DIR] [--batches 1,32,64] [--seconds 3] [--rounds 3]
                                           [--frames rendered|noise]

Without ``--model`` the model is this project's PilotNet layout (five convolutions, 100-50-2 dense,
the speed joined after the convolutions; ~250k parameters, 96x72 frames) with seeded random weights,
built with onnx's helper API, so the figures need no training run. The frames are the game's own
(the pursuit expert driving ``circuit``, rendered offscreen at the model's size, as the collector
and ``pilot.drive`` see them); ``--frames noise`` uses random pixels instead, the worst case for PNG.
For each batch size it times,
in alternating rounds:

- ``in-process``: ``PilotModel.predict`` on ready uint8 arrays (what ``pilot.drive MODEL`` pays);
- ``HTTP``: ``POST /v1/predict`` to a ``python -m pilot.serve`` process on loopback over one
  keep-alive connection, frames already PNG-encoded (batch 1 as the raw ``image/png`` body, larger
  batches as JSON), so the figure is the service's cost: transfer, decoding, inference, answer;
- ``PilotClient``: the same through ``pilot.client.PilotClient`` from uint8 arrays, PNG encoding
  included (what ``pilot.drive URL`` pays).

One request at a time (a car waits for its answer). For the HTTP rows, ``server ms`` is the
service's own mean time per request (its ``rrp_pilot_predict_seconds`` histogram, from reading the
body to the answer), the rest of the round trip being loopback, HTTP and the scheduler. ``CPU ms``
is the processor time one call costs the client and the server process: unlike wall-clock times it
hardly depends on what else the machine runs. The machine may be shared: compare only the
rows of one run; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pilot.card import ModelCard  # noqa: E402
from pilot.client import PilotClient  # noqa: E402
from pilot.runtime import PilotModel, write_card  # noqa: E402


def pilotnet(folder: Path, width: int = 96, height: int = 72, seed: int = 0) -> Path:
    """``folder/model.onnx`` + ``model.json``: PilotNet for small frames with random (He) weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights, nodes = [], [helper.make_node("Transpose", ["image"], ["x0"], perm=[0, 3, 1, 2])]

    def param(name: str, shape: tuple[int, ...], fan_in: int) -> str:
        weights.append(numpy_helper.from_array(
            (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32), name))
        return name

    x, channels, h, w = "x0", 3, height, width
    for i, (filters, kernel, stride) in enumerate(((24, 5, 2), (36, 5, 2), (48, 3, 2), (64, 3, 1), (64, 3, 1))):
        k = param(f"conv{i}.w", (filters, channels, kernel, kernel), channels * kernel * kernel)
        b = param(f"conv{i}.b", (filters,), 1e6)
        nodes += [helper.make_node("Conv", [x, k, b], [f"c{i}"], strides=[stride, stride]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x, channels = f"r{i}", filters
        h, w = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    nodes += [helper.make_node("Transpose", [x], ["nhwc"], perm=[0, 2, 3, 1]),
              helper.make_node("Flatten", ["nhwc"], ["flat"]),
              helper.make_node("Concat", ["flat", "speed"], ["joined"], axis=1)]
    x, width_in = "joined", h * w * channels + 1
    for i, units in enumerate((100, 50, 2)):
        wt = param(f"dense{i}.w", (width_in, units), width_in)
        bias = param(f"dense{i}.b", (units,), 1e6)
        out = "controls" if units == 2 else f"d{i}"
        nodes.append(helper.make_node("Gemm", [x, wt, bias], [out if units == 2 else f"g{i}"]))
        if units != 2:
            nodes.append(helper.make_node("Relu", [f"g{i}"], [out]))
        x, width_in = out, units
    graph = helper.make_graph(
        nodes, "pilotnet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", height, width, 3]),
         helper.make_tensor_value_info("speed", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("controls", TensorProto.FLOAT, ["N", 2])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    params = sum(int(np.prod(t.dims)) for t in weights)
    write_card(folder, ModelCard(version=f"bench-pilotnet-{params}", input={"width": width, "height": height}))
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def timed(call, seconds: float) -> tuple[list[float], float]:
    """Call repeatedly for about ``seconds`` (after two warm-up calls): each call's latency, and the
    CPU time this process spent on all of them."""
    call()
    call()
    samples, end, cpu = [], time.perf_counter() + seconds, time.process_time()
    while time.perf_counter() < end:
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples, time.process_time() - cpu


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (its threads included)."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def server_seconds(http: httpx.Client) -> tuple[float, float]:
    """(sum, count) of the service's predict-time histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    values = {}
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            values[sample.name] = sample.value
    return values["rrp_pilot_predict_seconds_sum"], values["rrp_pilot_predict_seconds_count"]


def rendered_frames(size: tuple[int, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` consecutive camera frames and speeds of the pursuit expert on ``circuit``."""
    from game.scene import UrsinaRenderer
    from pilot.collect import drive_episode, plan_run
    from pilot.tracks import track_by_name

    (episode,) = plan_run("bench", ["circuit"], 1, n + 50, seed=0)
    renderer = UrsinaRenderer(track_by_name("circuit"), headless=True, frame_size=size, hud=False)
    rows = drive_episode(renderer, episode)
    return rows["image"][50:], rows["speed"][50:].astype(np.float32)  # once the car is under way


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="a trained model folder (default: PilotNet with random weights)")
    p.add_argument("--batches", default="1,32,64")
    p.add_argument("--seconds", type=float, default=3.0, help="per mode, batch size and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--frames", choices=("rendered", "noise"), default="rendered")
    args = p.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    tmp = tempfile.TemporaryDirectory(prefix="bench-pilot-")
    folder = Path(args.model) if args.model else pilotnet(Path(tmp.name) / "pilotnet")
    model = PilotModel.load(folder)
    w, h = model.input_size
    if args.frames == "rendered":
        images, speeds = rendered_frames((w, h), max(batches))
    else:
        rng = np.random.default_rng(1)
        images = rng.integers(0, 256, (max(batches), h, w, 3), dtype=np.uint8)
        speeds = rng.uniform(0, 40, max(batches)).astype(np.float32)
    encoded = [png(i) for i in images]

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RRP_")}
    env["PYTHONPATH"] = str(ROOT)
    server = subprocess.Popen(
        [sys.executable, "-m", "pilot.serve", "--model", str(folder), "--port", str(port), "--log-level", "warning",
         "--watch-interval", "0"], env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("pilot.serve did not become ready")
            time.sleep(0.1)
        http = httpx.Client(base_url=url, timeout=30)
        client = PilotClient(url)

        def http_call(n: int):
            if n == 1:
                def call():
                    r = http.post("/v1/predict", params={"speed": float(speeds[0])}, content=encoded[0],
                                  headers={"content-type": "image/png"})
                    r.raise_for_status()
                return call
            body = json.dumps({"frames": [{"image": base64.b64encode(encoded[i]).decode(), "speed": float(speeds[i])}
                                          for i in range(n)]}).encode()

            def call():
                r = http.post("/v1/predict", content=body, headers={"content-type": "application/json"})
                r.raise_for_status()
            return call

        modes = {
            "in-process": lambda n: lambda: model.predict(images[:n], speeds[:n]),
            "HTTP": http_call,
            "PilotClient": lambda n: lambda: client.predict(images[:n], speeds[:n]),
        }
        samples: dict[tuple[str, int], list[float]] = {(m, n): [] for m in modes for n in batches}
        served = {key: [0.0, 0.0] for key in samples}
        cpu = {key: [0.0, 0.0] for key in samples}  # client, server
        for r in range(args.rounds):
            order = list(modes) if r % 2 == 0 else list(reversed(modes))
            for n in batches:
                for mode in order:
                    before, server_cpu = server_seconds(http), cpu_seconds(server.pid)
                    latencies, client_cpu = timed(modes[mode](n), args.seconds)
                    server_cpu = cpu_seconds(server.pid) - server_cpu
                    after = server_seconds(http)
                    samples[(mode, n)] += latencies
                    cpu[(mode, n)][0] += client_cpu / (len(latencies) + 2)
                    cpu[(mode, n)][1] += server_cpu / (len(latencies) + 2) if mode != "in-process" else 0.0
                    served[(mode, n)][0] += after[0] - before[0]
                    served[(mode, n)][1] += after[1] - before[1]
        client.close()
        http.close()
    finally:
        server.terminate()
        server.wait(30)
        tmp.cleanup()

    print(f"model {model.version} ({w}x{h}), onnxruntime 1 thread; {args.frames} frames, PNG "
          f"{np.mean([len(e) for e in encoded]) / 1e3:.1f} kB on average; load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f}; {args.rounds} alternating rounds of {args.seconds:g} s")
    print(f"{'batch':>5}  {'mode':<12} {'requests':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'frames/s':>9}"
          f" {'vs in-process':>13} {'server ms':>9} {'CPU ms client + server':>22}")
    for n in batches:
        base = None
        for mode in modes:
            s = np.array(samples[(mode, n)])
            rate = n * len(s) / s.sum()
            base = base or rate
            p50, p90, p99 = (np.percentile(s, q) * 1e3 for q in (50, 90, 99))
            total, count = served[(mode, n)]
            server = f"{total / count * 1e3:>9.2f}" if count else f"{'':>9}"
            print(f"{n:>5}  {mode:<12} {len(s):>8} {p50:>8.2f} {p90:>8.2f} {p99:>8.2f} {rate:>9.0f}"
                  f" {rate / base:>13.0%} {server} {cpu[(mode, n)][0] / args.rounds * 1e3:>13.2f} + "
                  f"{cpu[(mode, n)][1] / args.rounds * 1e3:>6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
