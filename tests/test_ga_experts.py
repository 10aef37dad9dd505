"""ga.experts: one ga.run specialist per collection track, resumable, with its table against pursuit and the bound."""

from __future__ import annotations

import json

import pytest
from support import assert_same_run, start_evaluators

from ga import experts
from ga import run as ga_run

SMALL = ["--population", "8", "--seed", "3", "--workers", "1"]


def test_held_out_tracks_and_options_it_owns_are_refused(tmp_path, capsys):
    assert experts.main(["--tracks", "oval,random-1000000004", "--out", str(tmp_path)]) == 2
    assert "random-1000000004 is held out" in capsys.readouterr().err
    assert experts.main(["--tracks", "oval", "--out", str(tmp_path), "--track", "circuit"]) == 2
    assert "--track is set by ga.experts" in capsys.readouterr().err
    assert not (tmp_path / "oval").exists()


@pytest.mark.slow
def test_one_run_per_track_then_skipped_then_resumed_to_more_generations(tmp_path, monkeypatch, capsys):
    out = tmp_path / "experts"
    assert experts.main(["--tracks", "oval,random-3", "--out", str(out), "--generations", "1", *SMALL]) == 0
    table = json.loads((out / "experts.json").read_text())
    rows = {r["track"]: r for r in table["experts"]}
    assert list(rows) == ["oval", "random-3"]
    for r in rows.values():
        assert r["status"] == "done" and r["generations"] == 1
        assert (out / r["track"] / "best.json").exists() and r["best_json"].endswith("best.json")
        assert 0 < r["lower_bound_s"] < r["pursuit_lap_s"]
    assert "| oval | done |" in (out / "experts.md").read_text()

    calls: list[list[str]] = []
    real = ga_run.main

    def spy(argv):
        calls.append(argv)
        return real(argv)

    monkeypatch.setattr(ga_run, "main", spy)
    assert experts.main(["--tracks", "oval,random-3", "--out", str(out), "--generations", "1", *SMALL]) == 0
    assert calls == []  # both finished: skipped

    # an interrupted track (a checkpoint, no finished record) is resumed; so is a finished one asked for more
    doc = json.loads((out / "experts.json").read_text())
    doc["experts"][1]["status"] = "interrupted"
    (out / "experts.json").write_text(json.dumps(doc))
    assert experts.main(["--tracks", "oval,random-3", "--out", str(out), "--generations", "2", *SMALL]) == 0
    assert [c[:2] for c in calls] == [["--resume", str(out / "oval")], ["--resume", str(out / "random-3")]]
    # ... and ends where an uninterrupted two-generation run does
    assert ga_run.main(["--track", "random-3", "--controller", "mlp", "--out", str(tmp_path / "straight"),
                        "--generations", "2", *SMALL]) == 0
    assert_same_run(out / "random-3", tmp_path / "straight")
    assert json.loads((out / "experts.json").read_text())["experts"][1]["generations"] == 2


@pytest.mark.slow
def test_experts_on_an_evaluator_fleet_equal_local_ones(tmp_path):
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert experts.main(["--tracks", "random-3", "--out", str(local), "--generations", "1", *SMALL]) == 0
    (ev,) = start_evaluators(1)
    try:
        assert experts.main(["--tracks", "random-3", "--out", str(remote), "--generations", "1",
                             "--population", "8", "--seed", "3", "--evaluators", ev.url]) == 0
    finally:
        ev.stop()
    assert_same_run(local / "random-3", remote / "random-3")
