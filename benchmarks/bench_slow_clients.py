"""A normal request to each service while 16 uploads never end: answered in its own time?

    python benchmarks/bench_slow_clients.py [--requests 20] [--slow 16]

For the evaluator, the game API and the pilot service (each a real process on loopback), it times
``--requests`` normal requests with nobody else connected, then again while ``--slow`` connections
have sent the head of a chunked upload and one byte, and send nothing more. Prints the median and
worst answer time of each phase and their ratio, measured in one run. The pilot service serves a tiny
ONNX model written with the tests' helper (``tests/pilot_models.py``).
"""

from __future__ import annotations

import argparse
import io
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list[str], port: int, ready: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, *argv, "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{ready}", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)  # waiting for a process to come up, not synchronising a test
    proc.kill()
    raise RuntimeError(f"{argv} did not become ready on port {port}")


def timed(send, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = send()
        out.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise RuntimeError(f"a normal request got {r.status_code}: {r.text[:200]}")
    return out


def never_ending(port: int, path: str, n: int) -> list[socket.socket]:
    head = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n1\r\n{\r\n").encode()
    conns = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(n)]
    for c in conns:
        c.sendall(head)
    return conns


def services(tmp: Path):
    from PIL import Image
    from pilot_models import write_model

    from evaluator import EvaluationTask

    task = EvaluationTask(track="oval", max_frames=50).model_dump(mode="json")
    genome = [0.0] * 172
    yield ("evaluator", ["-m", "evaluator", "--workers", "1"], "/readyz", "/v1/evaluations",
           lambda c: c.post("/v1/evaluations", json={"task": task, "genomes": [genome]}))
    yield ("game API", ["-m", "game", "--no-render", "--mode", "lockstep"], "/healthz", "/v1/controls",
           lambda c: c.post("/v1/step", json={"keys": {"forward": True}, "steps": 1}))
    model = write_model(tmp / "model", "v1")
    png = io.BytesIO()
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(png, format="PNG")
    yield ("pilot service", ["-m", "pilot.serve", "--model", str(model)], "/readyz", "/v1/predict?speed=1",
           lambda c: c.post("/v1/predict?speed=1", content=png.getvalue(), headers={"content-type": "image/png"}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--slow", type=int, default=16)
    args = p.parse_args(argv)
    slow = f"{args.slow} slow uploads: median / worst"
    print(f"{'service':14s} {'alone: median / worst':>24s} {slow:>34s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, cmd, ready, slow_path, send in services(Path(tmp)):
            port = free_port()
            proc = start(cmd, port, ready)
            try:
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                    timed(lambda client=client, send=send: send(client), 3)  # warm up
                    alone = timed(lambda client=client, send=send: send(client), args.requests)
                    conns = never_ending(port, slow_path, args.slow)
                    try:
                        busy = timed(lambda client=client, send=send: send(client), args.requests)
                    finally:
                        for c in conns:
                            c.close()
            finally:
                proc.terminate()
                proc.wait(30)
            a, b = statistics.median(alone), statistics.median(busy)
            print(f"{name:14s} {1e3 * a:11.1f} / {1e3 * max(alone):7.1f} ms "
                  f"{1e3 * b:19.1f} / {1e3 * max(busy):7.1f} ms {b / a:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
