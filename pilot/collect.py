"""Collect labelled camera frames for the vision pilot into Redis Streams, as fast as the renderer goes.

    python -m pilot.collect --redis redis://localhost:6379/0 --run r0 \\
        --tracks all,random-0..35 --episodes 200 --frames 300 --workers 2
    python -m pilot.collect ... --run r1 --model models/r0 --dagger 0.7      # a DAgger round
    python -m pilot.collect ... --run f0 --experts experts/                  # each track's own specialist

A run is a list of episodes, each a pure function of (run seed, episode index): which track, where the
car starts (the start line, or anywhere on the road at any speed), how much steering noise, and who
drives (the expert with noise, or the current model for DAgger). The expert (the pursuit baseline, or
with ``--expert RUN/best.json`` an evolved controller, or with ``--experts DIR`` each track's own
specialist from ``python -m ga.experts``, see ``pilot.expert``) labels every frame with its steering and
target speed whoever drives, so the data shows how to recover from the mistakes the noise and the model
make. An evolved expert whose look-ahead from a pose fails (crashes, stalls) hands that pose to pursuit,
and every frame records who labelled it (``expert``: ``genome`` or ``pursuit``). The same run gives the
same frames on one process or many, on one pod
or several (``--shard I --shards K``, or a Kubernetes indexed Job's ``JOB_COMPLETION_INDEX``).

Frames come from the game's own renderer (``game.scene.UrsinaRenderer``, offscreen, no HUD) drawn
straight from the simulated pose, not from the 25 FPS game loop. Episodes of one track are driven
``--batch`` at a time as one batched race (the camera vector environment), every car's camera drawn in
one pass; an episode's frames and labels are the same in any batch. Panda3D allows one renderer per
process, so parallelism is processes. Each finished episode is one stream of frame records
(``game.frame_records``; ``{prefix}:frames:{run}-{episode}``, PNG images, lossless so training sees what
driving sees) plus its record in ``{prefix}:sessions`` (``pilot.records.EpisodeRecord``), moved into place
together last, so a listed episode is a complete episode. Redis trouble: an unreachable Redis is retried
with back-off (``--retries``), a full one stops the run with one line (exit 1), and a Redis that would
evict keys is refused before anything is drawn (exit 2).
``python -m pilot.dataset export`` turns a run into a dataset on disk.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from typing import Any

import numpy as np

from game import tracklist

RESTART_SHARE = 0.75  # episodes that start anywhere on the road instead of the start line
MAX_NOISE = 0.6  # steering noise (in steering units, OU process) of the noisiest episodes
SWERVE_RATE = 0.01  # per frame: a sudden full-lock swerve of a few frames


@dataclass(frozen=True)
class Episode:
    """Everything that decides one episode's frames."""

    run: str
    index: int
    track: str
    seed: int
    frames: int
    driver: str  # "expert" (with noise) or "model" (DAgger: the model drives, the expert labels)
    restart: bool
    noise: float
    speed_factor: float  # the noisy expert aims at this share of its own target speed
    delay: int  # frames the model's image is late (DAgger episodes)
    expert: str = "pursuit"  # who labels: "pursuit", or a GA run's best.json (an evolved mlp controller)

    @property
    def session(self) -> str:
        return f"{self.run}-{self.index:05d}"


def plan_run(run: str, tracks: list[str], episodes: int, frames: int, seed: int = 0, dagger: float = 0.0,
             max_delay: int = 2, expert: str = "pursuit", experts: dict[str, str] | None = None) -> list[Episode]:
    """The episodes of a run; episode ``i`` drives on ``tracks[i % len(tracks)]``, labelled by ``expert``, or
    by ``experts[track]`` (a track's specialist, see :func:`specialists`) where there is one."""
    experts = experts or {}
    out = []
    for i in range(episodes):
        rng = np.random.default_rng([seed, i])
        model = bool(rng.random() < dagger)
        out.append(Episode(run=run, index=i, track=tracks[i % len(tracks)], seed=int(rng.integers(2**31)),
                           frames=frames, driver="model" if model else "expert",
                           restart=bool(rng.random() < RESTART_SHARE), noise=float(rng.uniform(0.0, MAX_NOISE)),
                           speed_factor=float(rng.uniform(0.8, 1.1)),
                           delay=int(rng.integers(0, max_delay + 1)) if model else 0,
                           expert=experts.get(tracks[i % len(tracks)], expert)))
    return out


