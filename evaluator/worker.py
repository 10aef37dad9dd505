"""What runs where laps are driven: in an evaluator's worker processes and in the GA's local pool.

One implementation of the evaluation contract's execution side, shared by both:

* :func:`cached_task`: a task arrives as JSON; it is validated once per process, and its track is
  built once per process and track (tasks that differ only in frame limit, controller or
  perturbation share it), so a generation's chunks pay for the track once per worker;
* :func:`evaluate_races`: consecutive batched races of a chunk's genomes (results in order);
* :func:`warm_up`: drive a couple of frames of every controller kind so numba compiles before the
  first timed job;
* :func:`serve`: the loop of an evaluator worker process (jobs from the service over a private pipe).

Over the network (``network=True``) a track name is looked up among the bundled tracks only, never as
a path on this machine.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from evaluator.controllers import CONTROLLER_KINDS, ControllerSpec
from evaluator.task import EvaluationTask
from game import DEFAULT_TRACK, LapResult, Track

TASK_CACHE_SIZE = 64
"""A run drives at most 64 tracks (``ga.tracksets.MAX_TRACKS``), one task each: all of them stay cached,
however many generated tracks a run cycles through every generation. The same bound holds for tracks."""
TASK_CACHE_BYTES = 256 * 1024 * 1024
"""What the cached tracks may hold (``Track.memory_bytes``: their grids, up to 64 MB each); the least
recently used go first, the track in use always stays. With the entry limit alone, 16 of the largest
accepted tracks would keep a gigabyte per worker."""
HEARTBEAT_S = 0.5

_TASKS: OrderedDict[str, tuple[EvaluationTask, str]] = OrderedDict()
"""Validated tasks and the key of their track, by the task's JSON (prefixed ``local:`` for tasks
trusted to name a track file)."""
_TRACKS: OrderedDict[str, Track] = OrderedDict()
"""Built tracks, by the task's track as JSON (a bundled name or the inline data), same prefix."""


def cached_task(task_json: str, *, network: bool) -> tuple[EvaluationTask, Track]:
    """The validated task and its track, each built once per process."""
    prefix = "" if network else "local:"
    key = prefix + task_json
    entry = _TASKS.get(key)
    if entry is None:
        task = EvaluationTask.model_validate_json(task_json)
        track_key = prefix + (task.track if isinstance(task.track, str) else task.track.model_dump_json())
        entry = _TASKS[key] = (task, track_key)
        if len(_TASKS) > TASK_CACHE_SIZE:
            _TASKS.popitem(last=False)
    else:
        _TASKS.move_to_end(key)
    task, track_key = entry
    track = _TRACKS.get(track_key)
    if track is None:
        track = _TRACKS[track_key] = task.load_track_for_network() if network else task.load_track()
        while len(_TRACKS) > 1 and (len(_TRACKS) > TASK_CACHE_SIZE or cached_bytes() > TASK_CACHE_BYTES):
            _TRACKS.popitem(last=False)
    else:
        _TRACKS.move_to_end(track_key)
    return task, track


def cached_bytes() -> int:
    return sum(track.memory_bytes for track in _TRACKS.values())


def evaluate_races(
    task_json: str, genomes: Sequence[Sequence[float]], races: Sequence[int] | None = None, *, network: bool
) -> list[LapResult]:
    """Lap results of ``genomes``, driven as consecutive batched races of ``races`` genomes each
    (default: one race of them all); the same results either way, cars never interact."""
    task, track = cached_task(task_json, network=network)
    results: list[LapResult] = []
    start = 0
    for size in races or (len(genomes),):
        results += task.evaluate_batch(genomes[start : start + size], track=track)
        start += size
    return results


def warm_up() -> None:
    """Drive two frames of every controller kind, so numba compiles now, not in the first timed job."""
    for kind in CONTROLLER_KINDS:
        spec = ControllerSpec(kind=kind)
        task = EvaluationTask(track=DEFAULT_TRACK, max_frames=2, controller=spec)
        evaluate_races(task.model_dump_json(), [[0.0] * spec.genome_length()], network=True)


def _answer(task_json: str | None, genomes: Any, races: Sequence[int]) -> Any:
    if task_json is None:  # the first job of a worker: warm up, say who answered
        warm_up()
        return os.getpid()
    return [r.to_dict() for r in evaluate_races(task_json, genomes, races, network=True)]


def _heartbeat(beat) -> None:
    """Stamp the shared clock twice a second: a worker that stops stamping is frozen (SIGSTOP, a
    stuck native call, swapped out), whatever its pipe says."""
    while True:
        beat.value = time.monotonic()
        time.sleep(HEARTBEAT_S)


def serve(conn, beat=None) -> None:
    """An evaluator worker process: answer ``(job_id, task_json, genomes, races)`` messages until ``None``
    or EOF with ``(job_id, ok, payload)``; ``task_json=None`` asks for the warm-up. ``beat``: a shared
    clock this process stamps from a thread (:class:`evaluator.pool.WorkerPool` watches it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's business
    if beat is not None:
        threading.Thread(target=_heartbeat, args=(beat,), name="heartbeat", daemon=True).start()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the server is gone
            return
        if message is None:
            return
        job_id, task_json, genomes, races = message
        try:
            reply = (job_id, True, _answer(task_json, genomes, races))
        except Exception as exc:  # reported to the request, the worker lives on
            reply = (job_id, False, (type(exc).__name__, str(exc)))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return
