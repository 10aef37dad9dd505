"""The declared evaluation task, controller decoders, metrics and fitness."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError
from support import normal_genomes

from evaluator import ControllerSpec, EvaluationTask, TrackData, fitness, lap_time, smoothness
from game import LapResult, load_track


def genomes(task: EvaluationTask, n: int, seed: int = 0) -> np.ndarray:
    return normal_genomes(task.controller.genome_length(), n, seed)


def test_batch_equals_one_by_one_and_survives_json():
    task = EvaluationTask(track="hairpins", max_frames=600)
    pop = genomes(task, 12)
    batch = task.evaluate_batch(pop)
    assert [task(g) for g in pop] == batch
    again = EvaluationTask.model_validate(json.loads(task.model_dump_json()))
    assert again == task and again.evaluate_batch(pop[3:7]) == batch[3:7]


def test_chunking_does_not_change_results():
    task = EvaluationTask(max_frames=500)
    pop = genomes(task, 20, seed=1)
    whole = task.evaluate_batch(pop)
    pieces = task.evaluate_batch(pop[:7]) + task.evaluate_batch(pop[7:8]) + task.evaluate_batch(pop[8:])
    assert whole == pieces


def test_genome_length_and_values_are_checked():
    task = EvaluationTask()
    good = genomes(task, 1)[0]
    with pytest.raises(ValueError, match=r"genomes\[1\] has 3 genes; mlp 16-8-4 needs 172"):
        task.evaluate_batch([good, [1.0, 2.0, 3.0]])
    bad = good.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match=r"genomes\[0\] contains NaN"):
        task.evaluate_batch([bad])


def test_controller_spec_validation():
    assert ControllerSpec(hidden=()).genome_length() == 17 * 4
    assert ControllerSpec(kind="schedule", segments=30).genome_length() == 60
    with pytest.raises(ValidationError, match="hidden layer sizes"):
        ControllerSpec(hidden=(0,))
    with pytest.raises(ValidationError, match="kind"):
        ControllerSpec(kind="lisp")
    with pytest.raises(ValidationError, match="extra"):
        EvaluationTask(code="import os")


def test_schedule_controller_drives_open_loop():
    spec = ControllerSpec(kind="schedule", segments=20, segment_frames=10)
    task = EvaluationTask(track="oval", max_frames=200, controller=spec)
    full_throttle = np.tile([1.0, 0.0], 20)
    result = task(full_throttle)
    assert result.distance_m > 100 and result.progress > 0.1
    assert task(np.zeros(40)).distance_m == 0.0


def test_path_tracks_are_shipped_inline(tmp_path):
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(load_track("oval").to_json() | {"name": "loop"}))
    task = EvaluationTask(track=str(path), max_frames=300)
    shipped = task.resolved()
    assert isinstance(shipped.track, TrackData) and shipped.track.name == "loop"
    pop = genomes(task, 4)
    assert shipped.evaluate_batch(pop) == task.evaluate_batch(pop)
    assert EvaluationTask(track="oval").resolved().track == "oval"


def test_network_tasks_never_read_paths(tmp_path):
    path = tmp_path / "loop.json"
    path.write_text(json.dumps(load_track("oval").to_json()))
    with pytest.raises(ValueError, match="unknown track"):
        EvaluationTask(track=str(path)).load_track_for_network()


def test_fitness_orders_finished_before_unfinished():
    fast = LapResult(True, 25.0, 625, 1.0, 0, 1000.0)
    slow = LapResult(True, 59.0, 1475, 1.0, 3, 1000.0)
    far = LapResult(False, None, 2000, 0.99, 0, 990.0)
    far_sooner = LapResult(False, None, 1500, 0.99, 0, 990.0)
    near = LapResult(False, None, 100, 0.2, 0, 200.0)
    ranked = sorted([near, far, slow, far_sooner, fast], key=fitness, reverse=True)
    assert ranked == [fast, slow, far_sooner, far, near]
    assert lap_time(far) == float("inf") and lap_time(fast) == 25.0
    assert smoothness(LapResult(True, 10.0, 250, 1.0, 0, 1.0, steering_changes=0)) == 1.0
