"""``python -m ga.experts``: evolve one specialist per collection track, the camera pilot's teachers.

    python -m ga.experts --tracks all,random-0..7 --out experts/ [--evaluators URLS] [--generations 40]
    python -m ga.experts --tracks all --out experts/ -- --population 32 --hidden 16   # more ga.run options

Every track gets an ordinary ``ga.run`` run folder, ``OUT/<track>/`` (config, checkpoint, ``best.json``,
plots), evolved on that track alone with an MLP controller (the only kind that can label poses other than
its own lap, see ``pilot.expert``). The runs go one after the other, each through ``ga.run.main``, so every
run has the whole fleet (``--evaluators``) or every local process to itself; a run's result does not depend
on where it is evaluated. Held-out tracks are refused (``game.tracklist``'s training rule).

Resumable: a track recorded as finished in ``OUT/experts.json`` (with at least the generations asked
for) is skipped, a run folder with a checkpoint but no finished record is continued with ``ga.run
--resume``, and the others are started. After every track ``OUT/experts.json`` and ``OUT/experts.md`` are
rewritten: each expert's lap from the start line against the pursuit baseline's lap and the lower bound
(``game.bounds.lap_lower_bound``). ``pilot.collect --experts OUT`` then labels each track's frames with its
own specialist.

Options this command does not know are passed to ``ga.run`` for new runs (the run's course: population,
hidden layers, seed, strategy, frame limit ...); ``--generations``, ``--workers`` and ``--evaluators`` are
passed on every run, resumed ones too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from game import tracklist
from servicekit import atomic

PROG = "ga.experts"
DEFAULT_TRACKS = "all,random-0..7"
TABLE_JSON, TABLE_MD = "experts.json", "experts.md"
REFUSED = {"--track", "--out", "--resume", "--generated", "--controller"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.split("\n")[0], allow_abbrev=False,
                                epilog="other options are passed to ga.run for new runs (e.g. --population, "
                                "--hidden, --seed, --strategy, --max-frames)")
    p.add_argument("--tracks", default=DEFAULT_TRACKS,
                   help=f"collection tracks, one specialist each (default {DEFAULT_TRACKS}); not the held-out "
                   f"{tracklist.held_out_range()}")
    p.add_argument("--out", default="experts", help="folder of the run folders and the table (default experts)")
    p.add_argument("--generations", type=int, default=None, help="generations per run (ga.run's default if unset)")
    p.add_argument("--workers", type=int, default=None, help="local evaluator processes per run")
    p.add_argument("--evaluators", default=os.environ.get("RRP_EVALUATORS") or None,
                   help="evaluator fleet for every run: URLs, dns://SVC:PORT or k8s://NS/SVC (env RRP_EVALUATORS)")
    p.add_argument("--table-only", action="store_true", help="evolve nothing: rewrite the table from the run folders")
    return p


def read_table(out: Path) -> dict[str, dict[str, Any]]:
    """The per-track status written so far (track label -> row); empty when there is none yet."""
    try:
        doc = json.loads((out / TABLE_JSON).read_text())
    except (OSError, ValueError):
        return {}
    return {row["track"]: row for row in doc.get("experts", []) if isinstance(row, dict) and "track" in row}


def expert_row(name: str, run_dir: Path, status: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """One line of the table: the run's best lap against pursuit and the lower bound."""
    from evaluator.best import BestFileError, read_best
    from game.bounds import lap_lower_bound
    from game.pursuit import pursuit_lap

    track = tracklist.load(name)
    base = pursuit_lap(track)
    row: dict[str, Any] = dict(previous or {})
    row.update({"track": tracklist.label(name), "name": name, "run": str(run_dir), "status": status,
                "pursuit_lap_s": round(base.lap_time_s, 3) if base.finished else None,
                "lower_bound_s": round(lap_lower_bound(track), 3)})
    try:
        best = read_best(run_dir)
    except BestFileError:
        best = None
    lap = best.result if best else None
    row["best_json"] = str(run_dir / "best.json") if best else None
    row["expert_lap_s"] = round(lap.lap_time_s, 3) if lap is not None and lap.finished else None
    row["finished"] = bool(lap is not None and lap.finished)
    row["progress"] = round(lap.progress, 4) if lap is not None else None
    row["wall_contacts"] = lap.collisions if lap is not None else None
    row["vs_pursuit"] = (round(row["expert_lap_s"] / row["pursuit_lap_s"], 4)
                         if row["expert_lap_s"] and row["pursuit_lap_s"] else None)
    row["vs_bound"] = round(row["expert_lap_s"] / row["lower_bound_s"], 4) if row["expert_lap_s"] else None
    row["pursuit_vs_bound"] = (round(row["pursuit_lap_s"] / row["lower_bound_s"], 4)
                               if row["pursuit_lap_s"] else None)
    return row


def generations_done(run_dir: Path) -> int | None:
    """Generations evolved so far (after the initial one): the rows of the run's ``log.csv`` minus one."""
    try:
        rows = (run_dir / "log.csv").read_text().strip().splitlines()
    except OSError:
        return None
    return max(0, len(rows) - 2)


def _gmean(values: list[float]) -> float | None:
    return round(math.exp(math.fsum(map(math.log, values)) / len(values)), 4) if values else None


