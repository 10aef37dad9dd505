"""Drive the game from camera frames only: a trained pilot (file) or a served one (URL) at the wheel.

    python -m pilot.drive models/pilot --track hairpins                  # one lap, lock-step, prints the result
    python -m pilot.drive models/pilot --track rally --video lap.gif     # ... and records what the pilot saw
    python -m pilot.drive models/pilot --track rally --sheet frames.png  # 8 of those frames in one picture
    python -m pilot.drive models/pilot --track oval --watch              # in a window, in real time
    python -m pilot.drive http://localhost:8300 --track circuit          # through python -m pilot.serve
    python -m pilot.drive models/pilot --pilot [--tracks ...] [--delays 0,1,2,3,4] [--json out.json]

Every frame the game renders the chase camera (the game's own renderer, offscreen), the pilot
sees that image and the measured speed, and its steering and target speed become the four keys
(``pilot.runtime.keys_from``); nothing else of the simulation reaches it. ``--delay K`` hands the pilot
the image of K frames ago, as a slow camera or network would. ``--pilot`` evaluates: one full lap from
the start line on every track for every delay, each against the pursuit baseline's lap (the delays of a
track driven together as one batched race, their cameras drawn in one pass; each lap is the lap it is
alone), in ``--workers`` processes (one renderer each), and prints a table and a summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from game import tracklist

STALL_FRAMES = 250  # 10 s without progress ends a lap unfinished


def open_pilot(model_or_url: str) -> Any:
    """A ``PilotModel`` for a path, the served API's ``PilotClient`` for an http(s) URL."""
    if model_or_url.startswith(("http://", "https://")):
        from pilot.client import PilotClient

        return PilotClient(model_or_url)
    from pilot.runtime import PilotModel

    return PilotModel.load(model_or_url)


def lap_env(renderer: Any, track: Any, max_frames: int = 5000) -> Any:
    """The camera environment for one lap from the start line on ``track``, drawn by ``renderer``."""
    from game.camera_env import RallyRoboPilotCameraEnv

    return RallyRoboPilotCameraEnv(track=track, renderer=renderer, max_frames=max_frames, stall_frames=STALL_FRAMES)


def drive_lap(renderer: Any, track: Any, pilot: Any, *, delay: int = 0, max_frames: int = 5000,
              on_frame: Any = None) -> Any:
    """One lap from the start line; the pilot sees the image of ``delay`` frames ago. -> LapResult.

    ``on_frame(observation, keys)`` is the roll-out's (``game.rollout``), called before every step."""
    from game.rollout import rollout
    from pilot.runtime import PilotPolicy

    return rollout(lap_env(renderer, track, max_frames), PilotPolicy(pilot, delay), on_frame)[0]


