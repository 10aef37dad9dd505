"""Soak test of the evaluator service: many requests from concurrent clients, memory before and after.

    python benchmarks/soak.py [--requests 10000] [--clients 16] [--evaluators 2] [--json]

Starts ``--evaluators`` evaluator processes (1 worker each, default capacity 2) on 127.0.0.1 and sends
``--requests`` evaluation requests from ``--clients`` concurrent clients (each its own keep-alive
connection, spread over the evaluators). Requests vary: 1-4 genomes (some in two races), 20-120 frames, every bundled
track, both controller kinds, some inline tracks. A 503 is the service's deliberate back-pressure: the
client waits ``Retry-After`` and sends the same request again (counted). Anything else that is not a
200 with one result per genome is a failed request. Every answer is checked against the in-process
result of the same request for a sample of requests.

Memory: RSS of each evaluator (server process + its workers) after a warm-up of 5% of the requests,
and at the end; the bound is ``--rss-bound-mb`` of growth per evaluator (default 50 MB).
Request loops are bounded in count and time (``--max-seconds``), and only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
import psutil  # noqa: E402
from bench_http_map import LocalFleet  # noqa: E402

from evaluator import ControllerSpec, EvaluationTask, TrackData  # noqa: E402
from game import LapResult, bundled_tracks, load_track  # noqa: E402


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def make_requests(n: int, seed: int = 0) -> list[tuple[EvaluationTask, list[list[float]], list[int] | None]]:
    rng = random.Random(seed)
    tracks: list = list(bundled_tracks())
    oval = load_track("oval")
    tracks.append(TrackData(name="oval-inline", width=oval.width, points=tuple(map(tuple, oval.points.tolist()))))
    specs = [ControllerSpec(kind="mlp"), ControllerSpec(kind="schedule"), ControllerSpec(kind="mlp", hidden=(6,))]
    out = []
    for _ in range(n):
        spec = rng.choice(specs)
        task = EvaluationTask(track=rng.choice(tracks), max_frames=rng.randint(20, 120), controller=spec)
        gs = [[rng.gauss(0, 0.7) for _ in range(spec.genome_length())] for _ in range(rng.randint(1, 4))]
        split = rng.randint(1, len(gs))  # some requests drive their genomes in two races, like packed chunks
        races = [split, len(gs) - split] if split < len(gs) and rng.random() < 0.3 else None
        out.append((task, gs, races))
    return out


async def soak(urls: list[str], requests: list, clients: int, max_seconds: float, warm: int, on_warm) -> dict:
    stats = {"ok": 0, "failed": 0, "retried_503": 0, "failures": [], "evaluated_laps": 0}
    queue: asyncio.Queue = asyncio.Queue()
    for i, req in enumerate(requests):
        queue.put_nowait((i, req))
    deadline = time.monotonic() + max_seconds
    answers: dict[int, list] = {}
    warmed = asyncio.Event()

    async def client(k: int) -> None:
        url = urls[k % len(urls)]
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            while not queue.empty() and time.monotonic() < deadline:
                i, (task, gs, races) = queue.get_nowait()
                body = {"task": task.model_dump(mode="json"), "genomes": gs}
                if races is not None:
                    body["races"] = races
                for _attempt in range(600):
                    try:
                        resp = await http.post("/v1/evaluations", json=body)
                    except httpx.HTTPError as exc:
                        stats["failed"] += 1
                        stats["failures"].append(f"request {i}: {type(exc).__name__}: {exc}")
                        break
                    if resp.status_code == 503:
                        stats["retried_503"] += 1
                        await asyncio.sleep(float(resp.headers.get("retry-after", "1")))
                        continue
                    results = resp.json().get("results") if resp.status_code == 200 else None
                    if results is None or len(results) != len(gs):
                        stats["failed"] += 1
                        stats["failures"].append(f"request {i}: HTTP {resp.status_code}: {resp.text[:200]}")
                    else:
                        stats["ok"] += 1
                        stats["evaluated_laps"] += len(results)
                        if i % 50 == 0:
                            answers[i] = results
                    break
                else:
                    stats["failed"] += 1
                    stats["failures"].append(f"request {i}: still 503 after 600 attempts")
                done = stats["ok"] + stats["failed"]
                if done >= warm and not warmed.is_set():
                    warmed.set()
                    on_warm()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    stats["seconds"] = time.perf_counter() - t0
    stats["not_sent"] = queue.qsize()
    stats["answers"] = answers
    return stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=10_000)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--evaluators", type=int, default=2)
    p.add_argument("--max-seconds", type=float, default=1800.0)
    p.add_argument("--rss-bound-mb", type=float, default=50.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    requests = make_requests(args.requests)
    rss: dict[str, dict] = {}
    with LocalFleet(args.evaluators, workers=1) as fleet:

        def snapshot(label: str) -> None:
            for url, pid in zip(fleet.urls, fleet.pids(), strict=True):
                rss.setdefault(url, {})[label] = tree_rss(pid)

        snapshot("start")
        warm = max(1, args.requests // 20)
        stats = asyncio.run(
            soak(fleet.urls, requests, args.clients, args.max_seconds, warm, lambda: snapshot("after_warm_up"))
        )
        snapshot("end")
        metrics = {}
        for url in fleet.urls:
            text = httpx.get(f"{url}/metrics").text
            for line in text.splitlines():
                if line.startswith(("rrp_evaluations_total ", "rrp_laps_simulated_total ")):
                    name, value = line.split()
                    metrics[name] = metrics.get(name, 0.0) + float(value)

    # spot-check answers against in-process evaluation
    mismatches = 0
    for i, results in stats.pop("answers").items():
        task, gs, _races = requests[i]  # results do not depend on how genomes are split into races
        if [LapResult.from_dict(r) for r in results] != task.evaluate_batch(gs):
            mismatches += 1
    report = {
        "requests": args.requests,
        "clients": args.clients,
        "evaluators": args.evaluators,
        **{k: v for k, v in stats.items() if k != "failures"},
        "failures_sample": stats["failures"][:10],
        "requests_per_s": stats["ok"] / stats["seconds"] if stats["seconds"] else 0.0,
        "server_evaluations_total": metrics.get("rrp_evaluations_total"),
        "server_laps_total": metrics.get("rrp_laps_simulated_total"),
        "checked_answers_mismatched": mismatches,
        "rss_mb": {u: {k: round(v / 2**20, 1) for k, v in r.items()} for u, r in rss.items()},
    }
    growth = [
        (r["end"] - r.get("after_warm_up", r["start"])) / 2**20 for r in rss.values()
    ]
    report["rss_growth_mb"] = [round(g, 1) for g in growth]
    report["rss_bound_mb"] = args.rss_bound_mb
    ok = (
        stats["failed"] == 0
        and stats["not_sent"] == 0
        and mismatches == 0
        and all(g <= args.rss_bound_mb for g in growth)
        and metrics.get("rrp_evaluations_total") == stats["ok"]
    )
    report["passed"] = ok
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(
            f"{report['ok']} ok / {report['requests']} requests from {args.clients} clients on "
            f"{args.evaluators} evaluators in {stats['seconds']:.1f}s ({report['requests_per_s']:.0f} req/s); "
            f"failed {stats['failed']}, retried 503s {stats['retried_503']}, not sent {stats['not_sent']}"
        )
        print(
            f"server counted {metrics.get('rrp_evaluations_total'):.0f} evaluations and "
            f"{metrics.get('rrp_laps_simulated_total'):.0f} laps (client: {stats['evaluated_laps']} laps); "
            f"spot-checked answers mismatching in-process: {mismatches}"
        )
        for url, r in report["rss_mb"].items():
            print(f"RSS {url}: start {r['start']} MB, after warm-up {r.get('after_warm_up')} MB, end {r['end']} MB")
        print(f"RSS growth after warm-up (MB): {report['rss_growth_mb']} (bound {args.rss_bound_mb} MB)")
        for f in report["failures_sample"]:
            print("  failure:", f)
        print("PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
