"""Datasets for the vision pilot: export a collection run from Redis to disk, and load datasets to train.

    python -m pilot.dataset ls --redis URL                       # runs with their episodes and frames
    python -m pilot.dataset export --redis URL --run r0 --out datasets/r0 [--delete]

A dataset is a folder: ``episodes/NNNNN.npz`` (one per episode: ``image`` uint8 (n, H, W, 3) RGB and
the per-frame ``steering``, ``target_speed``, ``speed`` (m/s), ``keys`` (n, 4 executed keys), ``x``,
``y``, ``heading``, and ``expert``: who labelled each frame, ``pursuit`` or ``genome``, "" when not
recorded) and ``dataset.json`` (``pilot.records.DatasetManifest``: the run, frame size, every
episode's record). Arrays, not
image files: 100k frames of 96x72 load in seconds, and a numpy file needs no decoder to inspect.
Keep datasets outside the package tree (the renderer scans the script folder for assets).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pilot.records import DatasetManifest, EpisodeRecord

FIELDS = ("steering", "target_speed", "speed", "x", "y", "heading")
MANIFEST = "dataset.json"


def _client(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=60, socket_connect_timeout=5)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def run_episodes(client: Any, prefix: str = "rrp") -> dict[str, list[EpisodeRecord]]:
    """Complete episodes of every collection run in Redis, by run, in episode order (game sessions left out)."""
    from game.frame_records import SessionRecord
    from game.recorder import sessions_key

    key = sessions_key(prefix)
    runs: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for session, raw in client.hgetall(key).items():
        where = f"{key}[{_text(session)}]"
        if SessionRecord.from_json(raw, where).kind == "episode":
            meta = EpisodeRecord.from_json(raw, where)
            runs[meta.run].append(meta)
    return {run: sorted(eps, key=lambda m: m.index) for run, eps in sorted(runs.items())}


def export_run(url: str, run: str, out: str | os.PathLike, *, prefix: str = "rrp", delete: bool = False,
               progress: bool = False) -> dict[str, Any]:
    """Write every complete episode of ``run`` to ``out``; ``delete`` frees Redis of what was written."""
    from PIL import Image
    from tqdm import tqdm

    from game.frame_records import FrameRecord
    from game.recorder import KEYS, sessions_key, stream_key

    client = _client(url)
    episodes = run_episodes(client, prefix).get(run)
    if not episodes:
        raise LookupError(f"no complete episodes of run {run!r} in Redis at {url}")
    out = Path(out)
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    frames = 0
    for meta in tqdm(episodes, unit="episode", disable=not progress):
        key = stream_key(meta.session, prefix)
        entries = client.xrange(key)
        if len(entries) != meta.frames:
            raise ValueError(f"episode {meta.session}: {len(entries)} frames in Redis, {meta.frames} expected")
        rows = [FrameRecord.from_fields(fields, f"{key} entry {_text(entry_id)}") for entry_id, fields in entries]
        arrays = {"image": np.stack([np.asarray(Image.open(io.BytesIO(r.image)).convert("RGB")) for r in rows]),
                  "keys": np.array([[r.controls[k] for k in KEYS] for r in rows], bool),
                  "expert": np.array([r.expert or "" for r in rows], dtype=str),
                  **{f: np.array([getattr(r, f) for r in rows], float) for f in FIELDS}}
        np.savez(out / "episodes" / f"{meta.index:05d}.npz", **arrays)
        frames += len(rows)
    first = episodes[0]
    DatasetManifest(run=run, frames=frames, width=first.width, height=first.height,
                    tracks=sorted({m.track for m in episodes}), episodes=episodes).write(out / MANIFEST)
    if delete:
        for meta in episodes:
            client.delete(stream_key(meta.session, prefix))
            client.hdel(sessions_key(prefix), meta.session)
    return {"run": run, "episodes": len(episodes), "frames": frames, "out": str(out)}


def read_manifest(path: str | os.PathLike) -> DatasetManifest:
    """The one reader of a dataset folder's ``dataset.json``."""
    try:
        return DatasetManifest.read(Path(path) / MANIFEST)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is not a dataset (no {MANIFEST}; see python -m pilot.dataset)") from None