class BatchPilot:
    """One pilot at the wheel of every car of a camera vector environment, car ``i`` seeing the image of
    ``delays[i]`` frames ago: a ``game.rollout.Policy``. Each car is predicted alone (as in ``drive_lap``), so
    its lap is the lap it drives alone; a car whose lap is over is not predicted."""

    def __init__(self, race: Any, pilot: Any, delays: list[int]) -> None:
        from pilot.runtime import PilotPolicy

        self.race = race
        self.policies = [PilotPolicy(pilot, delay) for delay in delays]

    def reset(self) -> None:
        for policy in self.policies:
            policy.reset()

    def act(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        keys = np.zeros((len(self.policies), 4), dtype=bool)
        done = self.race.done
        for i, policy in enumerate(self.policies):
            if not done[i]:
                keys[i] = policy.act({"image": observation["image"][i], "speed": observation["speed"][i]})
        return keys


def drive_laps(renderer: Any, track: Any, pilot: Any, delays: list[int], *, max_frames: int = 5000) -> list[Any]:
    """One lap from the start line per delay, driven together as one batched race (every camera drawn in one
    pass); each the LapResult ``drive_lap`` gives for that delay."""
    from game.camera_env import RallyRoboPilotCameraVectorEnv
    from game.rollout import rollout

    env = RallyRoboPilotCameraVectorEnv(len(delays), track=track, renderer=renderer, max_frames=max_frames,
                                        stall_frames=STALL_FRAMES)
    return rollout(env, BatchPilot(env.race, pilot, delays))


# -- evaluation ---------------------------------------------------------------------------------------
_worker: dict[str, Any] = {}


def _evaluate_track(model_or_url: str, name: str, delays: list[int], max_frames: int) -> list[dict[str, Any]]:
    """Runs in a worker process: every delay on one track (one batched race), and the pursuit lap and the
    lower bound to compare with."""
    from game.bounds import lap_lower_bound
    from game.pursuit import pursuit_lap
    from pilot.tracks import track_by_name

    track = track_by_name(name)
    if "renderer" not in _worker:
        from game.scene import UrsinaRenderer

        _worker["pilot"] = open_pilot(model_or_url)
        _worker["renderer"] = UrsinaRenderer(track, headless=True, frame_size=_worker["pilot"].input_size, hud=False)
    base, bound = pursuit_lap(track), lap_lower_bound(track)
    t0 = time.perf_counter()
    laps = drive_laps(_worker["renderer"], track, _worker["pilot"], delays, max_frames=max_frames)
    rate = sum(lap.frames for lap in laps) / (time.perf_counter() - t0)  # every delay's lap, driven together
    return [{"track": name, "delay": delay, **lap.to_dict(), "pursuit_lap_s": base.lap_time_s,
             "ratio": lap.lap_time_s / base.lap_time_s if lap.finished else None,
             "lower_bound_s": bound, "bound_ratio": lap.lap_time_s / bound if lap.finished else None,
             "frames_per_s": rate}
            for delay, lap in zip(delays, laps, strict=True)]


def evaluate(model_or_url: str, tracks: list[str], delays: list[int], *, workers: int = 2,
             seen: set[str] | None = None, max_frames: int = 5000) -> dict[str, Any]:
    """Full laps on every track at every delay; ``seen`` names the tracks the model was trained on."""
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        n = len(tracks)
        rows = [r for part in pool.map(_evaluate_track, [model_or_url] * n, tracks, [delays] * n, [max_frames] * n)
                for r in part]
    seen = seen or set()
    for r in rows:
        r["trained_on"] = r["track"] in seen
    summary = []
    for delay in delays:
        for group, keep in (("trained", True), ("unseen", False)):
            laps = [r for r in rows if r["delay"] == delay and r["trained_on"] == keep]
            if not laps:
                continue
            done = [r for r in laps if r["finished"]]
            ratios = [r["ratio"] for r in done]
            summary.append({"delay": delay, "tracks": group, "laps": len(laps), "finished": len(done),
                            "clean": sum(r["finished"] and r["collisions"] == 0 for r in laps),
                            "wall_contacts": sum(r["collisions"] for r in laps),
                            "ratio_mean": round(float(np.mean(ratios)), 3) if ratios else None,
                            "ratio_max": round(float(np.max(ratios)), 3) if ratios else None,
                            "bound_ratio_mean": round(float(np.mean([r["bound_ratio"] for r in done])), 3)
                            if done else None,
                            "pursuit_bound_ratio_mean": round(float(np.mean([r["pursuit_lap_s"] / r["lower_bound_s"]
                                                                             for r in laps])), 3)})
    return {"rows": rows, "summary": summary}


def print_evaluation(report: dict[str, Any]) -> None:
    print(f"{'track':17s} {'seen':>5s} {'delay':>5s} {'result':>12s} {'pursuit':>8s} {'ratio':>6s} {'walls':>5s}")
    for r in report["rows"]:
        result = f"{r['lap_time_s']:.2f} s" if r["finished"] else f"{r['progress']:.0%} DNF"
        ratio = f"{r['ratio']:.3f}" if r["ratio"] else "-"
        print(f"{r['track']:17s} {'yes' if r['trained_on'] else 'no':>5s} {r['delay']:5d} {result:>12s} "
              f"{r['pursuit_lap_s']:7.2f}s {ratio:>6s} {r['collisions']:5d}")
    print()
    for s in report["summary"]:
        ratios = (f"lap time x{s['ratio_mean']} of pursuit (max x{s['ratio_max']}), x{s['bound_ratio_mean']} of the "
                  f"lower bound (pursuit: x{s['pursuit_bound_ratio_mean']})" if s["ratio_mean"] else "")
        print(f"delay {s['delay']}: {s['tracks']:7s} tracks {s['finished']}/{s['laps']} finished, "
              f"{s['clean']} without wall contact, {s['wall_contacts']} contacts; {ratios}")


# -- watching and recording ---------------------------------------------------------------------------
def overlay(image: np.ndarray, steering: float, target: float, speed: float, keys: Any = None, *,
            full: float = 1.0, scale: int = 4) -> np.ndarray:
    """The pilot's view enlarged with its decisions and the keys held (``pilot.pictures.overlay``)."""
    from pilot.pictures import overlay as draw

    return draw(image, steering, target, speed, keys, full=full, scale=scale)


def save_video(frames: list[np.ndarray], path: Path) -> None:
    """An animated GIF with Pillow (no video codec needed), at the game's 25 frames per second, every 2nd frame."""
    from PIL import Image

    images = [Image.fromarray(f).quantize(colors=128) for f in frames[::2]]
    images[0].save(path, save_all=True, append_images=images[1:], duration=80, loop=0, optimize=True)


def save_sheet(frames: list[np.ndarray], path: Path, n: int = 8, columns: int = 4) -> None:
    """``n`` frames spread over the lap, in a grid: a picture of what the pilot saw and decided."""
    from PIL import Image

    picks = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, n)]
    rows = [np.concatenate(picks[r:r + columns], axis=1) for r in range(0, n, columns)]
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, optimize=True)


