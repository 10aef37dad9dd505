"""Gate a trained pilot: promote it into the serving folder only when it drives better than the serving one.

    python -m pilot.promote models/r1 --serving models/serving [--tracks random-1000000000..1000000009]
                            [--delays 0,1,2,3,4] [--workers 2] [--json promote.json]

Both models drive the same full laps from the start line (``pilot.drive``'s evaluation: every track at
every image delay; by default the ten held-out tracks no training command may draw). The candidate wins
when it finishes more laps; on equal counts, when its geometric-mean lap time over the laps both finished
is lower; when neither finished any lap, when it got further (mean progress). A tie is not a win.
The decision and both evaluations go into the candidate's model card (``evaluation.promotion``, through
the card's one writer, ``pilot.runtime.write_card``), promoted or not.

The serving folder (``pilot.serve --model models/serving``) is a symlink to a release folder,
``models/serving.releases/NNNN-<version>/`` (``model.onnx`` + ``model.json``). A promotion writes the
new release folder completely, then swaps the symlink in one rename, so the hot-reloading service sees
the old model or the new one, never a mix. A serving path that is a plain folder is first moved into the
releases as ``0000-<version>`` (the service keeps its model while the path is briefly missing). Every
decision is appended to ``models/serving.releases/promotions.jsonl``.

Exit status: 0 promoted, 3 refused (the serving model is as good or better), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from game import tracklist

REFUSED = 3
RELEASES_SUFFIX = ".releases"
LOG = "promotions.jsonl"


def releases_of(serving: Path) -> Path:
    return serving.with_name(serving.name + RELEASES_SUFFIX)


def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the decision compares, from an evaluation's rows (one per track and delay)."""
    done = [r for r in rows if r["finished"]]
    return {"laps": len(rows), "finished": len(done),
            "wall_contacts": sum(r["collisions"] for r in rows),
            "gmean_lap_s": (round(math.exp(math.fsum(math.log(r["lap_time_s"]) for r in done) / len(done)), 4)
                            if done else None),
            "gmean_vs_pursuit": (round(math.exp(math.fsum(math.log(r["ratio"]) for r in done) / len(done)), 4)
                                 if done else None),
            "gmean_vs_bound": (round(math.exp(math.fsum(math.log(r["lap_time_s"] / r["lower_bound_s"])
                                                        for r in done) / len(done)), 4) if done else None),
            "mean_progress": round(math.fsum(r["progress"] for r in rows) / len(rows), 4) if rows else 0.0}


def decide(candidate: list[dict[str, Any]], serving: list[dict[str, Any]] | None) -> tuple[bool, str]:
    """(promote?, why): finished laps first, then the geometric-mean lap time over the laps both finished,
    then (no lap finished by both) the mean progress. Ties keep the serving model."""
    if serving is None:
        return True, "nothing is serving"
    c, s = score(candidate), score(serving)
    if c["finished"] != s["finished"]:
        verdict = c["finished"] > s["finished"]
        return verdict, f"finished {c['finished']} of {c['laps']} laps, the serving model {s['finished']}"
    key = {(r["track"], r["delay"]): r for r in serving}
    both = [(r, key[(r["track"], r["delay"])]) for r in candidate
            if r["finished"] and (r["track"], r["delay"]) in key and key[(r["track"], r["delay"])]["finished"]]
    if both:
        gc = math.exp(math.fsum(math.log(a["lap_time_s"]) for a, _ in both) / len(both))
        gs = math.exp(math.fsum(math.log(b["lap_time_s"]) for _, b in both) / len(both))
        return gc < gs, (f"both finished {c['finished']} of {c['laps']} laps; geometric-mean lap over the {len(both)} "
                         f"laps both finished {gc:.3f} s, the serving model {gs:.3f} s")
    return c["mean_progress"] > s["mean_progress"], (
        f"neither finished a lap; mean progress {c['mean_progress']:.3f}, the serving model {s['mean_progress']:.3f}")


def _compact(report: dict[str, Any]) -> dict[str, Any]:
    keep = ("track", "delay", "finished", "lap_time_s", "progress", "collisions", "pursuit_lap_s", "ratio",
            "lower_bound_s")
    return {"summary": report["summary"], "score": score(report["rows"]),
            "rows": [{k: r.get(k) for k in keep} for r in report["rows"]]}


