"""Records at process boundaries: each round-trips through its one writer and reader, and a record of another
version (none, or another number) is refused with one line naming the file or key and what to do.

Real parts: files on disk, a real redis-server, the real command-line tools.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import redis
from support import REPO, process_env

from evaluator import ControllerSpec, EvaluationTask
from evaluator.best import BestFileError, BestRecord, read_best
from game import LapResult
from game.frame_records import FrameRecord, GameSession, SessionRecord
from game.recorder import encode_image, sessions_key, stream_key
from pilot.card import ModelCard
from pilot.dataset import read_manifest
from pilot.records import DatasetManifest, EpisodeRecord
from pilot.runtime import read_card, write_card
from servicekit.records import RecordError

pytestmark = pytest.mark.slow

TASK = EvaluationTask(track="oval", max_frames=50, controller=ControllerSpec(kind="schedule", segments=2))
LAP = LapResult(finished=False, lap_time_s=None, frames=50, progress=0.1, collisions=0, distance_m=40.0)


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], env=process_env(), cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def assert_one_line(proc: subprocess.CompletedProcess, *parts: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]


def frame(i: int = 0, **extra) -> FrameRecord:
    image = np.full((6, 8, 3), i, np.uint8)
    return FrameRecord(session="r-00000", frame=i, image=encode_image(image, "png"), format="png", width=8, height=6,
                       track="oval", speed=12.5, rays=[1.0] * 15, x=1.0, y=-2.0, heading=0.3,
                       controls={"forward": True, "back": False, "left": i % 2 == 0, "right": False}, **extra)


def episode(index: int = 0, frames: int = 2) -> EpisodeRecord:
    return EpisodeRecord(session=f"r-{index:05d}", run="r", index=index, track="oval", seed=1, frames=frames,
                         driver="expert", restart=False, noise=0.1, speed_factor=1.0, delay=0, expert="pursuit",
                         format="png", width=8, height=6, wall_contacts=0, started=1.0)


# -- best.json ------------------------------------------------------------------------------------------


def test_best_json_round_trips(tmp_path):
    best = BestRecord(genome=[0.5, -1.0, 0.0, 1.0], task=TASK, result=LAP, fitness=-3.0, track="oval")
    best.write(tmp_path / "best.json")
    assert read_best(tmp_path) == best and read_best(tmp_path / "best.json").result == LAP
    with pytest.raises(RecordError, match="genome has 3 genes, the controller needs 4"):
        BestRecord.from_doc({**best.to_doc(), "genome": [0.0] * 3}, "x")


@pytest.mark.parametrize("version, said", [(None, "an older version (no schema_version)"),
                                           (99, "another version (schema_version 99)")])
def test_best_json_of_another_version_is_refused_with_one_line(tmp_path, version, said):
    doc = BestRecord(genome=[0.0] * 4, task=TASK).to_doc()
    doc.pop("schema_version") if version is None else doc.update(schema_version=version)
    (tmp_path / "best.json").write_text(json.dumps(doc))
    with pytest.raises(BestFileError, match="python -m ga.run --resume"):
        read_best(tmp_path)
    assert_one_line(cli("ga.replay", str(tmp_path)), str(tmp_path / "best.json"), said, "--resume RUN_DIR")


# -- the Redis frame record and the sessions hash -------------------------------------------------------


def test_frame_and_session_records_round_trip_through_redis(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    records = [frame(0, t=5.25, episode=3, progress=0.5), frame(1, steering=-0.25, target_speed=20.0)]
    for r in records:
        client.xadd("s", r.to_fields())
    assert [FrameRecord.from_fields(f, "s") for _, f in client.xrange("s")] == records
    raw = client.xrange("s")[1][1]
    assert b"t" not in raw and raw[b"rays"] == json.dumps([1.0] * 15).encode()  # flat, absent when None

    game = GameSession(session="g", track="oval", tracks=["oval"], format="jpeg", every=2, stream="rrp:frames:g",
                       started=2.0)
    client.hset("h", mapping={"g": game.to_json(), "e": episode().to_json()})
    assert GameSession.from_json(client.hget("h", "g"), "h[g]") == game
    assert EpisodeRecord.from_json(client.hget("h", "e"), "h[e]") == episode()
    assert SessionRecord.from_json(client.hget("h", "e"), "h[e]").kind == "episode"  # the base reads either kind


def test_frames_of_an_older_version_are_refused_by_the_exporters_with_one_line(redis_server, tmp_path):
    client = redis.Redis.from_url(redis_server.url)
    old = {k: v for k, v in frame(0).to_fields().items() if k != "schema_version"}
    client.xadd(stream_key("r-00000"), old)
    client.xadd(stream_key("r-00000"), frame(1).to_fields())
    client.hset(sessions_key(), "r-00000", episode().to_json())
    where = f"{stream_key('r-00000')} entry"
    assert_one_line(cli("pilot.dataset", "export", "--redis", redis_server.url, "--run", "r", "--out",
                        str(tmp_path / "d")), where, "frame record written by an older version", "pilot.collect")
    assert_one_line(cli("game.frames", "export", "--redis", redis_server.url, "--session", "r-00000", "--out",
                        str(tmp_path / "f")), where, "frame record written by an older version")
    client.hset(sessions_key(), "r-00001", json.dumps({"run": "r", "index": 1, "frames": 2}))  # no version
    assert_one_line(cli("pilot.dataset", "ls", "--redis", redis_server.url),
                    f"{sessions_key()}[r-00001]", "session record written by an older version")


# -- the dataset manifest -------------------------------------------------------------------------------


def test_dataset_manifest_round_trips_and_an_older_one_stops_training_with_one_line(tmp_path):
    manifest = DatasetManifest(run="r", frames=4, width=8, height=6, tracks=["oval"], episodes=[episode(0), episode(1)])
    manifest.write(tmp_path / "dataset.json")
    assert read_manifest(tmp_path) == manifest
    old = manifest.to_doc()
    del old["schema_version"]
    (tmp_path / "dataset.json").write_text(json.dumps(old))
    assert_one_line(cli("pilot.train", str(tmp_path), "--out", str(tmp_path / "m")),
                    str(tmp_path / "dataset.json"), "dataset manifest written by an older version",
                    "python -m pilot.dataset export")
    assert not (tmp_path / "m").exists()


# -- the model card -------------------------------------------------------------------------------------


def test_model_card_round_trips_and_an_older_one_is_refused_with_one_line(tmp_path):
    from pilot_models import write_model

    folder = write_model(tmp_path / "m", "v1")
    card = read_card(folder).model_copy(update={"evaluation": {"summary": {"laps": 3}}})
    write_card(folder, card)
    assert read_card(folder) == card and read_card(folder).seen_tracks == set()
    (folder / "model.json").write_text(json.dumps({"version": "v1", "input": {"width": 32, "height": 24}}))
    with pytest.raises(RecordError, match="model card written by an older version"):
        read_card(folder)
    assert_one_line(cli("pilot.drive", str(folder), "--track", "oval"), str(folder / "model.json"),
                    "model card written by an older version", "pilot.train")
    assert ModelCard.current_version() == 1