def drive_one(args: argparse.Namespace, pilot: Any) -> int:
    from game.pursuit import pursuit_lap
    from game.rollout import rollout
    from game.scene import UrsinaRenderer
    from pilot.runtime import PilotPolicy
    from pilot.tracks import track_by_name

    track = track_by_name(args.track)
    with contextlib.redirect_stdout(sys.stderr):  # Ursina's banners, printed from Python: stdout is the lap line
        renderer = UrsinaRenderer(track, headless=not args.watch, frame_size=pilot.input_size, hud=args.watch)
    env, policy = lap_env(renderer, track, args.max_frames), PilotPolicy(pilot, args.delay)
    seen: list[tuple[np.ndarray, float, float, float, np.ndarray]] = []
    t0 = time.perf_counter()

    def on_frame(observation, keys):
        if args.video or args.sheet:  # drawn after the lap, with the bar scaled to the lap's steering
            p = policy.prediction
            seen.append((np.array(observation["image"]), float(p.steering[0]), float(p.target_speed[0]),
                         float(observation["speed"][0]), np.asarray(keys).reshape(-1)))
        if args.watch:  # real time: frame k is due at t0 + k / 25
            time.sleep(max(0.0, t0 + env.race.frame / 25 - time.perf_counter()))

    lap = rollout(env, policy, on_frame)[0]
    wall = time.perf_counter() - t0
    base = pursuit_lap(track)
    if seen:
        from pilot.pictures import steering_scale

        full = steering_scale([s[1] for s in seen])
        frames = [overlay(*s, full=full) for s in seen]
    if args.video:
        save_video(frames, Path(args.video))
    if args.sheet:
        save_sheet(frames, Path(args.sheet))
    status = f"lap {lap.lap_time_s:.2f} s" if lap.finished else f"unfinished at {lap.progress:.0%}"
    ratio = f", x{lap.lap_time_s / base.lap_time_s:.3f} of pursuit ({base.lap_time_s:.2f} s)" if lap.finished else ""
    print(f"{track.name}: {status}{ratio}, {lap.collisions} wall contacts, image {args.delay} frames late, "
          f"{lap.frames / wall:.0f} frames/s closed loop ({pilot.version})")
    renderer.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pilot.drive", description=__doc__.split("\n")[0])
    p.add_argument("model", help="model folder or model.onnx, or the URL of python -m pilot.serve")
    p.add_argument("--track", default="circuit", help="bundled name, JSON path or random-SEED")
    p.add_argument("--delay", type=int, default=0, help="frames the image is late")
    p.add_argument("--max-frames", type=int, default=5000, help="frames before a lap ends unfinished")
    p.add_argument("--watch", action="store_true", help="drive in a window, in real time")
    p.add_argument("--video", default=None, help="write the pilot's view with its decisions to this .gif")
    p.add_argument("--sheet", default=None, help="write 8 frames of the lap with the pilot's decisions to this .png")
    p.add_argument("--pilot", action="store_true", help="evaluate on --tracks at every --delays")
    p.add_argument("--tracks", default=tracklist.JUDGING_DEFAULT,
                   help=f"tracks for --pilot (default {tracklist.JUDGING_DEFAULT}: the bundled tracks and held-out "
                   "ones no training command may use)")
    p.add_argument("--delays", default="0,1,2,3,4", help="image delays for --pilot (frames)")
    p.add_argument("--workers", type=int, default=2, help="processes for --pilot")
    p.add_argument("--json", default=None, help="write the --pilot report here")
    p.add_argument("--update-card", action="store_true", help="add the --pilot summary to the model card")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    try:
        if args.video and not args.video.endswith(".gif"):
            raise ValueError("--video writes an animated GIF: give a path ending in .gif")
        delays = [int(d) for d in args.delays.split(",")]
        if min(delays + [args.delay]) < 0 or args.workers < 1 or args.max_frames < 1:
            raise ValueError("delays must be >= 0, --workers and --max-frames positive")
        tracks = tracklist.parse(args.tracks if args.pilot else args.track, tracklist.Purpose.JUDGING)
        for name in tracks:
            tracklist.load(name)
        pilot = open_pilot(args.model)
    except Exception as exc:  # noqa: BLE001 - CLI: one clear line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.pilot:
        return drive_one(args, pilot)
    card = getattr(pilot, "card", None)  # None for a pilot behind a URL
    seen = card.seen_tracks if card else set()
    report = evaluate(args.model, tracks, delays, workers=args.workers, seen=seen, max_frames=args.max_frames)
    report["model"] = pilot.version
    print_evaluation(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    if args.update_card and card:
        from pilot.runtime import write_card

        write_card(Path(pilot.path).parent, card.model_copy(update={"evaluation": {
            "summary": report["summary"], "tracks": tracks, "delays": delays,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}))
    return 0


if __name__ == "__main__":
    from game.__main__ import machine_stdout

    sys.stdout = machine_stdout()  # the lap line and the table alone: the renderers' banners go to stderr
    sys.exit(main())
