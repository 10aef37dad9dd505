"""A lap driven through the game's lock-step HTTP API (``ga.remote``) equals the in-process lap, bit for bit."""

from __future__ import annotations

import json

import pytest
from support import InProcessGame, normal_genomes, write_best_json

from evaluator import ControllerSpec, EvaluationTask, TrackData
from ga.remote import main, remote_evaluate, remote_lap
from ga.replay import load_best
from game import generate_track
from game.remote import RemoteGame, RemoteGameError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def game_url():
    game = InProcessGame(generate_track(2), "lockstep").start_loop()
    yield game.url
    game.close()


def _genomes(task: EvaluationTask, n: int, seed: int) -> list[list[float]]:
    return [list(g) for g in normal_genomes(task.controller.genome_length(), n, seed)]


def test_mlp_laps_equal_in_process_bit_for_bit(game_url):
    task = EvaluationTask(track="oval", max_frames=400, stall_frames=100, controller=ControllerSpec(kind="mlp"))
    genomes = _genomes(task, 3, seed=1)
    # one genome with small weights and a throttle bias, so it drives a real distance
    genomes[0] = [0.3 * g for g in genomes[0]]
    genomes[0][-4], genomes[0][-3] = 2.0, -2.0
    remote = remote_evaluate(task, genomes, game_url)
    local = task.evaluate_batch(genomes)
    assert [r.to_dict() for r in remote] == [r.to_dict() for r in local]
    assert [r.to_dict() for r in remote] == [task(g).to_dict() for g in genomes]
    assert remote[0].distance_m > 10


def test_schedule_lap_on_an_inline_track(game_url):
    t = generate_track(9)
    data = TrackData(name=t.name, width=t.width, points=tuple(map(tuple, t.points.tolist())))
    task = EvaluationTask(track=data, max_frames=300, stall_frames=0,
                          controller=ControllerSpec(kind="schedule", segment_frames=25))
    genome = _genomes(task, 1, seed=4)[0]
    genome[0] = 2.0  # throttle in the first segment
    with RemoteGame(game_url) as game:
        assert remote_lap(task, genome, game) == task(genome)
        assert game.state()["track"] == t.name


def test_remote_errors_are_clear(game_url):
    with RemoteGame(game_url) as game:
        with pytest.raises(RemoteGameError, match="unknown track"):
            game.reset(track="atlantis")
        with pytest.raises(RemoteGameError, match="steps"):
            game.advance([True, False, False, False], steps=0)


def test_best_json_replay_against_a_game(game_url, tmp_path, capsys):
    task = EvaluationTask(track="hairpins", max_frames=200, controller=ControllerSpec(kind="mlp"))
    genome = _genomes(task, 1, seed=7)[0]
    result = write_best_json(tmp_path, task, genome)
    best = tmp_path / "best.json"
    t, g, recorded = load_best(best)
    assert t == task and g == genome and recorded == result
    assert main(["--url", game_url, "--best", str(best)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"result": result.to_dict(), "matches_recorded": True}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema_version": 1, "genome": [1.0], "task": task.model_dump(mode="json")}))
    assert main(["--url", game_url, "--best", str(bad)]) == 2
    assert "genes" in capsys.readouterr().err
