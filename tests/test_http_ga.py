"""A seeded GA run over two evaluator processes equals the same run on the local executor."""

from __future__ import annotations

import json

import pytest
from support import start_evaluators

from ga.run import main as ga_run

pytestmark = pytest.mark.slow

ARGS = ["--generations", "3", "--population", "24", "--seed", "11", "--track", "oval"]


def _run(out, extra) -> tuple[dict, dict]:
    assert ga_run([*ARGS, "--out", str(out), *extra]) == 0
    checkpoint = json.loads((out / "checkpoint.json").read_text())
    best = json.loads((out / "best.json").read_text())
    return checkpoint, best


def test_seeded_run_over_http_equals_local_run(tmp_path, capsys):
    local_cp, local_best = _run(tmp_path / "local", ["--workers", "2"])
    evaluators = start_evaluators(2)
    try:
        urls = ",".join(ev.url for ev in evaluators)
        http_cp, http_best = _run(tmp_path / "http", ["--evaluators", urls])
    finally:
        for ev in evaluators:
            ev.stop()
    out = capsys.readouterr().out
    assert f"evaluators {urls}" in out
    assert http_cp["logbook"] == local_cp["logbook"]
    assert http_cp["population"] == local_cp["population"]
    assert http_cp["hall_of_fame"] == local_cp["hall_of_fame"]
    assert http_cp["rng_state"] == local_cp["rng_state"]
    assert http_best == local_best
    assert len(local_cp["logbook"]) == 4


def test_evaluators_from_the_environment(tmp_path, monkeypatch, capsys):
    (ev,) = start_evaluators(1)
    try:
        monkeypatch.setenv("RRP_EVALUATORS", f"dns://localhost:{ev.port}")
        out = tmp_path / "env"
        assert ga_run(["--generations", "1", "--population", "8", "--seed", "2", "--out", str(out)]) == 0
    finally:
        ev.stop()
    assert f"evaluators dns://localhost:{ev.port}" in capsys.readouterr().out
    assert len(json.loads((out / "checkpoint.json").read_text())["logbook"]) == 2


def test_cma_run_on_a_generated_track_with_perturbations_over_http_equals_local_run(tmp_path):
    """The new task fields (perturbations, an inline generated track) and the CMA-ES strategy give
    the same run over the fleet as on the local executor."""
    args = ["--generations", "2", "--population", "8", "--seed", "3", "--max-frames", "250", "--strategy", "cma",
            "--track", "oval", "--generated", "1", "--ray-noise", "0.05", "--latency", "1", "--start-offset", "1",
            "--start-heading", "3"]
    assert ga_run([*args, "--out", str(tmp_path / "local"), "--workers", "2"]) == 0
    evaluators = start_evaluators(2)
    try:
        urls = ",".join(ev.url for ev in evaluators)
        assert ga_run([*args, "--out", str(tmp_path / "http"), "--evaluators", urls]) == 0
    finally:
        for ev in evaluators:
            ev.stop()
    local = json.loads((tmp_path / "local" / "checkpoint.json").read_text())
    http = json.loads((tmp_path / "http" / "checkpoint.json").read_text())
    for key in ("logbook", "population", "hall_of_fame", "strategy", "numpy_rng_state"):
        assert http[key] == local[key], key
    assert (tmp_path / "http" / "best.json").read_bytes() == (tmp_path / "local" / "best.json").read_bytes()
    assert [t["perturbation"]["latency_frames"] for t in local["config"]["tasks"]] == [1, 1]
