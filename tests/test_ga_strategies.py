"""Strategies (GA, CMA-ES), several tracks at once, perturbed evaluation, and the held-out report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import assert_same_run

from evaluator import EvaluationTask, Perturbation, fitness, fitness_over_tracks
from ga import checkpoint
from ga.baseline import default_max_frames
from ga.run import main
from game import LapResult

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--population", "6", "--max-frames", "150", "--hidden", "4"]
MULTI = ["--track", "circuit,oval", "--generated", "1", "--ray-noise", "0.05", "--latency", "1",
         "--start-offset", "1", "--start-heading", "3"]


def run(out: Path, *extra: str) -> None:
    assert main([*SMALL, "--out", str(out), *extra]) == 0


def lap(finished: bool, time_s: float | None = None, progress: float = 1.0) -> LapResult:
    return LapResult(finished=finished, lap_time_s=time_s, frames=100, progress=progress, collisions=0,
                     distance_m=0.0)


def test_every_track_finished_ranks_above_any_unfinished_then_total_time():
    all_slow = [lap(True, 80.0), lap(True, 90.0)]
    all_fast = [lap(True, 30.0), lap(True, 31.0)]
    one_missing = [lap(True, 20.0), lap(False, progress=0.99)]
    assert fitness_over_tracks(all_fast) > fitness_over_tracks(all_slow) > fitness_over_tracks(one_missing)
    assert fitness_over_tracks([lap(True, 25.0)]) == fitness(lap(True, 25.0))


def test_zero_perturbation_is_the_nominal_lap_and_perturbed_laps_do_not_depend_on_the_batch():
    nominal = EvaluationTask(track="hairpins", max_frames=400)
    pop = np.random.default_rng(4).normal(0.0, 1.0, (10, nominal.controller.genome_length()))
    zero = nominal.model_copy(update={"perturbation": Perturbation(seed=3)})
    assert zero.evaluate_batch(pop) == nominal.evaluate_batch(pop)
    for perturbation in (Perturbation(seed=3, ray_noise=0.05), Perturbation(seed=3, latency_frames=2),
                         Perturbation(seed=3, start_offset_m=1.5, start_heading_deg=5.0)):
        task = nominal.model_copy(update={"perturbation": perturbation})
        whole = task.evaluate_batch(pop)
        assert whole == task.evaluate_batch(pop[:3]) + task.evaluate_batch(pop[3:])
        assert whole == [task(g) for g in pop]
        assert whole != nominal.evaluate_batch(pop), perturbation


@pytest.mark.parametrize("strategy", ["ga", "cma"])
def test_resume_after_k_generations_equals_uninterrupted(tmp_path, strategy):
    """Several tracks (one generated), every perturbation: stopped after 2 of 4 generations and
    resumed with another worker count, the run ends byte for byte where the uninterrupted one does."""
    run(tmp_path / "full", "--strategy", strategy, *MULTI, "--generations", "4", "--workers", "2")
    run(tmp_path / "part", "--strategy", strategy, *MULTI, "--generations", "2", "--workers", "2")
    assert main(["--resume", str(tmp_path / "part"), "--generations", "4", "--workers", "1"]) == 0
    assert_same_run(tmp_path / "full", tmp_path / "part")
    cp = checkpoint.load(tmp_path / "full" / "checkpoint.json")
    assert cp.config.strategy == strategy and (cp.state.strategy is None) == (strategy == "ga")
    assert [t.perturbation.latency_frames for t in cp.config.tasks] == [1, 1, 1]
    assert len({t.perturbation.seed for t in cp.config.tasks}) == 3
    best = json.loads((tmp_path / "full" / "best.json").read_text())
    assert [t["track"] for t in best["tracks"]] == ["circuit", "oval", "random-0"]


def test_cma_run_is_the_same_on_one_or_two_workers_and_differs_by_seed(tmp_path):
    run(tmp_path / "a", "--strategy", "cma", "--generations", "3", "--workers", "1", "--seed", "4")
    run(tmp_path / "b", "--strategy", "cma", "--generations", "3", "--workers", "2", "--seed", "4")
    run(tmp_path / "c", "--strategy", "cma", "--generations", "3", "--workers", "2", "--seed", "5")
    assert_same_run(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a" / "best.json").read_bytes() != (tmp_path / "c" / "best.json").read_bytes()


def test_strategy_cannot_change_on_resume(tmp_path):
    run(tmp_path / "r", "--generations", "1", "--workers", "1")
    proc = subprocess.run([sys.executable, "-m", "ga.run", "--resume", str(tmp_path / "r"), "--strategy", "cma"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--strategy cannot be changed" in proc.stderr


@pytest.mark.parametrize(("args", "words"), [
    (["--strategy", "annealing"], ["annealing", "ga, cma"]),
    (["--track", "circuit,"], ["--track", "empty"]),
    (["--track", "all,oval"], ["'oval' is named twice"]),
    (["--track", "oval,oval"], ["named twice"]),
    (["--track", "random-1000000000..1000000001"], ["--track", "random-1000000000 is held out",
                                                    "random-1000000000..1000000999"]),
    (["--seed", "1000000", "--generated", "1"], ["--track/--generated", "random-1000000000 is held out"]),
    (["--track", "circuit,nowhere"], ["nowhere"]),
    (["--generated", "-1"], ["--generated"]),
    (["--ray-noise", "2"], ["--ray-noise", "less than or equal to 1"]),
    (["--latency", "-1"], ["--latency"]),
    (["--start-offset", "9"], ["--start-offset"]),
    (["--track", "circuit,oval", "--controller", "schedule"], ["schedule", "one track"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0].startswith("--") else None)
def test_bad_arguments_get_one_line_and_status_2(tmp_path, args, words):
    proc = subprocess.run([sys.executable, "-m", "ga.run", *args, "--out", str(tmp_path / "out")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_report_on_held_out_tracks_nominal_and_perturbed(tmp_path):
    out = tmp_path / "r"
    run(out, "--generations", "1", "--workers", "1", "--track", "oval")
    proc = subprocess.run([sys.executable, "-m", "ga.report", str(out), "--tracks",
                           "oval,hairpins,random-1000000000..1000000001", "--workers", "2"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((out / "heldout.json").read_text())
    assert [r["track"] for r in rows] == ["oval", "hairpins", "random-1000000000", "random-1000000001"]
    assert [r["trained"] for r in rows] == [True, False, False, False]
    assert set(rows[0]["laps"]) == {"nominal", "latency 1", "noise 5%", "start +-1m/3deg", "all three"}
    # the nominal column is the genome's own lap, with the frame limit the report derives from the baseline
    best = json.loads((out / "best.json").read_text())
    task = EvaluationTask.model_validate(best["task"]).model_copy(
        update={"max_frames": default_max_frames(LapResult.from_dict(rows[0]["baseline"]))})
    assert rows[0]["laps"]["nominal"] == task(best["genome"]).to_dict()
    assert "| finished |" in proc.stdout and (out / "heldout.png").stat().st_size > 10_000
    bad = subprocess.run([sys.executable, "-m", "ga.report", str(out), "--tracks", "nowhere"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "nowhere" in bad.stderr