def specialists(folder: str, tracks: list[str]) -> dict[str, str]:
    """Each track's specialist in a ``python -m ga.experts`` folder: ``FOLDER/<track>/best.json`` of a run
    whose best lap finishes (a specialist that cannot lap its own track teaches nothing); the other tracks
    are left to pursuit. ValueError when the folder holds none for these tracks."""
    from pathlib import Path

    from evaluator.best import BestFileError, read_best

    if not Path(folder).is_dir():
        raise ValueError(f"--experts {folder}: no such folder (python -m ga.experts --out {folder} writes one)")
    found = {}
    for name in tracks:
        path = Path(folder) / tracklist.label(name) / "best.json"
        try:
            best = read_best(path)
        except BestFileError:
            continue
        if best.task.controller.kind == "mlp" and best.result is not None and best.result.finished:
            found[name] = str(path)
    if not found:
        raise ValueError(f"--experts {folder}: no finished mlp specialist for any of these tracks")
    return found


class BatchDriver:
    """Who drives a batch of episodes on one track, as a ``game.rollout.Policy`` of the camera vector
    environment: car ``i`` is episode ``i``, driven by the expert with steering noise (an OU process),
    sudden swerves and a speed factor, or by the model (DAgger, its image ``episode.delay`` frames late).
    Either way the expert labels the pose: ``labels`` is the last (steering, target speed) per car, read
    when the frame is recorded. Every car draws from its own episode's ``rng`` and the model sees one car
    at a time, so an episode's keys and labels do not depend on the batch it lands in."""

    def __init__(self, race: Any, expert: Any, episodes: list[Episode], rngs: list[np.random.Generator],
                 model: Any = None) -> None:
        from pilot.runtime import PilotPolicy

        self.race, self.expert, self.episodes, self.rngs = race, expert, episodes, rngs
        self.models = {i: PilotPolicy(model, e.delay) for i, e in enumerate(episodes) if e.driver == "model"}
        self.speed_factor = np.array([e.speed_factor for e in episodes])

    def reset(self) -> None:
        n = len(self.episodes)
        self.noise, self.swerve, self.swerve_left = [0.0] * n, [0] * n, [0.0] * n
        for model in self.models.values():
            model.reset()

    def act(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        from pilot.runtime import keys_from

        st = self.race.state
        self.labels = steering, target = self.expert.label(st.x, st.y, st.heading, st.speed)
        self.sources = self.expert.sources  # who labelled each car's pose (a specialist, or pursuit)
        drive_steer = np.array(steering, dtype=np.float64)
        for i, (e, rng) in enumerate(zip(self.episodes, self.rngs, strict=True)):
            if i in self.models:
                continue
            self.noise[i] += -0.1 * self.noise[i] + e.noise * math.sqrt(0.2) * rng.standard_normal()
            if self.swerve[i] == 0 and rng.random() < SWERVE_RATE * e.noise / MAX_NOISE:
                self.swerve[i], self.swerve_left[i] = int(rng.integers(4, 13)), float(rng.choice([-1.0, 1.0]))
            drive_steer[i] = self.swerve_left[i] if self.swerve[i] else steering[i] + self.noise[i]
            self.swerve[i] = max(0, self.swerve[i] - 1)
        keys = keys_from(drive_steer, target * self.speed_factor, st.speed)
        for i, model in self.models.items():
            keys[i] = model.act({"image": observation["image"][i], "speed": observation["speed"][i]})
        return keys


def drive_batch(renderer: Any, episodes: list[Episode], model: Any = None) -> list[dict[str, np.ndarray]]:
    """Drive episodes of one track (and one frame count and expert) as one batched race, every car's camera
    drawn in one pass; returns each episode's frames and labels (arrays with one row per frame), the same
    whatever batch an episode lands in."""
    from game.camera_env import RallyRoboPilotCameraVectorEnv
    from game.rollout import rollout
    from pilot.expert import make_expert
    from pilot.tracks import track_by_name

    first = episodes[0]
    if any((e.track, e.frames, e.expert) != (first.track, first.frames, first.expert) for e in episodes):
        raise ValueError("a batch drives episodes of one track, frame count and expert")
    track = track_by_name(first.track)
    env = RallyRoboPilotCameraVectorEnv(len(episodes), track=track, renderer=renderer, max_frames=first.frames,
                                        stall_frames=None, continuous=True)
    rngs = [np.random.default_rng(e.seed) for e in episodes]
    poses = [random_pose(track, rng) if e.restart else None for e, rng in zip(episodes, rngs, strict=True)]
    driver = BatchDriver(env.race, make_expert(first.expert, track), episodes, rngs, model)
    names = ("image", "steering", "target_speed", "speed", "keys", "x", "y", "heading", "rays", "contacts", "expert")
    rows: list[dict[str, list]] = [{k: [] for k in names} for _ in episodes]

    def record(observation: dict[str, np.ndarray], keys: np.ndarray) -> None:
        race = env.race
        st, rays, contacts, done = race.state, race.observation.rays, race.lap.collisions, race.done
        steering, target = driver.labels
        for i, row in enumerate(rows):
            if done[i]:  # this car's lap ended on an earlier frame: its episode is over
                continue
            for name, value in (("image", observation["image"][i]), ("steering", steering[i]),
                                ("target_speed", target[i]), ("speed", observation["speed"][i, 0]),
                                ("keys", keys[i]), ("x", st.x[i]), ("y", st.y[i]), ("heading", st.heading[i]),
                                ("rays", rays[i]), ("contacts", contacts[i]), ("expert", driver.sources[i])):
                row[name].append(value)

    rollout(env, driver, record, options={"poses": poses})
    return [{k: np.asarray(v) for k, v in row.items()} for row in rows]


def drive_episode(renderer: Any, episode: Episode, model: Any = None) -> dict[str, np.ndarray]:
    """Drive one episode and return its frames and labels (a batch of one)."""
    return drive_batch(renderer, [episode], model)[0]


def batches(episodes: list[Episode], size: int) -> list[list[Episode]]:
    """Episodes of one track, frame count and expert, ``size`` at most per batch, in track order (a worker
    rarely rebuilds its scene)."""
    groups: dict[tuple[str, int, str], list[Episode]] = {}
    for e in sorted(episodes, key=lambda e: (e.track, e.index)):
        groups.setdefault((e.track, e.frames, e.expert), []).append(e)
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]


