"""LocalExecutor follows concurrent.futures.Executor and returns what evaluate_batch returns."""

import functools

import pytest
from support import gauss_genomes

from evaluator import ControllerSpec, EvaluationTask
from ga.executors import LocalExecutor, default_chunksize, split
from game import DEFAULT_TRACK

TASK = EvaluationTask(track=DEFAULT_TRACK, max_frames=120, controller=ControllerSpec(kind="mlp"))


def genomes(n: int, seed: int = 1) -> list[list[float]]:
    return gauss_genomes(TASK.controller.genome_length(), n, seed)


@pytest.fixture(scope="module")
def pool():
    with LocalExecutor(workers=2) as executor:
        yield executor


@pytest.fixture(scope="module")
def reference():
    gs = genomes(11)
    return gs, TASK.evaluate_batch(gs)


@pytest.mark.parametrize("chunksize", [None, 1, 3, 50])
def test_map_preserves_order_and_equals_in_process(pool, reference, chunksize):
    gs, expected = reference
    assert list(pool.map(TASK, gs, chunksize=chunksize)) == expected


def test_map_single_worker_runs_in_process(reference):
    gs, expected = reference
    with LocalExecutor(workers=1) as executor:
        assert list(executor.map(TASK, gs, chunksize=4)) == expected
        assert executor.submit(TASK, gs[3]).result() == expected[3]


def test_each_result_equals_a_lone_car(pool, reference):
    gs, expected = reference
    assert [TASK(g) for g in gs[:3]] == expected[:3]


def test_submit_returns_future_of_lap_result(pool, reference):
    gs, expected = reference
    futures = [pool.submit(TASK, g) for g in gs[:4]]
    assert [f.result(timeout=120) for f in futures] == expected[:4]


def test_map_with_timeout_returns_everything(pool, reference):
    gs, expected = reference
    assert list(pool.map(TASK, gs, timeout=600)) == expected


def test_empty_map(pool):
    assert list(pool.map(TASK, [])) == []


@pytest.mark.parametrize("fn", [len, lambda g: g, functools.partial(TASK)], ids=["builtin", "lambda", "partial"])
def test_non_task_function_is_refused_before_any_work(pool, fn):
    with pytest.raises(TypeError, match="EvaluationTask"):
        pool.map(fn, genomes(2))
    with pytest.raises(TypeError, match="EvaluationTask"):
        pool.submit(fn, genomes(1)[0])


def test_bad_arguments():
    with LocalExecutor(workers=1) as executor:
        with pytest.raises(TypeError):
            executor.map(TASK, genomes(2), genomes(2))
        with pytest.raises(ValueError):
            executor.map(TASK, genomes(2), chunksize=0)
    with pytest.raises(ValueError):
        LocalExecutor(workers=0)


def test_shutdown_refuses_new_work():
    executor = LocalExecutor(workers=2)
    assert list(executor.map(TASK, genomes(2))) == TASK.evaluate_batch(genomes(2))
    executor.shutdown()
    with pytest.raises(RuntimeError):
        executor.map(TASK, genomes(2))
    with pytest.raises(RuntimeError):
        executor.submit(TASK, genomes(1)[0])


def test_context_manager_shuts_down():
    with LocalExecutor(workers=2) as executor:
        pass
    with pytest.raises(RuntimeError):
        executor.map(TASK, genomes(1))


def test_default_chunking_gives_each_worker_several_chunks():
    assert default_chunksize(128, 2) == 32  # 4 chunks: 2 per worker
    assert len(split(list(range(126)), default_chunksize(126, 2))) == 4
    assert default_chunksize(3, 2) == 2  # every worker gets work
    assert default_chunksize(126, 16) == 8  # many cores: batches of at least 8 ...
    assert default_chunksize(20, 16) == 2  # ... unless that would leave workers idle
    assert default_chunksize(0, 2) == 1
    assert [list(c) for c in split([1, 2, 3, 4, 5], 2)] == [[1, 2], [3, 4], [5]]
