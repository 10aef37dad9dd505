"""How many laps of driving with the keys does a camera pilot need to lap the tracks it was driven on?

    python benchmarks/keys_laps.py --laps 3 --tracks circuit,hairpins,oval,rally --out /tmp/keys-laps

The human-data-first workflow of docs/pilot.md, with the pursuit baseline at the keys instead of a person
(bang-bang keys like a keyboard, but the same line every lap): a real redis-server, ``python -m game
--headless --mode lockstep --driver pursuit --redis ...`` driving ``--laps`` laps on each track (a reset
per track), ``pilot.dataset export --session``, ``pilot.train``, then ``pilot.drive --pilot`` on the same
tracks at delay 0. Prints one JSON line per step and the evaluation table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--laps", type=int, default=3)
    p.add_argument("--tracks", default="circuit,hairpins,oval,rally")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    from support import RedisServer

    from game.pursuit import pursuit_lap
    from pilot.tracks import track_by_name

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tracks = args.tracks.split(",")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RRP_")} | {"PYTHONPATH": str(ROOT)}
    server = RedisServer(out)
    server.start()
    try:
        t0 = time.perf_counter()
        game = subprocess.Popen(
            [sys.executable, "-m", "game", "--headless", "--port", "0", "--mode", "lockstep", "--driver", "pursuit",
             "--track", tracks[0], "--frame-size", "96x72", "--image-format", "png", "--redis", server.url,
             "--session", "keys", "--stream-maxlen", "1000000"],
            cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        url = json.loads(game.stdout.readline())["url"]
        driven = 0
        with httpx.Client(base_url=url, timeout=120) as c:
            for i, name in enumerate(tracks):
                if i:
                    c.post("/v1/reset", json={"track": name}).raise_for_status()
                frames = args.laps * pursuit_lap(track_by_name(name)).frames + 25
                for _ in range(0, frames, 25):
                    c.post("/v1/step", json={"keys": [], "steps": 25}).raise_for_status()
                    while "rrp_recorder_queued 0.0" not in c.get("/metrics").text:
                        time.sleep(0.01)
                driven += frames
        game.terminate()
        print(json.dumps({"step": "record", "frames": driven, "laps": args.laps * len(tracks),
                          "seconds": round(time.perf_counter() - t0, 1), **json.loads(game.communicate()[0]
                                                                                      .strip().splitlines()[-1])}))
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "pilot.dataset", "export", "--redis", server.url, "--session", "keys",
                            "--out", str(out / "data")], env=env, capture_output=True, text=True, check=True)
        print(json.dumps({"step": "export", **json.loads(r.stdout), "seconds": round(time.perf_counter() - t0, 1)}))
    finally:
        server.stop()
    r = subprocess.run(["nice", sys.executable, "-m", "pilot.train", str(out / "data"), "--out", str(out / "model"),
                        "--epochs", str(args.epochs)], env=env, capture_output=True, text=True)
    if r.returncode:
        print(r.stderr[-3000:], file=sys.stderr)
        return 1
    print(json.dumps({"step": "train", **json.loads(r.stdout)}))
    r = subprocess.run([sys.executable, "-m", "pilot.drive", str(out / "model"), "--pilot", "--tracks", args.tracks,
                        "--delays", "0", "--json", str(out / "eval.json")], env=env, capture_output=True, text=True)
    print(r.stdout)
    return r.returncode


if __name__ == "__main__":
    sys.exit(main())