def write_table(out: Path, rows: list[dict[str, Any]]) -> None:
    """``experts.json`` (every row, plus geometric means) and ``experts.md`` (the same as a table)."""
    done = [r for r in rows if r.get("vs_pursuit")]
    summary = {"tracks": len(rows), "finished": sum(bool(r.get("finished")) for r in rows),
               "gmean_vs_pursuit": _gmean([r["vs_pursuit"] for r in done]),
               "gmean_bound_vs_pursuit": _gmean([r["lower_bound_s"] / r["pursuit_lap_s"]
                                                 for r in rows if r.get("pursuit_lap_s")])}
    atomic.write_json(out / TABLE_JSON, {"experts": rows, "summary": summary})
    lines = ["| track | status | expert lap | pursuit lap | lower bound | expert / pursuit | expert / bound "
             "| wall contacts | generations | run s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lap = f"{r['expert_lap_s']:.2f} s" if r.get("expert_lap_s") else (
            f"DNF {100 * r['progress']:.0f}%" if r.get("progress") is not None else "-")
        pursuit = f"{r['pursuit_lap_s']:.2f} s" if r.get("pursuit_lap_s") else "DNF"
        lines.append(f"| {r['track']} | {r['status']} | {lap} | {pursuit} | {r['lower_bound_s']:.2f} s | "
                     f"{r['vs_pursuit'] or '-'} | {r['vs_bound'] or '-'} | {r.get('wall_contacts', '-')} | "
                     f"{r.get('generations', '-')} | {r.get('seconds', '-')} |")
    lines.append("")
    lines.append(f"{summary['finished']} of {summary['tracks']} experts finish their lap; geometric mean "
                 f"expert / pursuit {summary['gmean_vs_pursuit']}, lower bound / pursuit "
                 f"{summary['gmean_bound_vs_pursuit']}.")
    atomic.write_text(out / TABLE_MD, "\n".join(lines) + "\n")


def ga_run_argv(name: str, run_dir: Path, state: str, args: argparse.Namespace, course: list[str]) -> list[str]:
    """The ``ga.run`` command line for one track: a new run, or ``--resume`` of an interrupted one."""
    common: list[str] = []
    if args.generations is not None:
        common += ["--generations", str(args.generations)]
    if args.workers is not None:
        common += ["--workers", str(args.workers)]
    if args.evaluators:
        common += ["--evaluators", args.evaluators]
    if state == "resume":
        return ["--resume", str(run_dir), *common]
    return ["--track", name, "--out", str(run_dir), "--controller", "mlp", *course, *common]


def plan(names: list[str], out: Path, table: dict[str, dict[str, Any]], generations: int | None) -> list[str]:
    """For each track: ``skip`` (finished with enough generations), ``resume`` or ``new``."""
    states = []
    for name in names:
        row = table.get(tracklist.label(name), {})
        run_dir = out / tracklist.label(name)
        finished = row.get("status") == "done" and (run_dir / "best.json").exists()
        if finished and (generations is None or (row.get("generations") or 0) >= generations):
            states.append("skip")
        elif (run_dir / "checkpoint.json").exists():
            states.append("resume")
        else:
            states.append("new")
    return states


def main(argv: list[str] | None = None) -> int:
    args, course = build_parser().parse_known_args(argv)
    course = [c for c in course if c != "--"]
    try:
        for option in course:
            if option.split("=")[0] in REFUSED:
                raise ValueError(f"{option.split('=')[0]} is set by {PROG} itself "
                                 "(one mlp run per track in OUT/<track>)")
        names = tracklist.parse(args.tracks, tracklist.Purpose.TRAINING, max_tracks=64)
        for name in names:
            tracklist.load(name)
        if args.generations is not None and args.generations < 1:
            raise ValueError("--generations must be at least 1")
    except Exception as exc:  # noqa: BLE001 - CLI: one clear line
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    from ga import run as ga_run

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = read_table(out)
    states = plan(names, out, table, args.generations)
    print(f"{PROG}: {len(names)} tracks -> {out}: " + ", ".join(
        f"{tracklist.label(n)} ({s})" for n, s in zip(names, states, strict=True)), flush=True)
    code = 0
    for name, state in zip(names, states, strict=True):
        label, run_dir = tracklist.label(name), out / tracklist.label(name)
        row = table.get(label, {})
        if state != "skip" and not args.table_only:
            argv_run = ga_run_argv(name, run_dir, state, args, course)
            print(f"{PROG}: {label}: python -m ga.run {' '.join(argv_run)}", flush=True)
            t0 = time.perf_counter()
            code = ga_run.main(argv_run)
            seconds = time.perf_counter() - t0
            row = {**row, "seconds": round(row.get("seconds", 0.0) * (state == "resume") + seconds, 1),
                   "generations": generations_done(run_dir),
                   "ga_run": argv_run if state == "new" else row.get("ga_run", argv_run)}
            status = "done" if code == 0 else "interrupted"
        else:
            status = row.get("status", "done" if (run_dir / "best.json").exists() else "missing")
            row = {**row, "generations": generations_done(run_dir)}
        table[label] = expert_row(name, run_dir, status, row)
        write_table(out, [table[tracklist.label(n)] for n in names if tracklist.label(n) in table])
        if code != 0:
            print(f"{PROG}: {label}: ga.run ended with status {code}; run the same command again to resume",
                  file=sys.stderr)
            return code
    print((out / TABLE_MD).read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
