"""Datasets for the vision pilot: export a collection run from Redis to disk, and load datasets to train.

    python -m pilot.dataset ls --redis URL                       # runs with their episodes and frames
    python -m pilot.dataset export --redis URL --run r0 --out datasets/r0 [--delete]
    python -m pilot.dataset export --redis URL --session me [--session ...] --out datasets/me   # your own laps
    python -m pilot.dataset show datasets/me --out pictures/me    # contact sheet, label histograms, augmentation

A collection run (``pilot.collect``) comes labelled by its expert. A game session (``python -m game
--redis URL``, driven at the keyboard or over the game's API) is labelled here from the keys it was
driven with (``pilot.expert.keys_labels``: steering from the keys, target speed from the speed reached
10 frames later) and cut into one dataset episode per lap, so training can hold out whole laps.

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

from pilot.records import DatasetEpisode, DatasetManifest, EpisodeRecord, GameEpisodeRecord

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


def game_sessions(client: Any, prefix: str = "rrp") -> dict[str, Any]:
    """The game's recording sessions in Redis (``GameSession`` by id; collection episodes left out)."""
    from game.frame_records import GameSession, SessionRecord
    from game.recorder import sessions_key

    key = sessions_key(prefix)
    out = {}
    for session, raw in client.hgetall(key).items():
        where = f"{key}[{_text(session)}]"
        if SessionRecord.from_json(raw, where).kind == "game":
            out[_text(session)] = GameSession.from_json(raw, where)
    return dict(sorted(out.items()))


def _session_frames(client: Any, key: str, batch: int = 500):
    """Every frame record of a session stream, in order, read ``batch`` entries at a time."""
    from game.frame_records import FrameRecord

    start = "-"
    while entries := client.xrange(key, min=start, max="+", count=batch):
        for entry_id, fields in entries:
            yield FrameRecord.from_fields(fields, f"{key} entry {_text(entry_id)}")
        start = "(" + _text(entries[-1][0])


def _stretches(rows: list[Any]) -> list[list[Any]]:
    """A session's frames cut where the game was reset (episode, track or a frame index that restarts)."""
    out: list[list[Any]] = []
    for r in rows:
        last = out[-1][-1] if out else None
        if last is None or (r.episode, r.track) != (last.episode, last.track) or r.frame <= last.frame:
            out.append([])
        out[-1].append(r)
    return out


def _laps(progress: np.ndarray) -> np.ndarray:
    """The lap each frame belongs to: a new lap where the lap progress falls back (the line was crossed)."""
    if len(progress) < 2:
        return np.zeros(len(progress), int)
    return np.concatenate([[0], np.cumsum(np.diff(progress) < -0.5)])