def publish(serving: Path, candidate: Path, version: str) -> Path:
    """Copy the candidate into a new release folder, then point ``serving`` at it in one rename."""
    releases = releases_of(serving)
    releases.mkdir(parents=True, exist_ok=True)
    if serving.exists() and not serving.is_symlink():  # a plain folder: adopt it as release 0000
        from pilot.runtime import read_card

        old = read_card(serving).version if (serving / "model.json").exists() else "unknown"
        os.replace(serving, releases / f"0000-{_safe(old)}")
        serving.symlink_to(os.path.relpath(releases / f"0000-{_safe(old)}", serving.parent))
    numbers = [int(p.name[:4]) for p in releases.iterdir() if p.is_dir() and p.name[:4].isdigit()]
    release = releases / f"{max(numbers, default=0) + 1:04d}-{_safe(version)}"
    staging = release.with_name(release.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name in ("model.onnx", "model.json"):
        shutil.copy2(candidate / name, staging / name)
    os.replace(staging, release)
    link = serving.with_name(serving.name + ".new")
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(os.path.relpath(release, serving.parent))
    os.replace(link, serving)  # the one atomic step: the service sees the old release or the new one
    return release


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:60]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pilot.promote", description=__doc__.split("\n")[0])
    p.add_argument("candidate", help="the trained model's folder (model.onnx + model.json, from pilot.train)")
    p.add_argument("--serving", required=True,
                   help="the path pilot.serve --model serves: a symlink to a release folder, managed here")
    p.add_argument("--tracks", default=tracklist.UNSEEN,
                   help=f"tracks both models drive (default {tracklist.UNSEEN}: held out from every training)")
    p.add_argument("--delays", default="0,1,2,3,4", help="image delays in frames (default 0,1,2,3,4)")
    p.add_argument("--workers", type=int, default=2, help="processes per evaluation (one renderer each)")
    p.add_argument("--max-frames", type=int, default=5000, help="frames before a lap ends unfinished")
    p.add_argument("--json", default=None, help="also write the decision and both evaluations here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pilot.runtime import PilotModel, read_card, write_card

    try:
        delays = [int(d) for d in args.delays.split(",")]
        if min(delays) < 0 or args.workers < 1 or args.max_frames < 1:
            raise ValueError("delays must be >= 0, --workers and --max-frames positive")
        tracks = tracklist.parse(args.tracks, tracklist.Purpose.JUDGING)
        for name in tracks:
            tracklist.load(name)
        candidate_dir = Path(args.candidate)
        candidate = PilotModel.load(candidate_dir)
        candidate_dir = candidate.path.parent
        serving = Path(args.serving)
        current = PilotModel.load(serving) if (serving / "model.onnx").exists() else None
        if current is not None and Path(os.path.realpath(current.path)) == Path(os.path.realpath(candidate.path)):
            raise ValueError(f"{args.candidate} is the model serving at {serving}")
    except Exception as exc:  # noqa: BLE001 - CLI: one clear line
        print(f"pilot.promote: error: {exc}", file=sys.stderr)
        return 2
    from pilot.drive import evaluate

    t0 = time.perf_counter()
    cand_report = evaluate(str(candidate_dir), tracks, delays, workers=args.workers,
                           seen=candidate.card.seen_tracks, max_frames=args.max_frames)
    t1 = time.perf_counter()
    serv_report = (evaluate(str(serving), tracks, delays, workers=args.workers, seen=current.card.seen_tracks,
                            max_frames=args.max_frames) if current is not None else None)
    t2 = time.perf_counter()
    promote, reason = decide(cand_report["rows"], serv_report["rows"] if serv_report else None)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    decision = {"decision": "promoted" if promote else "refused", "reason": reason, "created": created,
                "serving_path": str(serving), "rule": "finished laps, then geometric-mean lap time over laps "
                "both finished, then mean progress; a tie keeps the serving model",
                "candidate": {"version": candidate.version, **_compact(cand_report),
                              "seconds": round(t1 - t0, 1)},
                "serving": ({"version": current.version, "path": str(current.path.parent), **_compact(serv_report),
                             "seconds": round(t2 - t1, 1)} if current is not None else None)}
    card = read_card(candidate_dir)
    write_card(candidate_dir, card.model_copy(update={"evaluation": {
        "summary": cand_report["summary"], "tracks": tracks, "delays": delays, "created": created,
        "promotion": decision}}))
    release = publish(serving, candidate_dir, candidate.version) if promote else None
    if release is not None:
        decision["release"] = str(release)
    releases_of(serving).mkdir(parents=True, exist_ok=True)
    with open(releases_of(serving) / LOG, "a") as log:
        log.write(json.dumps({k: decision[k] for k in ("decision", "reason", "created")} | {
            "candidate": candidate.version, "serving": current.version if current else None,
            "release": decision.get("release")}) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(decision, indent=1) + "\n")
    cs = decision["candidate"]["score"]
    ss = decision["serving"]["score"] if current is not None else None
    for who, s in (("candidate " + candidate.version, cs), ("serving " + (current.version if current else "-"), ss)):
        if s is not None:
            print(f"{who}: {s['finished']}/{s['laps']} laps finished, {s['wall_contacts']} wall contacts, "
                  f"geometric-mean lap {s['gmean_lap_s']} s, x{s['gmean_vs_pursuit']} of pursuit, "
                  f"x{s['gmean_vs_bound']} of the lower bound, mean progress {s['mean_progress']}")
    where = f" -> {serving} = {release}" if release else f"; {serving} keeps {current.version if current else '-'}"
    print(f"{decision['decision']}: {reason}{where}")
    return 0 if promote else REFUSED


if __name__ == "__main__":
    sys.exit(main())