def random_pose(track: Any, rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Anywhere on the road, heading roughly along it, at any speed (x, y, heading, speed)."""
    i = int(rng.integers(len(track.centerline)))
    (cx, cy), (tx, ty) = track.centerline[i], track.tangents[i]
    side = rng.uniform(-1.0, 1.0) * (track.width / 2 - 2.0)
    heading = math.atan2(ty, tx) + float(np.clip(rng.normal(0.0, 0.25), -0.6, 0.6))
    return float(cx - ty * side), float(cy + tx * side), heading, float(rng.uniform(0.0, 45.0))


# -- writing to Redis ---------------------------------------------------------------------------------
RETRIES = 6  # with BACKOFF: waits of 0.5, 1, 2, 4, 8, 8 s, so Redis may be away for ~20 s
BACKOFF = {"base": 0.25, "cap": 8.0}


class CollectError(RuntimeError):
    """Collection stopped: one line naming the cause (a plain message, so it crosses the process pool)."""


def partial_key(session: str, prefix: str = "rrp") -> str:
    """Where an episode's frames are written before they are moved into place (outside ``{prefix}:frames:``,
    so nothing lists a half-written episode)."""
    return f"{prefix}:partial:{session}"


def write_episode(client: Any, episode: Episode, frames: dict[str, np.ndarray], prefix: str = "rrp") -> None:
    """One stream entry per frame, then the episode's record (the 'done' mark): a listed episode is complete.

    The frames go to a scratch key; one MULTI/EXEC then renames it into place and writes the 'done' mark,
    so a reader sees the previous complete episode or the new complete one, never part of one. Writing an
    episode again (a retry, a re-run) therefore replaces it whole."""
    import redis

    from game.frame_records import FrameRecord
    from game.recorder import KEYS, encode_image, sessions_key, stream_key
    from pilot.records import EpisodeRecord

    key, scratch = stream_key(episode.session, prefix), partial_key(episode.session, prefix)
    height, width = frames["image"].shape[1:3]
    n = len(frames["image"])
    done = EpisodeRecord(**asdict(episode), session=episode.session, format="png", width=int(width),
                         height=int(height), wall_contacts=int(frames["contacts"][-1]), started=time.time())
    client.delete(scratch)
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(scratch, FrameRecord(
            session=episode.session, frame=i, image=encode_image(frames["image"][i], "png"), format="png",
            width=int(width), height=int(height), track=episode.track, episode=episode.index,
            expert=str(frames["expert"][i]) if "expert" in frames else None,
            controls=dict(zip(KEYS, map(bool, frames["keys"][i]), strict=True)),
            rays=[round(float(r), 3) for r in frames["rays"][i]],
            **{k: float(frames[k][i]) for k in ("steering", "target_speed", "speed", "x", "y", "heading")},
        ).to_fields())
        if len(pipe) >= 100:
            pipe.execute()
    pipe.execute()
    if (written := client.xlen(scratch)) != n:  # Redis restarted in between (and lost part of it, or all)
        raise redis.exceptions.ConnectionError(f"{written} of {n} frames of {episode.session} are in Redis")
    with client.pipeline(transaction=True) as tx:
        tx.rename(scratch, key)
        tx.hset(sessions_key(prefix), episode.session, done.to_json())
        tx.execute()


def write_with_retries(client: Any, episode: Episode, frames: dict[str, np.ndarray], prefix: str,
                       retries: int = RETRIES) -> None:
    """:func:`write_episode`, again from the start while Redis is unreachable, up to ``retries`` times with
    exponential back-off; then (or on any other Redis error) a :class:`CollectError` naming the cause.

    The retry is redis-py's own ``Retry`` with ``ExponentialBackoff``, but around the whole episode rather
    than inside the client: a client-level retry re-sends one pipeline chunk, which may duplicate entries
    the server had already taken; rewriting the episode's scratch key from the start cannot."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    failures = 0

    def note(exc: Exception) -> None:
        nonlocal failures
        failures += 1
        if failures <= retries:
            print(f"pilot.collect: Redis unavailable writing episode {episode.session} ({exc}); "
                  f"retry {failures} of {retries}", file=sys.stderr, flush=True)

    t0 = time.monotonic()
    try:
        Retry(ExponentialBackoff(**BACKOFF), retries).call_with_retry(
            lambda: write_episode(client, episode, frames, prefix), note)
    except redis.exceptions.RedisError as exc:
        with contextlib.suppress(redis.exceptions.RedisError):
            client.delete(partial_key(episode.session, prefix))  # free what a failed write took
        said = str(exc).split("caused error: ", 1)[-1].rstrip(".")  # not the pipelined command with its image
        if isinstance(exc, redis.exceptions.OutOfMemoryError):
            cause = (f"Redis is out of memory ({said}): export and --delete collected runs "
                     "(python -m pilot.dataset export), or give Redis a larger maxmemory")
        elif isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            cause = f"Redis unreachable, gave up after {retries} retries over {time.monotonic() - t0:.0f} s: {said}"
        else:
            cause = f"Redis refused the write: {type(exc).__name__}: {said}"
        raise CollectError(f"episode {episode.session}: {cause}") from None