def export_sessions(url: str, sessions: list[str], out: str | os.PathLike, *, prefix: str = "rrp",
                    horizon: int | None = None, run: str | None = None, delete: bool = False) -> dict[str, Any]:
    """Write game sessions (driven with the keys) to ``out`` as a labelled dataset, one episode per lap."""
    from PIL import Image

    from game.recorder import KEYS, sessions_key, stream_key
    from pilot.expert import GENOME_HORIZON, keys_labels

    horizon = GENOME_HORIZON if horizon is None else horizon
    if horizon < 1:
        raise ValueError("the horizon is at least 1 frame")
    client = _client(url)
    known = game_sessions(client, prefix)
    missing = [s for s in sessions if s not in known]
    if missing:
        raise LookupError(f"no game session {', '.join(map(repr, missing))} in Redis at {url} "
                          f"(python -m pilot.dataset ls lists them)")
    run = run or "+".join(sessions)
    out = Path(out)
    (out / "episodes").mkdir(parents=True, exist_ok=True)
    episodes: list[DatasetEpisode] = []
    recorded = 0
    for session in sessions:
        rows = list(_session_frames(client, stream_key(session, prefix)))
        recorded += len(rows)
        for stretch in _stretches(rows):
            frame = np.array([r.frame for r in stretch])
            speed = np.array([r.speed for r in stretch], float)
            keys = np.array([[r.controls[k] for k in KEYS] for r in stretch], bool)
            keep, steering, target = keys_labels(frame, keys, speed, horizon)
            lap = _laps(np.array([r.progress or 0.0 for r in stretch], float))
            for n in np.unique(lap):
                idx = np.flatnonzero(keep & (lap == n))
                if not len(idx):
                    continue
                first = stretch[idx[0]]
                arrays = {"image": np.stack([np.asarray(Image.open(io.BytesIO(stretch[i].image)).convert("RGB"))
                                             for i in idx]),
                          "keys": keys[idx], "steering": steering[idx], "target_speed": target[idx],
                          "speed": speed[idx], **{f: np.array([getattr(stretch[i], f) for i in idx], float)
                                                  for f in ("x", "y", "heading")}}
                if arrays["image"].shape[1:3] != (first.height, first.width):
                    raise ValueError(f"session {session}: frames of several sizes")
                index = len(episodes)
                np.savez(out / "episodes" / f"{index:05d}.npz", **arrays)
                episodes.append(GameEpisodeRecord(
                    session=session, game_episode=first.episode or 0, lap=int(n), track=first.track, run=run,
                    index=index, frames=len(idx), first_frame=first.frame, last_frame=stretch[idx[-1]].frame,
                    horizon=horizon, format=first.format, width=first.width, height=first.height))
    if not episodes:
        raise LookupError(f"nothing to label in {', '.join(sessions)}: no frame with a known later speed "
                          "where the car moved")
    sizes = {(e.width, e.height) for e in episodes}
    if len(sizes) > 1:
        raise ValueError(f"the sessions hold frames of several sizes {sorted(sizes)}: export them apart")
    frames = sum(e.frames for e in episodes)
    DatasetManifest(run=run, frames=frames, width=episodes[0].width, height=episodes[0].height,
                    tracks=sorted({e.track for e in episodes}), episodes=episodes).write(out / MANIFEST)
    if delete:
        for session in sessions:
            client.delete(stream_key(session, prefix))
            client.hdel(sessions_key(prefix), session)
    return {"run": run, "sessions": len(sessions), "episodes": len(episodes), "frames": frames,
            "recorded": recorded, "out": str(out)}


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
    keys: np.ndarray | None = None  # (n, 4) the keys held: forward, back, left, right

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
                for name in ("image", "speed", "steering", "target_speed", "keys"):
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
                  cat["track"].astype(str), sources, cat["expert"].astype(str), cat["keys"])


def main(argv: list[str] | None = None) -> int:
    default_redis = os.environ.get("RRP_REDIS", "redis://localhost:6379/0")
    p = argparse.ArgumentParser(prog="python -m pilot.dataset", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    p_ls = sub.add_parser("ls", help="collection runs and game sessions in Redis with their frame counts")
    p_ls.add_argument("--redis", default=default_redis, help="Redis URL (env RRP_REDIS)")
    p_ex = sub.add_parser("export", help="write a run's episodes, or game sessions, as a dataset folder")
    p_ex.add_argument("--redis", default=default_redis, help="Redis URL (env RRP_REDIS)")
    what = p_ex.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="a collection run (pilot.collect)")
    what.add_argument("--session", action="append", help="a game session driven with the keys (python -m game "
                      "--redis); repeat for several")
    p_ex.add_argument("--out", required=True)
    p_ex.add_argument("--horizon", type=int, default=None,
                      help="game sessions: the target speed is the speed reached this many frames later (10)")
    p_ex.add_argument("--delete", action="store_true", help="delete the exported episodes from Redis")
    p_show = sub.add_parser("show", help="PNG pictures of a dataset: a contact sheet of frames with their labels, "
                            "the label histograms, what training's augmentation does")
    p_show.add_argument("datasets", nargs="+", help="dataset folders")
    p_show.add_argument("--out", required=True, help="folder for contact_sheet.png, histograms.png, augmentation.png")
    for sp in (p_ls, p_ex):
        sp.add_argument("--prefix", default=os.environ.get("RRP_PREFIX", "rrp"), help="Redis key prefix")
    args = p.parse_args(argv)
    try:
        if args.cmd == "show":
            from pilot.pictures import show

            print(json.dumps(show(load(args.datasets), args.out)))
        elif args.cmd == "ls":
            client = _client(args.redis)
            for run, eps in run_episodes(client, args.prefix).items():
                print(json.dumps({"run": run, "episodes": len(eps), "frames": sum(e.frames for e in eps),
                                  "tracks": len({e.track for e in eps})}))
            from game.recorder import stream_key

            for session, meta in game_sessions(client, args.prefix).items():
                print(json.dumps({"session": session, "frames": int(client.xlen(stream_key(session, args.prefix))),
                                  "tracks": meta.tracks, "size": meta.size, "format": meta.format}))
        elif args.session:
            print(json.dumps(export_sessions(args.redis, args.session, args.out, prefix=args.prefix,
                                             horizon=args.horizon, delete=args.delete)))
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
