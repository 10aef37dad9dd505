"""Memory of an evaluator fed the largest tracks it accepts: RSS of its worker after N requests.

    python benchmarks/bench_track_memory.py [--requests 1000] [--distinct 1000]

Starts ``python -m evaluator --workers 1`` on loopback and sends ``--requests`` evaluations of one
genome for 50 frames, each on an inline track just under the grid limit (a circle of radius 690 m:
about 7.9 million grid cells, 64 MB of grid). ``--distinct`` of them are different tracks (shifted by
a metre each), so the worker's task cache fills; the rest repeat. Prints the worker's RSS before,
the peak and at the end (psutil), and the answers' status codes.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
RADIUS = 690.0


def circle(shift: float) -> dict:
    return {"name": "big", "width": 12, "points": [
        [shift + RADIUS * math.cos(2 * math.pi * i / 96), RADIUS * math.sin(2 * math.pi * i / 96)]
        for i in range(96)]}


def worker_rss(proc: psutil.Process) -> int:
    """The simulation worker is the evaluator's largest descendant (the forkserver and the resource
    tracker stay small)."""
    return max((c.memory_info().rss for c in proc.children(recursive=True)), default=0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--distinct", type=int, default=1000)
    p.add_argument("--port", type=int, default=8791)
    args = p.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "evaluator", "--workers", "1", "--host", "127.0.0.1",
                             "--port", str(args.port), "--log-level", "warning"], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{args.port}"
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            ps = psutil.Process(proc.pid)
            before = worker_rss(ps)
            peak = before
            codes: dict[int, int] = {}
            genes = [0.0] * (16 * 4 + 4 + 4 * 4 + 4)  # mlp 16-4-4: weights and biases
            t0 = time.perf_counter()
            for i in range(args.requests):
                task = {"track": circle(float(i % args.distinct)), "max_frames": 50,
                        "controller": {"kind": "mlp", "hidden": [4]}}
                r = client.post("/v1/evaluations", json={"task": task, "genomes": [genes]})
                codes[r.status_code] = codes.get(r.status_code, 0) + 1
                peak = max(peak, worker_rss(ps))
                if (i + 1) % max(1, args.requests // 10) == 0:
                    print(f"{i + 1:5d} requests  worker RSS {worker_rss(ps) / 1e6:7.0f} MB  "
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
            after = worker_rss(ps)
        print(f"worker RSS: before {before / 1e6:.0f} MB, peak {peak / 1e6:.0f} MB, after {after / 1e6:.0f} MB; "
              f"answers {codes}; load average {os.getloadavg()[0]:.1f}")
    finally:
        proc.terminate()
        proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