@dataclass
class Frames:
    """Every frame of one or more datasets, with the episode and track each came from."""

    images: np.ndarray  # (n, H, W, 3) uint8
    speed: np.ndarray  # (n,) m/s
    steering: np.ndarray  # (n,) expert steering in [-1, 1]
    target_speed: np.ndarray  # (n,) expert target speed, m/s
    episode: np.ndarray  # (n,) running episode number over all datasets
    track: np.ndarray  # (n,) track name
    sources: list[dict[str, Any]]  # per dataset: path, run, frames, tracks
    expert: np.ndarray | None = None  # (n,) who labelled each frame: "pursuit", "genome", "" (not recorded)

    def __len__(self) -> int:
        return len(self.speed)


def load(paths: list[str | os.PathLike]) -> Frames:
    """Load datasets written by ``export_run`` (all must share one frame size)."""
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    sources, size, n_episodes = [], None, 0
    for path in map(Path, paths):
        first = len(parts["expert"])
        manifest = read_manifest(path)
        if size not in (None, (manifest.width, manifest.height)):
            raise ValueError(f"{path}: frames are {manifest.width}x{manifest.height}, others {size[0]}x{size[1]}")
        size = (manifest.width, manifest.height)
        for meta in manifest.episodes:
            with np.load(path / "episodes" / f"{meta.index:05d}.npz") as data:
                n = len(data["speed"])
                for name in ("image", "speed", "steering", "target_speed"):
                    parts[name].append(data[name])
                parts["expert"].append(data["expert"].astype(object) if "expert" in data.files
                                       else np.full(n, "", dtype=object))
            parts["episode"].append(np.full(n, n_episodes))
            parts["track"].append(np.full(n, meta.track, dtype=object))
            n_episodes += 1
        who, counts = np.unique(np.concatenate(parts["expert"][first:] or [np.array([], object)]).astype(str),
                                return_counts=True)
        sources.append({"path": str(path), "run": manifest.run, "frames": manifest.frames,
                        "tracks": manifest.tracks,
                        "labelled_by": {(w or "unrecorded"): int(c) for w, c in zip(who, counts, strict=True)}})
    if not sources:
        raise ValueError("no dataset given")
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return Frames(cat["image"], cat["speed"], cat["steering"], cat["target_speed"], cat["episode"],
                  cat["track"].astype(str), sources, cat["expert"].astype(str))


def main(argv: list[str] | None = None) -> int:
    default_redis = os.environ.get("RRP_REDIS", "redis://localhost:6379/0")
    p = argparse.ArgumentParser(prog="python -m pilot.dataset", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    p_ls = sub.add_parser("ls", help="collection runs in Redis with episode and frame counts")
    p_ls.add_argument("--redis", default=default_redis, help="Redis URL (env RRP_REDIS)")
    p_ex = sub.add_parser("export", help="write a run's episodes as a dataset folder")
    p_ex.add_argument("--redis", default=default_redis, help="Redis URL (env RRP_REDIS)")
    p_ex.add_argument("--run", required=True)
    p_ex.add_argument("--out", required=True)
    p_ex.add_argument("--delete", action="store_true", help="delete the exported episodes from Redis")
    for sp in (p_ls, p_ex):
        sp.add_argument("--prefix", default=os.environ.get("RRP_PREFIX", "rrp"), help="Redis key prefix")
    args = p.parse_args(argv)
    try:
        if args.cmd == "ls":
            for run, eps in run_episodes(_client(args.redis), args.prefix).items():
                print(json.dumps({"run": run, "episodes": len(eps), "frames": sum(e.frames for e in eps),
                                  "tracks": len({e.track for e in eps})}))
        else:
            print(json.dumps(export_run(args.redis, args.run, args.out, prefix=args.prefix, delete=args.delete,
                                        progress=sys.stderr.isatty())))
    except (LookupError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - CLI: one clear line instead of a traceback
        import redis

        if isinstance(exc, redis.exceptions.RedisError):
            print(f"error: Redis at {args.redis}: {exc}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
