"""Recorded camera frames: list sessions and export a session's stream as a dataset on disk.

    python -m game.frames ls --redis redis://localhost:6379/0 [--json]
    python -m game.frames export --redis URL --session ID --out DIR [--limit N]

An export writes ``DIR/images/NNNNNN.jpg|png`` (named by the entry's position in the session: frame
indices restart at 0 when the game is reset, so they cannot name files) and ``DIR/labels.csv`` with one
row per frame: frame, image, forward, back, left, right, speed, ray_0..ray_14, x, y, heading, progress,
stream_id, episode, track; and ``DIR/session.json`` with the session metadata and its episodes (one per
reset: track, first row, frames).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

from game.frame_records import FrameRecord, SessionRecord
from game.recorder import DEFAULT_PREFIX, KEYS, redact_url, sessions_key, stream_key

N_RAYS = 15


def _client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def list_sessions(url: str, prefix: str = DEFAULT_PREFIX) -> list[dict[str, Any]]:
    """Sessions with their frame counts (streams found by key, metadata from the sessions hash)."""
    r = _client(url)
    meta = {_text(k): _session(r, prefix, _text(k), v) for k, v in r.hgetall(sessions_key(prefix)).items()}
    found: dict[str, dict[str, Any]] = {}
    for key in r.scan_iter(match=f"{prefix}:frames:*", count=500):
        session = _text(key).split(":", 2)[2]
        found[session] = {"session": session, "frames": int(r.xlen(key)), **meta.get(session, {})}
    for session, m in meta.items():
        found.setdefault(session, {"session": session, "frames": 0, **m})
    out = []
    for session in sorted(found):
        d = found[session]
        d.pop("stream", None)
        out.append(d)
    return out


def _session(r: Any, prefix: str, session: str, raw: bytes | None) -> dict[str, Any]:
    """A sessions-hash entry (any kind) as a dict without its schema version; {} when there is none."""
    if raw is None:
        return {}
    record = SessionRecord.from_json(raw, f"{sessions_key(prefix)}[{session}]")
    return record.model_dump(exclude={"schema_version"}, exclude_none=True)


def export_session(
    url: str, session: str, out: str | os.PathLike, *, prefix: str = DEFAULT_PREFIX,
    limit: int | None = None, batch: int = 200,
) -> dict[str, Any]:
    """Write a session's frames to ``out``; returns a summary (frames written, first/last frame)."""
    r = _client(url)
    key = stream_key(session, prefix)
    if not r.exists(key):
        raise LookupError(f"no frames recorded for session {session!r} (stream {key} does not exist)")
    out = Path(out)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    meta = _session(r, prefix, session, r.hget(sessions_key(prefix), session))
    header = ["frame", "image", *KEYS, "speed", *[f"ray_{i}" for i in range(N_RAYS)], "x", "y", "heading",
              "progress", "stream_id", "episode", "track"]
    episodes: list[dict[str, Any]] = []
    n = 0
    first = last = None
    start = "-"
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        while limit is None or n < limit:
            count = batch if limit is None else min(batch, limit - n)
            entries = r.xrange(key, min=start, max="+", count=count)
            if not entries:
                break
            for entry_id, fields in entries:
                f = FrameRecord.from_fields(fields, f"{key} entry {_text(entry_id)}")
                ext = "jpg" if f.format == "jpeg" else "png"
                name = f"{n:06d}.{ext}"
                episode = f.episode or 0
                if not episodes or (episodes[-1]["episode"], episodes[-1]["track"]) != (episode, f.track):
                    episodes.append({"episode": episode, "track": f.track, "first_row": n, "frames": 0})
                episodes[-1]["frames"] += 1
                (images / name).write_bytes(f.image)
                row = [f.frame, f"images/{name}", *[int(f.controls[k]) for k in KEYS], repr(f.speed), *f.rays,
                       *["" if v is None else repr(v) for v in (f.x, f.y, f.heading, f.progress)],
                       _text(entry_id), episode, f.track]
                writer.writerow(row)
                n += 1
                first = f.frame if first is None else first
                last = f.frame
            last_id = _text(entries[-1][0])
            start = "(" + last_id
    summary = {"session": session, "frames": n, "first_frame": first, "last_frame": last, "out": str(out),
               **{k: v for k, v in meta.items() if k != "stream"},
               "tracks": list(dict.fromkeys(e["track"] for e in episodes)) or meta.get("tracks", []),
               "episodes": episodes}
    (out / "session.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    default_redis = os.environ.get("RRP_REDIS", "redis://localhost:6379/0")
    p = argparse.ArgumentParser(prog="python -m game.frames", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    p_ls = sub.add_parser("ls", help="list recorded sessions with frame counts")
    p_ls.add_argument("--redis", default=default_redis, help="Redis URL (env RRP_REDIS)")
    p_ls.add_argument("--json", action="store_true")
    p_ex = sub.add_parser("export", help="write a session as images + labels.csv")
    p_ex.add_argument("--redis", default=default_redis, help="Redis URL (env RRP_REDIS)")
    p_ex.add_argument("--session", required=True)
    p_ex.add_argument("--out", required=True)
    p_ex.add_argument("--limit", type=int, default=None)
    args = p.parse_args(argv)
    try:
        if args.cmd == "ls":
            sessions = list_sessions(args.redis)
            if args.json:
                print(json.dumps(sessions, indent=2))
            else:
                print(f"{'session':32s} {'frames':>8s}  track")
                for s in sessions:
                    tracks = s.get("tracks") or [s.get("track", "")]
                    print(f"{s['session']:32s} {s['frames']:8d}  {','.join(tracks)}")
        else:
            summary = export_session(args.redis, args.session, args.out, limit=args.limit)
            print(json.dumps(summary))
    except (LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - CLI: one clear line instead of a traceback
        import redis

        if isinstance(exc, redis.exceptions.ConnectionError):
            print(f"error: cannot reach Redis at {redact_url(args.redis)}: "
                  f"{str(exc).replace(args.redis, redact_url(args.redis))}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
