"""Collecting labelled frames: expert labels, Redis streams, export, determinism across processes.

Real parts: the game's offscreen renderer in spawned worker processes, a real redis-server.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import redis

from game import PursuitDriver, Race, RallyRoboPilotVectorEnv
from pilot.collect import collect, plan_run
from pilot.dataset import export_run, load, run_episodes
from pilot.expert import PursuitExpert
from pilot.runtime import keys_from
from pilot.tracks import track_by_name

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_expert_labels_turn_into_exactly_the_pursuit_drivers_keys():
    """Steering and target speed lose nothing the baseline needs: keys_from(labels) drives the pursuit lap."""
    for name in ("hairpins", "random-5"):
        track = track_by_name(name)
        expert, driver = PursuitExpert(track), PursuitDriver(track)
        race = Race(track, 1, max_frames=3000)
        while not race.all_done:
            st = race.state
            steering, target = expert.label(st.x, st.y, st.heading, st.speed)
            assert -1.0 <= steering[0] <= 1.0 and 0.0 < target[0] <= 50.0
            keys = keys_from(steering, target, st.speed)
            assert (keys == driver.keys(race)).all()
            race.step(keys)
        assert race.results()[0].finished


def test_collected_episodes_are_labelled_replayable_and_the_same_on_one_process_or_two(redis_server, tmp_path):
    episodes = plan_run("t", ["hairpins", "random-2"], episodes=3, frames=40, seed=1)
    assert {e.track for e in episodes} == {"hairpins", "random-2"} and any(e.restart for e in episodes)
    report = collect(episodes, redis_server.url, workers=2, progress=False)
    assert report["frames"] == 120 and report["episodes"] == 3
    summary = export_run(redis_server.url, "t", tmp_path / "two")
    assert summary["frames"] == 120

    frames = load([tmp_path / "two"])
    assert frames.images.shape == (120, 72, 96, 3) and frames.images.dtype == np.uint8
    assert set(frames.track) == {"hairpins", "random-2"}
    for e in episodes:
        data = np.load(tmp_path / "two" / "episodes" / f"{e.index:05d}.npz")
        track = track_by_name(e.track)
        # the labels are the expert's at the recorded pose, whoever drove
        steering, target = PursuitExpert(track).label(data["x"], data["y"], data["heading"], data["speed"])
        np.testing.assert_allclose(data["steering"], steering, atol=1e-6)
        np.testing.assert_allclose(data["target_speed"], target, rtol=1e-6)
        # and the recorded keys are the ones driven: replaying them retraces the recorded poses
        race = Race(track, 1, continuous=True)
        race.place(0, float(data["x"][0]), float(data["y"][0]), float(data["heading"][0]), float(data["speed"][0]))
        for i in range(1, len(data["x"])):
            race.step(data["keys"][i - 1])
            assert abs(race.state.x[0] - data["x"][i]) < 1e-3 and abs(race.state.y[0] - data["y"][i]) < 1e-3
        # the images change as the car moves (the renderer follows the pose, not a stale frame)
        assert (data["image"][0] != data["image"][-1]).mean() > 0.05

    # the same run on one process writes the same frames, bit for bit
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    collect(episodes, redis_server.url, workers=1, progress=False)
    export_run(redis_server.url, "t", tmp_path / "one", delete=True)
    for e in episodes:
        a = np.load(tmp_path / "one" / "episodes" / f"{e.index:05d}.npz")
        b = np.load(tmp_path / "two" / "episodes" / f"{e.index:05d}.npz")
        assert all(np.array_equal(a[k], b[k]) for k in a.files)
    assert run_episodes(client) == {} and client.dbsize() == 0  # --delete freed Redis


def test_stream_entries_follow_the_recorders_layout(redis_server, tmp_path):
    """One finished episode: a stream of PNG frames with keys, speed and labels, listed in the sessions hash."""
    collect(plan_run("lay", ["oval"], episodes=1, frames=5), redis_server.url, workers=1, progress=False)
    client = redis.Redis.from_url(redis_server.url)
    meta = json.loads(client.hget("rrp:sessions", "lay-00000"))
    assert meta["track"] == "oval" and meta["frames"] == 5 and meta["width"] == 96
    entries = client.xrange("rrp:frames:lay-00000")
    assert len(entries) == 5
    fields = entries[0][1]
    assert fields[b"format"] == b"png" and fields[b"image"].startswith(b"\x89PNG")
    assert set(json.loads(fields[b"controls"])) == {"forward", "back", "left", "right"}
    assert {b"steering", b"target_speed", b"speed", b"x", b"y", b"heading", b"rays"} <= set(fields)


def test_cli_refuses_bad_input_with_one_line(redis_server):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for args, message in ((["--tracks", "nowhere"], "unknown track 'nowhere'"),
                          (["--tracks", "oval,random-999999998..1000000001"], "random-1000000000 is held out"),
                          (["--shard", "3", "--shards", "2"], "--shard 3 is not in 0..1"),
                          (["--redis", "redis://127.0.0.1:1/0"], "error: ")):
        redis_url = [] if "--redis" in args else ["--redis", redis_server.url]
        proc = subprocess.run([sys.executable, "-m", "pilot.collect", *redis_url, *args], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_an_evolved_controller_labels_with_its_own_steering_and_the_speed_it_reaches(tmp_path):
    """A hand-written mlp genome: always forward, steer towards the side with the farther wall."""
    from evaluator import ControllerSpec, EvaluationTask, make_controller
    from evaluator.best import BestRecord
    from pilot.expert import GenomeExpert, make_expert

    spec = ControllerSpec(kind="mlp", hidden=(1,))
    w1 = np.zeros((16, 1))
    w1[14, 0], w1[0, 0] = 4.0, -4.0  # hidden = tanh(4 * (leftmost ray - rightmost ray) / 100 m)
    w2 = np.array([[0.0, 0.0, 1.0, -1.0]])
    b2 = np.array([1.0, -1.0, -0.2, -0.2])  # forward always, never back; steer beyond a dead zone
    genome = [*w1.ravel(), 0.0, *w2.ravel(), *b2]
    best = tmp_path / "best.json"
    BestRecord(genome=genome, task=EvaluationTask(track="oval", controller=spec)).write(best)
    track = track_by_name("oval")
    expert = make_expert(str(best), track, specialist=False)  # its raw first key, no fallback
    assert isinstance(expert, GenomeExpert)
    controller = make_controller(spec, np.array([genome]))
    env = RallyRoboPilotVectorEnv(1, track=track, max_frames=None, stall_frames=None, continuous=True)
    observation, _ = env.reset()
    turned = 0
    for _ in range(200):
        st = env.race.state
        steering, target = expert.label(st.x, st.y, st.heading, st.speed)
        keys = controller.act(observation)
        assert steering[0] == float(keys[0, 2]) - float(keys[0, 3])
        flat_out = min(50.0, st.speed[0] + 10 * 25.0 / 25)  # 10 frames of forward at 25 m/s^2
        assert target[0] <= flat_out + 1e-9  # less only where the next 10 frames meet a wall
        if st.speed[0] < 20.0:  # the first second, on the straight
            assert target[0] == pytest.approx(flat_out)
        turned += steering[0] != 0
        observation, *_ = env.step(keys)
    assert turned > 0
    # any poses, several at once: each labelled as if alone (every label drives from its own pose)
    x, y = track.centerline[[10, 80, 150]].T
    heading, speed = np.array([0.1, -0.2, 0.3]), np.array([5.0, 20.0, 35.0])
    together = expert.label(x, y, heading, speed)
    alone = [expert.label(*pose) for pose in zip(x, y, heading, speed, strict=True)]
    for i in range(3):
        assert (together[0][i], together[1][i]) == (alone[i][0][0], alone[i][1][0])
    schedule = tmp_path / "schedule.json"
    BestRecord(genome=[0.0] * 20, task=EvaluationTask(
        track="oval", controller=ControllerSpec(kind="schedule", segments=10))).write(schedule)
    with pytest.raises(ValueError, match="cannot label other poses"):
        make_expert(str(schedule), track)


# -- specialists: a genome expert per track, pursuit where it fails --------------------------------------


def wall_follower(folder: Path, track: str = "oval") -> Path:
    """A hand-written mlp genome that laps oval cleanly: forward, steer towards the farther wall."""
    from support import write_best_json

    from evaluator import ControllerSpec, EvaluationTask

    w1 = np.zeros((16, 1))
    w1[14, 0], w1[0, 0] = 8.0, -8.0
    w2 = np.array([[0.0, 0.0, 1.0, -1.0]])
    b2 = np.array([1.0, -1.0, -0.2, -0.2])
    folder.mkdir(parents=True, exist_ok=True)
    lap = write_best_json(folder, EvaluationTask(track=track, controller=ControllerSpec(kind="mlp", hidden=(1,))),
                          [*w1.ravel(), 0.0, *w2.ravel(), *b2])
    assert lap.finished and lap.collisions == 0
    return folder / "best.json"


def test_a_specialist_labels_its_line_with_smoothed_steering_and_hands_failures_to_pursuit(tmp_path):
    from pilot.expert import SPECIALIST, GenomeExpert, make_expert

    best = wall_follower(tmp_path / "oval")
    track = track_by_name("oval")
    expert = make_expert(str(best), track)
    assert isinstance(expert, GenomeExpert) and expert.fallback is not None
    raw = make_expert(str(best), track, specialist=False)
    # along its own lap it labels every pose itself, steering averaged over 5 frames of its keys
    env = RallyRoboPilotVectorEnv(1, track=track, max_frames=None, stall_frames=None, continuous=True)
    observation, _ = env.reset()
    for _ in range(150):
        st = env.race.state
        steering, target = expert.label(st.x, st.y, st.heading, st.speed)
        assert expert.sources == ["genome"]
        assert steering[0] * SPECIALIST["steer_window"] == pytest.approx(round(steering[0] * 5))
        assert target[0] == raw.label(st.x, st.y, st.heading, st.speed)[1][0]  # the speed 10 frames on
        observation, *_ = env.step(expert.controller.act(observation))
    # facing a wall at speed, or turned back along the road: the specialist's look-ahead fails, pursuit labels
    (cx, cy), (tx, ty) = track.centerline[200], track.tangents[200]
    side = track.width / 2 - 2.0
    poses = [(cx - ty * side, cy + tx * side, math.atan2(ty, tx) + 1.4, 30.0),  # into the left wall
             (cx, cy, math.atan2(ty, tx) + math.pi, 10.0)]  # the wrong way
    for pose in poses:
        steering, target = expert.label(*([v] for v in pose))
        assert expert.sources == ["pursuit"]
        want = PursuitExpert(track).label(*([v] for v in pose))
        assert (steering[0], target[0]) == (want[0][0], want[1][0])


def test_collection_from_a_folder_of_experts_records_who_labelled_each_frame(redis_server, tmp_path):
    """oval has a specialist, hairpins none (pursuit); each frame says who labelled it, through the export."""
    from pilot.collect import specialists

    wall_follower(tmp_path / "experts" / "oval")
    (tmp_path / "experts" / "hairpins").mkdir()  # a folder without a finished run: pursuit labels it
    found = specialists(str(tmp_path / "experts"), ["oval", "hairpins"])
    assert found == {"oval": str(tmp_path / "experts" / "oval" / "best.json")}
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "pilot.collect", "--redis", redis_server.url, "--run", "x",
                           "--tracks", "oval,hairpins", "--episodes", "4", "--frames", "60", "--workers", "1",
                           "--seed", "3", "--experts", str(tmp_path / "experts"), "--quiet"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    client = redis.Redis.from_url(redis_server.url)
    fields = client.xrange("rrp:frames:x-00000", count=1)[0][1]
    assert fields[b"schema_version"] == b"2" and fields[b"expert"] in (b"genome", b"pursuit")
    export_run(redis_server.url, "x", tmp_path / "d")
    frames = load([tmp_path / "d"])
    by_track = {t: set(frames.expert[frames.track == t]) for t in ("oval", "hairpins")}
    assert by_track["hairpins"] == {"pursuit"}
    assert "genome" in by_track["oval"]
    assert frames.sources[0]["labelled_by"]["genome"] == int((frames.expert == "genome").sum())
    manifest = json.loads((tmp_path / "d" / "dataset.json").read_text())
    assert {e["track"]: e["expert"] for e in manifest["episodes"]} == {
        "oval": found["oval"], "hairpins": "pursuit"}
    # the genome labels are the specialist's at the recorded pose
    from pilot.expert import make_expert

    data = np.load(tmp_path / "d" / "episodes" / "00000.npz")
    expert = make_expert(found["oval"], track_by_name("oval"))
    steering, target = expert.label(data["x"][:5], data["y"][:5], data["heading"][:5], data["speed"][:5])
    np.testing.assert_allclose(data["steering"][:5], steering, atol=1e-9)
    assert list(data["expert"][:5]) == expert.sources


def test_experts_folder_without_any_finished_specialist_is_refused(tmp_path):
    from pilot.collect import specialists

    with pytest.raises(ValueError, match="no such folder"):
        specialists(str(tmp_path / "none"), ["oval"])
    (tmp_path / "e").mkdir()
    with pytest.raises(ValueError, match="no finished mlp specialist"):
        specialists(str(tmp_path / "e"), ["oval"])