def eviction_risk(client: Any) -> str | None:
    """Why this Redis might silently drop collected frames (a ``maxmemory`` with an evicting policy), or None.

    ``volatile-*`` policies only evict keys with a TTL, which collection never sets, but another writer may
    (and a policy can be switched at any time); collection asks for the policy that cannot lose data."""
    info = client.info("memory")
    policy, limit = info.get("maxmemory_policy", "noeviction"), int(info.get("maxmemory", 0))
    if limit and policy != "noeviction":
        return (f"Redis would evict collected frames when full (maxmemory {info.get('maxmemory_human', limit)}, "
                f"maxmemory-policy {policy}): set maxmemory-policy noeviction (or maxmemory 0) to collect into it")
    return None


def missing_episodes(client: Any, episodes: list[Episode], prefix: str = "rrp") -> list[str]:
    """The sessions of ``episodes`` not complete in Redis now (no 'done' mark, or a stream of another length)."""
    from game.recorder import sessions_key, stream_key
    from pilot.records import EpisodeRecord

    pipe = client.pipeline(transaction=False)
    for e in episodes:
        pipe.hget(sessions_key(prefix), e.session)
        pipe.xlen(stream_key(e.session, prefix))
    answers = pipe.execute()
    return [e.session for e, raw, n in zip(episodes, answers[::2], answers[1::2], strict=True)
            if raw is None or EpisodeRecord.from_json(raw, e.session).frames != n]


