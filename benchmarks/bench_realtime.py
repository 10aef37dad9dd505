"""Real-time pacing and lock-step speed of the game's HTTP API (real game processes on loopback).

    python benchmarks/bench_realtime.py [--duration 60] [--steps 2000] [--json]

1. Real time: a headless game (rendering) runs for ``--duration`` seconds. A client samples the
   game's frame counter and compares frames advanced with 25 x elapsed wall time (the pacing
   error, in frames), and schedules commands for future frames, then checks the frame each was
   applied at. It also measures how many frames an unscheduled command waits before it applies.
2. Lock-step: single-frame ``POST /v1/step`` requests per second, with and without rendering, and
   one evaluation lap driven remotely (``ga.remote``), checked against the in-process lap.
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
sys.path.insert(0, str(ROOT))


def start_game(*args: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("RRP_REDIS", None)
    proc = subprocess.Popen([sys.executable, "-m", "game", "--port", "0", *args], env=env, cwd="/tmp",
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if line.startswith("{"):
            return proc, json.loads(line)["url"]
    raise RuntimeError("game did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def realtime(duration: float) -> dict:
    proc, url = start_game("--headless", "--mode", "realtime", "--driver", "keyboard")
    c = httpx.Client(base_url=url, timeout=10)
    try:
        samples = []  # (wall time at the middle of the request, frame)

        def sample():
            # the game's own monotonic clock at the moment it read its frame counter: no HTTP latency
            t0 = time.monotonic()
            st = c.get("/v1/state").json()
            samples.append((st["clock_s"], st["frame"], time.monotonic() - t0))
            return st["frame"]

        time.sleep(2.0)  # warm-up: the first frames include one-off start-up work
        first_frame = sample()
        scheduled, immediate = [], []
        next_cmd = time.monotonic()
        keys = [["forward"], ["forward", "left"], ["forward", "right"], ["back"], []]
        i = 0
        end = time.monotonic() + duration
        while time.monotonic() < end:
            f = sample()
            if time.monotonic() >= next_cmd:
                r = c.post("/v1/controls", json={"keys": keys[i % len(keys)], "frame": f + 10}).json()
                scheduled.append(r["id"])
                r = c.post("/v1/controls", json={"keys": keys[(i + 1) % len(keys)], "frame": None}).json()
                immediate.append(r["id"])
                i += 1
                next_cmd += 0.5
            time.sleep(0.05)
        time.sleep(0.6)  # let the last scheduled commands come due
        ok = late = 0
        for cid in scheduled:
            r = c.get(f"/v1/controls/{cid}").json()
            if r["applied_frame"] == r["frame"]:
                ok += 1
            else:
                late += 1
        waits = []
        for cid in immediate:
            r = c.get(f"/v1/controls/{cid}").json()
            if r["applied_frame"] is not None:
                waits.append(r["applied_frame"] - r["received_frame"])
        t_first, f_first, _ = samples[0]
        # frame f is completed at t0 + f/25, so at any instant frames = floor(25 * elapsed) when on time:
        # the error of a sample lies in (-1, 0] (+1 for the first sample's own floor) unless the game lags
        errors = [(f - f_first) - 25 * (t - t_first) for t, f, _ in samples]
        t_last, f_last, _ = samples[-1]
        metrics = {line.split()[0]: float(line.split()[1]) for line in c.get("/metrics").text.splitlines()
                   if line and not line.startswith("#")}
        return {
            "duration_s": round(t_last - t_first, 3),
            "frames_advanced": f_last - f_first,
            "expected_frames": round(25 * (t_last - t_first), 2),
            "final_error_frames": round(errors[-1], 3),
            "max_abs_error_frames": round(max(abs(e) for e in errors), 3),
            "p99_abs_error_frames": round(sorted(abs(e) for e in errors)[int(0.99 * (len(errors) - 1))], 3),
            "samples": len(samples),
            "max_request_s": round(max(s[2] for s in samples), 4),
            "scheduled_commands": len(scheduled),
            "applied_at_their_frame": ok,
            "applied_elsewhere": late,
            "immediate_commands": len(immediate),
            "immediate_wait_frames_max": max(waits) if waits else None,
            "frames_rendered": metrics.get("rrp_game_frames_rendered_total"),
            "frames_late": metrics.get("rrp_game_frames_late_total"),
            "max_step_lag_ms": round(1000 * metrics.get("rrp_game_max_lag_seconds", 0.0), 2),
            "first_frame": first_frame,
        }
    finally:
        c.close()
        stop(proc)


def lockstep(steps: int, render: bool) -> dict:
    args = ["--mode", "lockstep"] + (["--headless"] if render else ["--no-render"])
    proc, url = start_game(*args)
    c = httpx.Client(base_url=url, timeout=10)
    try:
        c.post("/v1/step", json={"keys": ["forward"], "steps": 1})
        t0 = time.perf_counter()
        for i in range(steps):
            c.post("/v1/step", json={"keys": {"forward": True, "left": i % 20 < 10}, "steps": 1})
        dt = time.perf_counter() - t0
        t0 = time.perf_counter()
        r = c.post("/v1/step", json={"keys": ["forward"], "steps": 5000}).json()
        batch_dt = time.perf_counter() - t0
        out = {"render": render, "steps": steps, "steps_per_s": round(steps / dt, 1),
               "frames_per_s_in_one_request": round(r["steps_taken"] / batch_dt, 1)}
        from evaluator import ControllerSpec, EvaluationTask
        from ga.remote import remote_lap

        task = EvaluationTask(track="oval", max_frames=1500, controller=ControllerSpec(kind="mlp"))
        import numpy as np

        genome = list(np.random.default_rng(3).normal(0, 0.3, task.controller.genome_length()))
        genome[-4], genome[-3] = 2.0, -2.0
        t0 = time.perf_counter()
        remote = remote_lap(task, genome, url)
        lap_dt = time.perf_counter() - t0
        out.update(remote_lap_frames=remote.frames, remote_lap_s=round(lap_dt, 3),
                   remote_equals_in_process=remote == task(genome))
        return out
    finally:
        c.close()
        stop(proc)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    out = {"realtime": realtime(args.duration),
           "lockstep_no_render": lockstep(args.steps, False),
           "lockstep_headless_render": lockstep(args.steps, True)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        r = out["realtime"]
        print(f"real time: {r['frames_advanced']} frames in {r['duration_s']} s "
              f"(25 x elapsed = {r['expected_frames']}); error at end {r['final_error_frames']:+.3f} frames, "
              f"max |error| {r['max_abs_error_frames']:.3f} frames (p99 {r['p99_abs_error_frames']:.3f})")
        print(f"  scheduled commands applied at their frame: {r['applied_at_their_frame']}/{r['scheduled_commands']};"
              f" unscheduled commands applied within {r['immediate_wait_frames_max']} frame(s) of arrival")
        print(f"  frames stepped after their due time + 1 frame: {r['frames_late']}; worst step lag "
              f"{r['max_step_lag_ms']} ms")
        for key in ("lockstep_no_render", "lockstep_headless_render"):
            s = out[key]
            print(f"{key}: {s['steps_per_s']} single-frame steps/s over HTTP, {s['frames_per_s_in_one_request']}"
                  f" frames/s in one 5000-frame request; remote lap ({s['remote_lap_frames']} frames) in"
                  f" {s['remote_lap_s']} s, equals in-process: {s['remote_equals_in_process']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
