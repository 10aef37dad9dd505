"""pilot.promote: both models drive the held-out laps; only a better candidate replaces the serving one, atomically."""

from __future__ import annotations

import json
import os

import pytest
from pilot_models import write_model

from pilot import promote
from pilot.runtime import PilotModel, read_card


def row(track, delay, finished, lap=None, progress=1.0):
    return {"track": track, "delay": delay, "finished": finished, "lap_time_s": lap, "progress": progress,
            "collisions": 0, "ratio": lap / 30.0 if lap else None, "lower_bound_s": 20.0}


def test_the_rule_finished_laps_first_then_geometric_mean_time_then_progress():
    serving = [row("a", 0, True, 30.0), row("b", 0, True, 40.0), row("c", 0, False, progress=0.5)]
    slower_but_finishes_all = [row("a", 0, True, 35.0), row("b", 0, True, 45.0), row("c", 0, True, 50.0)]
    assert promote.decide(slower_but_finishes_all, serving)[0]
    faster_fewer = [row("a", 0, True, 20.0), row("b", 0, False), row("c", 0, False)]
    assert not promote.decide(faster_fewer, serving)[0]
    # equal counts: the geometric mean over the laps both finished decides; a tie keeps the serving model
    assert promote.decide([row("a", 0, True, 29.0), row("b", 0, True, 40.0), row("c", 0, False)], serving)[0]
    assert not promote.decide(serving, serving)[0]
    ok, why = promote.decide([row("a", 0, False, progress=0.4)], [row("a", 0, False, progress=0.3)])
    assert ok and "progress" in why
    assert promote.decide(serving, None) == (True, "nothing is serving")


@pytest.mark.slow
def test_a_degraded_model_is_refused_and_a_better_one_promoted_into_the_served_folder(tmp_path, capsys):
    """Small ONNX pilots (tests/pilot_models.py) on one held-out track, 150 frames: none finishes, so the
    one that gets further wins. bias -1: a target speed of 0, the car never moves (degraded)."""
    serving = tmp_path / "serving"
    args = ["--serving", str(serving), "--tracks", "random-1000000001", "--delays", "0", "--workers", "1",
            "--max-frames", "150"]
    first = write_model(tmp_path / "m1", "m1", bias=0.0)
    assert promote.main([str(first), *args]) == 0
    assert serving.is_symlink() and PilotModel.load(serving).version == "m1"
    assert "promoted: nothing is serving" in capsys.readouterr().out

    degraded = write_model(tmp_path / "m2", "m2", bias=-1.0)
    assert promote.main([str(degraded), *args]) == promote.REFUSED
    out = capsys.readouterr().out
    assert "refused: neither finished a lap" in out
    assert PilotModel.load(serving).version == "m1"  # still serving the first
    card = read_card(degraded)
    decision = card.evaluation["promotion"]
    assert decision["decision"] == "refused"
    assert decision["candidate"]["score"]["mean_progress"] < decision["serving"]["score"]["mean_progress"]
    assert decision["serving"]["version"] == "m1" and decision["candidate"]["rows"][0]["lower_bound_s"] > 0

    better = write_model(tmp_path / "m3", "m3", bias=0.3)  # asks for more speed: gets further in 150 frames
    assert promote.main([str(better), *args, "--json", str(tmp_path / "d.json")]) == 0
    served = PilotModel.load(serving)
    assert served.version == "m3"
    assert served.card.evaluation["promotion"]["decision"] == "promoted"  # the card travelled with the model
    assert json.loads((tmp_path / "d.json").read_text())["serving"]["version"] == "m1"
    releases = sorted(p.name for p in promote.releases_of(serving).iterdir())
    assert releases == ["0001-m1", "0002-m3", "promotions.jsonl"]
    assert os.readlink(serving) == os.path.join("serving.releases", "0002-m3")
    log = [json.loads(x) for x in (promote.releases_of(serving) / "promotions.jsonl").read_text().splitlines()]
    assert [e["decision"] for e in log] == ["promoted", "refused", "promoted"]


def test_a_plain_serving_folder_is_adopted_as_release_zero(tmp_path):
    serving = write_model(tmp_path / "serving", "old")
    release = promote.publish(serving, write_model(tmp_path / "new", "new"), "new")
    assert release.name == "0001-new" and PilotModel.load(serving).version == "new"
    assert PilotModel.load(promote.releases_of(serving) / "0000-old").version == "old"


def test_bad_input_is_one_line(tmp_path, capsys):
    assert promote.main([str(tmp_path / "nothing"), "--serving", str(tmp_path / "s")]) == 2
    assert "pilot.promote: error: no ONNX model" in capsys.readouterr().err
    m = write_model(tmp_path / "m", "m")
    promote.publish(tmp_path / "s", m, "m")
    assert promote.main([str(tmp_path / "s"), "--serving", str(tmp_path / "s")]) == 2
    assert "is the model serving" in capsys.readouterr().err