# -- one worker process -------------------------------------------------------------------------------
_worker: dict[str, Any] = {}


def _redis(url: str, timeout: float = 30.0) -> Any:
    """A client that does not retry by itself (:func:`write_with_retries` retries whole episodes)."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=5, retry=Retry(NoBackoff(), 0))


def _collect_batch(episodes: list[Episode], redis_url: str, prefix: str, size: tuple[int, int],
                   model_path: str | None, retries: int = RETRIES) -> dict[str, Any]:
    """Runs in a worker process: one renderer (and model) per process, reused for every batch."""
    from pilot.tracks import track_by_name

    if "renderer" not in _worker:
        from game.scene import UrsinaRenderer

        _worker["renderer"] = UrsinaRenderer(track_by_name(episodes[0].track), headless=True, frame_size=size,
                                             hud=False)
        _worker["redis"] = _redis(redis_url)
        if model_path:
            from pilot.runtime import PilotModel

            _worker["model"] = PilotModel.load(model_path)
    t0 = time.perf_counter()
    driven = drive_batch(_worker["renderer"], episodes, _worker.get("model"))
    t1 = time.perf_counter()
    for episode, frames in zip(episodes, driven, strict=True):
        write_with_retries(_worker["redis"], episode, frames, prefix, retries)
    return {"episodes": len(episodes), "frames": sum(len(f["image"]) for f in driven), "drive_s": t1 - t0,
            "total_s": time.perf_counter() - t0, "pid": os.getpid()}


def collect(episodes: list[Episode], redis_url: str, *, workers: int = 1, prefix: str = "rrp",
            size: tuple[int, int] = (96, 72), model_path: str | None = None, progress: bool = True,
            batch: int = 16, retries: int = RETRIES) -> dict[str, Any]:
    """Drive and record ``episodes`` in ``workers`` processes, episodes of one track ``batch`` at a time as
    one batched race; returns rates for the report.

    Raises :class:`CollectError` when an episode cannot be written (the rest are cancelled) or when, at
    the end, an episode written earlier is no longer complete in Redis."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    done: list[dict[str, Any]] = []
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool, \
            tqdm(total=sum(e.frames for e in episodes), unit="frame", disable=not progress) as bar:
        futures = [pool.submit(_collect_batch, b, redis_url, prefix, size, model_path, retries)
                   for b in batches(episodes, batch)]
        try:
            for future in as_completed(futures):
                done.append(future.result())
                bar.update(done[-1]["frames"])
        except CollectError as exc:
            for f in futures:
                f.cancel()
            written = sum(d["episodes"] for d in done)
            raise CollectError(f"{exc} (batches of {written} of {len(episodes)} episodes written; running the "
                               "same command again rewrites every episode whole)") from None
    wall = time.perf_counter() - t0
    client = _redis(redis_url)
    if missing := missing_episodes(client, episodes, prefix):
        raise CollectError(f"{len(missing)} of {len(episodes)} episodes written are no longer complete in Redis "
                           f"(evicted, deleted, or Redis restarted without persistence), e.g. {missing[0]}")
    client.close()
    frames = sum(d["frames"] for d in done)
    busy = sum(d["total_s"] for d in done)
    return {"episodes": sum(d["episodes"] for d in done), "frames": frames, "wall_s": round(wall, 2),
            "workers": workers, "batch": batch, "frames_per_s": round(frames / wall, 1),
            "frames_per_s_per_process": round(frames / busy, 1) if busy else None}


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, e.g. 96x72, got {text!r}") from None
    if not (16 <= w <= 640 and 16 <= h <= 480):
        raise argparse.ArgumentTypeError(f"size {w}x{h} is outside 16x16..640x480")
    return w, h


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="python -m pilot.collect", description=__doc__.split("\n")[0])
    p.add_argument("--redis", default=env("RRP_REDIS", "redis://localhost:6379/0"), help="Redis URL (env RRP_REDIS)")
    p.add_argument("--run", default=env("RRP_PILOT_RUN", "r0"), help="run name: episodes are streams RUN-00000...")
    p.add_argument("--tracks", default=env("RRP_PILOT_TRACKS", "all,random-0..35"),
                   help="comma list of bundled names, 'all', JSON paths, random-SEED or random-A..B; not the "
                   f"held-out {tracklist.held_out_range()} (env RRP_PILOT_TRACKS)")
    p.add_argument("--episodes", type=int, default=int(env("RRP_PILOT_EPISODES", "200")))
    p.add_argument("--frames", type=int, default=int(env("RRP_PILOT_FRAMES", "300")), help="frames per episode")
    p.add_argument("--workers", type=int, default=int(env("RRP_PILOT_WORKERS", str(os.cpu_count() or 1))),
                   help="local renderer processes")
    p.add_argument("--seed", type=int, default=int(env("RRP_PILOT_SEED", "0")))
    p.add_argument("--batch", type=int, default=int(env("RRP_PILOT_BATCH", "16")),
                   help="episodes of one track driven as one batched race, their cameras drawn in one pass "
                   "(the frames do not depend on it)")
    p.add_argument("--size", type=_size, default=_size(env("RRP_PILOT_SIZE", "96x72")), help="frame WIDTHxHEIGHT")
    p.add_argument("--model", default=env("RRP_PILOT_MODEL") or None,
                   help="a trained model (folder or model.onnx) that drives the DAgger episodes")
    p.add_argument("--dagger", type=float, default=float(env("RRP_PILOT_DAGGER", "0.7")),
                   help="share of episodes the model drives when --model is given")
    p.add_argument("--expert", default=env("RRP_PILOT_EXPERT", "pursuit"),
                   help="who labels the frames: pursuit, or a GA run's best.json (mlp controller)")
    p.add_argument("--experts", default=env("RRP_PILOT_EXPERTS") or None,
                   help="a python -m ga.experts folder: each track labelled by its own specialist (the --expert "
                   "where it has none) (env RRP_PILOT_EXPERTS)")
    p.add_argument("--shard", type=int, default=int(env("RRP_PILOT_SHARD", env("JOB_COMPLETION_INDEX", "0"))),
                   help="this pod's share of the run (env RRP_PILOT_SHARD or JOB_COMPLETION_INDEX)")
    p.add_argument("--shards", type=int, default=int(env("RRP_PILOT_SHARDS", "1")), help="pods sharing the run")
    p.add_argument("--prefix", default=env("RRP_PREFIX", "rrp"), help="Redis key prefix")
    p.add_argument("--retries", type=int, default=int(env("RRP_PILOT_RETRIES", str(RETRIES))),
                   help="times an episode is written again while Redis is unreachable, with back-off")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    try:
        if args.episodes < 1 or args.frames < 1 or args.workers < 1 or args.batch < 1:
            raise ValueError("--episodes, --frames, --workers and --batch must be positive")
        if not 0 <= args.shard < args.shards:
            raise ValueError(f"--shard {args.shard} is not in 0..{args.shards - 1}")
        if not 0.0 <= args.dagger <= 1.0:
            raise ValueError("--dagger is a share between 0 and 1")
        tracks = tracklist.parse(args.tracks, tracklist.Purpose.TRAINING)
        for name in tracks:
            tracklist.load(name)  # a bad name fails here, with the loader's message, not in a worker
        if args.expert != "pursuit":
            from pilot.expert import make_expert

            make_expert(args.expert, tracklist.load(tracks[0]))
        experts = specialists(args.experts, tracks) if args.experts else {}
        if args.model:
            from pilot.runtime import PilotModel

            if PilotModel.load(args.model).input_size != args.size:
                raise ValueError(f"--model {args.model} takes another image size than --size {args.size}")
        episodes = plan_run(args.run, tracks, args.episodes, args.frames, args.seed,
                            args.dagger if args.model else 0.0, expert=args.expert, experts=experts)
        episodes = [e for e in episodes if e.index % args.shards == args.shard]
        if args.retries < 0:
            raise ValueError("--retries must be at least 0")
        client = _redis(args.redis, timeout=5)
        if risk := eviction_risk(client):
            raise ValueError(risk)
        client.close()
    except Exception as exc:  # noqa: BLE001 - CLI: one clear line
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        report = collect(episodes, args.redis, workers=args.workers, prefix=args.prefix, size=args.size,
                         model_path=args.model, progress=not args.quiet, batch=args.batch, retries=args.retries)
    except CollectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"run": args.run, "shard": args.shard, "shards": args.shards, **report}))
    return 0


if __name__ == "__main__":
    from game.__main__ import machine_stdout

    sys.stdout = machine_stdout()  # the JSON summary alone: Ursina's banners (workers' too) go to stderr
    sys.exit(main())
