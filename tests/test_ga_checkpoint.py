"""Checkpoints round-trip exactly, are written atomically and refuse what is not theirs."""

import json
import random

import numpy as np
import pytest

from evaluator import ControllerSpec, EvaluationTask
from ga import checkpoint, cmaes
from ga.checkpoint import CheckpointError
from ga.config import EvolutionConfig
from ga.evolve import initial_generation, next_generation
from ga.executors import LocalExecutor
from ga.toolbox import make_statistics, make_toolbox
from game import DEFAULT_TRACK
from servicekit import atomic

CONFIG = EvolutionConfig(
    seed=5, strategy="ga", population=6, track_label=DEFAULT_TRACK, hof_size=3,
    tasks=(EvaluationTask(track=DEFAULT_TRACK, max_frames=80, controller=ControllerSpec(hidden=(3,))),
           EvaluationTask(track="oval", max_frames=60, controller=ControllerSpec(hidden=(3,)))),
)
CMA_CONFIG = CONFIG.model_copy(update={"strategy": "cma"})


@pytest.fixture(scope="module")
def evolved():
    with LocalExecutor(workers=1) as executor:
        toolbox = make_toolbox(CONFIG, executor)
        stats = make_statistics()
        random.seed(CONFIG.seed)
        state = initial_generation(CONFIG, toolbox, stats)
        next_generation(state, CONFIG, toolbox, stats)
        return state, random.getstate()


@pytest.fixture(scope="module")
def evolved_cma():
    with LocalExecutor(workers=1) as executor:
        toolbox = make_toolbox(CMA_CONFIG, executor)
        stats = make_statistics()
        np.random.seed(CMA_CONFIG.seed)
        state = cmaes.initial_generation(CMA_CONFIG, toolbox, stats)
        cmaes.next_generation(state, CMA_CONFIG, toolbox, stats)
        return state, random.getstate()


def test_round_trip_is_exact(tmp_path, evolved):
    state, rng = evolved
    path = tmp_path / "checkpoint.json"
    checkpoint.save(path, CONFIG, state, rng, [{"gen": 1, "seconds": 0.5}])
    cp = checkpoint.load(path)
    assert cp.config == CONFIG
    assert cp.state.generation == state.generation == 1
    assert [list(i) for i in cp.state.population] == [list(i) for i in state.population]
    assert [i.fitness.values for i in cp.state.population] == [i.fitness.values for i in state.population]
    assert [i.results for i in cp.state.population] == [i.results for i in state.population]
    assert all(len(i.results) == 2 for i in cp.state.population)
    assert [list(i) for i in cp.state.halloffame] == [list(i) for i in state.halloffame]
    assert cp.state.halloffame.keys == state.halloffame.keys
    assert list(cp.state.logbook) == list(state.logbook)
    assert cp.rng_state == rng
    assert cp.wall == [{"gen": 1, "seconds": 0.5}]
    # saving what was loaded gives the same document
    again = tmp_path / "again.json"
    checkpoint.save(again, cp.config, cp.state, cp.rng_state, cp.wall)
    assert again.read_bytes() == path.read_bytes()


def test_cma_strategy_round_trips_and_samples_the_same(tmp_path, evolved_cma):
    """The replayed pycma state is the one the run had: same mean, step, covariance, next samples."""
    state, rng = evolved_cma
    path = tmp_path / "checkpoint.json"
    checkpoint.save(path, CMA_CONFIG, state, rng, [])
    cp = checkpoint.load(path)
    a, b = cp.state.strategy, state.strategy
    assert a.told == b.told and len(a.told) == 2
    assert a.restarts == b.restarts and a.restarts[0].population == CMA_CONFIG.population
    assert a.es.countiter == b.es.countiter == 2
    assert np.array_equal(a.es.mean, b.es.mean) and a.es.sigma == b.es.sigma
    assert np.array_equal(a.es.sm.C, b.es.sm.C)
    assert [x.tolist() for x in a.ask(2)] == [x.tolist() for x in b.ask(2)]
    # saving what was loaded gives the same document
    again = tmp_path / "again.json"
    checkpoint.save(again, cp.config, cp.state, cp.rng_state, cp.wall)
    assert json.loads(again.read_text())["digest"] == json.loads(path.read_text())["digest"]


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    atomic.write_json(tmp_path / "a.json", {"x": 1})
    atomic.write_json(tmp_path / "a.json", {"x": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}


def test_failed_write_keeps_the_previous_file(tmp_path):
    atomic.write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(ValueError):
        atomic.write_json(tmp_path / "a.json", {"x": float("nan")})  # strict JSON refuses NaN
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def mutate_and_load(tmp_path, evolved, change, config=CONFIG, redigest=False) -> CheckpointError:
    state, rng = evolved
    doc = checkpoint.to_json(config, state, rng, [])
    change(doc)
    if redigest:  # a forged digest: what the checks behind it must catch
        doc["digest"] = checkpoint.content_digest(doc)
    path = tmp_path / "cp.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    return info.value


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d.update(format="something-else"), "not a RallyRoboPilot GA checkpoint"),
    (lambda d: d.update(version=99), "version"),
    (lambda d: d.pop("population"), "population"),
    (lambda d: d["population"].pop(), "population has 5"),
    (lambda d: d["population"][0]["genome"].append(1.0), "genes"),
    (lambda d: d.update(generation=7), "logbook"),
    (lambda d: d["rng_state"].__setitem__(1, [1, 2, 3]), "RNG"),
    (lambda d: d["numpy_rng_state"].__setitem__(1, [1, 2, 3]), "numpy RNG"),
    (lambda d: d["population"][0].update(results=[{"finished": "maybe"}] * 2), "lap result"),
    (lambda d: d["population"][0]["results"].pop(), "2 tracks"),
    (lambda d: d["config"].update(population=1), "config.population"),
    (lambda d: d.update(strategy={"centroid": [0.0]}), "strategy"),
], ids=["format", "version", "missing", "size", "genome", "generation", "rng", "numpy-rng", "result", "tracks",
        "config", "strategy"])
def test_invalid_documents_are_refused_with_a_reason(tmp_path, evolved, change, words):
    assert words in str(mutate_and_load(tmp_path, evolved, change))


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d["strategy"]["told"].pop(), "CMA-ES record has 1 generations"),
    (lambda d: d["strategy"]["told"][0].pop(), "population is 6"),
    (lambda d: d["strategy"]["told"][1].__setitem__(0, 1e6), "differs from the population's fitness"),
    (lambda d: d["strategy"]["told"][0].__setitem__(0, d["strategy"]["told"][0][0] + 1e-9),
     "does not give the stored population"),
    (lambda d: d["strategy"]["restarts"][0].update(population=7), "restarted otherwise"),
    (lambda d: d.update(strategy=None), "strategy state"),
], ids=["record-length", "values", "other-values", "one-ulp-or-so", "restarts", "missing"])
def test_invalid_cma_states_are_refused_with_a_reason(tmp_path, evolved_cma, change, words):
    assert words in str(mutate_and_load(tmp_path, evolved_cma, change, CMA_CONFIG, redigest=True))


@pytest.mark.parametrize("change", [
    lambda d: d["population"][0].update(fitness=d["population"][0]["fitness"] + 1.0),
    lambda d: d["population"][1]["genome"].__setitem__(0, 0.5),
    lambda d: d["hall_of_fame"][0]["genome"].__setitem__(2, -0.25),
    lambda d: d["rng_state"][1].__setitem__(5, d["rng_state"][1][5] ^ 1),
    lambda d: d["config"].update(seed=d["config"]["seed"] + 1),
    lambda d: d["config"]["tasks"][0].update(max_frames=d["config"]["tasks"][0]["max_frames"] + 1),
    lambda d: d["logbook"][-1].update(nevals=0),
], ids=["fitness", "gene", "hall-of-fame", "rng-word", "seed", "max-frames", "logbook"])
def test_a_changed_content_is_refused_by_its_digest(tmp_path, evolved, change):
    assert "digest" in str(mutate_and_load(tmp_path, evolved, change))


def test_wall_timings_are_outside_the_digest(tmp_path, evolved):
    state, rng = evolved
    doc = checkpoint.to_json(CONFIG, state, rng, [{"gen": 0, "seconds": 1.5, "evals_per_s": 4.0}])
    doc["wall"][0]["seconds"] = 2.5  # timings do not steer the run
    (tmp_path / "cp.json").write_text(json.dumps(doc))
    assert checkpoint.load(tmp_path / "cp.json").wall[0]["seconds"] == 2.5


@pytest.mark.parametrize(("text_of", "words"), [
    (lambda d: json.dumps({**d, "population": [{**d["population"][0], "fitness": 12345.5}, *d["population"][1:]]})
     .replace("12345.5", "1e999"), "finite"),
    (lambda d: json.dumps({**d, "hall_of_fame": []}), "hall_of_fame"),
    (lambda d: json.dumps({k: v for k, v in d.items() if k != "digest"}), "digest"),
    (lambda d: json.dumps(d)[:-1] + ', "deep": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    (lambda d: json.dumps({**d, "logbook": [{**d["logbook"][0], "x": [[[[1e999]]]]}, *d["logbook"][1:]]})
     .replace("Infinity", "1e999"), "digest"),
    (lambda d: json.dumps({**d, "wall": [{"gen": "first"}]}), "wall"),
], ids=["infinite-fitness", "empty-hall-of-fame", "no-digest", "deeply-nested", "infinity-in-logbook", "wall"])
def test_hostile_documents_are_one_clear_error(tmp_path, evolved, text_of, words):
    state, rng = evolved
    path = tmp_path / "cp.json"
    path.write_text(text_of(checkpoint.to_json(CONFIG, state, rng, [])))
    with pytest.raises(CheckpointError) as info:
        checkpoint.load(path)
    assert words in str(info.value)
