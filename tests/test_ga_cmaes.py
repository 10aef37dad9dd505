"""pycma behind the ask/tell adapter: restarts, budgets, per-generation perturbations, multi-track
fitness, and numerics that do not depend on the BLAS kernel."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluator import ControllerSpec, EvaluationTask, Perturbation
from evaluator.metrics import fitness, fitness_over_tracks
from ga import checkpoint, numerics
from ga.cmaes import CmaRun, default_population
from ga.config import EvolutionConfig, perturbation_seed
from ga.run import main
from game import DEFAULT_TRACK, LapResult

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--population", "6", "--max-frames", "150", "--hidden", "4", "--track", DEFAULT_TRACK, "--workers", "1"]
TASK = EvaluationTask(track=DEFAULT_TRACK, max_frames=80, controller=ControllerSpec(hidden=(3,)))


def lap(finished: bool, time_s: float = 0.0, progress: float = 1.0) -> LapResult:
    frames = round(time_s * 25) if finished else 500
    return LapResult(finished=finished, lap_time_s=time_s if finished else None, frames=frames,
                     progress=progress if not finished else 1.0, collisions=0, distance_m=0.0)


# --- numerics ------------------------------------------------------------------------------------


def test_kernel_independent_dot_and_eigh_agree_with_numpy():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((5, 4))
    assert np.allclose(numerics.dot(a, b), a @ b, rtol=1e-13, atol=1e-13)
    assert np.allclose(numerics.dot(a[0], b), a[0] @ b) and np.allclose(numerics.dot(a, b[:, 0]), a @ b[:, 0])
    assert numerics.dot(a[0], a[0]) == pytest.approx(a[0] @ a[0], rel=1e-14)
    for n in (1, 2, 5, 40):
        x = rng.standard_normal((3 * n, n))
        c = x.T @ x
        w, v = numerics.eigh(c)
        assert np.allclose(w, np.linalg.eigh(c)[0], rtol=1e-10, atol=1e-10)
        assert np.all(np.diff(w) >= 0)
        assert np.allclose((v * w) @ v.T, c, atol=1e-10) and np.allclose(v.T @ v, np.eye(n), atol=1e-12)
    w, v = numerics.eigh(np.eye(4))
    assert np.array_equal(w, np.ones(4)) and np.array_equal(v, np.eye(4))


KERNEL_PROBE = """
import hashlib, numpy as np
from ga import numerics
rng = np.random.default_rng(1)
a = rng.standard_normal((172, 172))
blas = a @ a.T
mine = numerics.dot(a, a.T)
w, v = numerics.eigh(mine / 172)
print(hashlib.sha1(blas.tobytes()).hexdigest(), hashlib.sha1(mine.tobytes() + v.tobytes()).hexdigest())
"""


def _with_kernel(kernel: str, *argv: str) -> subprocess.CompletedProcess:
    """Run python with OpenBLAS forced to ``kernel`` ("": the one OpenBLAS picks for this CPU)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    env.update({"PYTHONPATH": str(ROOT), **({"OPENBLAS_CORETYPE": kernel} if kernel else {})})
    return subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True, timeout=600, check=True)


@pytest.mark.slow
def test_blas_kernels_differ_but_our_numerics_do_not():
    """Two forced OpenBLAS kernels give different BLAS products, and the same bits from ga.numerics."""
    blas, mine = zip(*(_with_kernel(k, "-c", KERNEL_PROBE).stdout.split() for k in ("", "Sandybridge")),
                     strict=True)
    assert blas[0] != blas[1]  # the test means something on this machine
    assert mine[0] == mine[1]


@pytest.mark.slow
def test_a_cma_run_is_the_same_under_two_blas_kernels(tmp_path):
    """Same seed, same run (checkpoint digest, best.json) whichever OpenBLAS kernel numpy picks: the
    machine's own ("") and Sandybridge's (no FMA)."""
    digests = []
    for kernel in ("", "Sandybridge"):
        out = tmp_path / (kernel or "native")
        _with_kernel(kernel, "-m", "ga.run", *SMALL, "--generations", "12", "--seed", "4", "--restarts", "9",
                     "--stall-laps", "30", "--out", str(out))
        digests.append((json.loads((out / "checkpoint.json").read_text())["digest"],
                        hashlib.sha1((out / "best.json").read_bytes()).hexdigest()))
    assert digests[0] == digests[1]


# --- restarts, budget ----------------------------------------------------------------------------


def test_default_population_is_pycmas():
    assert default_population(172) == 19
    assert default_population(TASK.controller.genome_length()) == 4 + int(3 * np.log(TASK.controller.genome_length()))


def test_stall_rule_restarts_with_twice_the_population_and_stops_at_the_limit():
    config = EvolutionConfig(strategy="cma", population=4, tasks=(TASK,), track_label="t", stall_laps=8, restarts=2)
    run = CmaRun(config)
    sizes = []
    for generation in range(60):
        asked = run.ask(generation)
        sizes.append(len(asked))
        # never better than 5: a plateau
        run.tell([5.0 - 0.001 * (generation % 3) - 0.01 * i for i in range(len(asked))])
    assert [r.population for r in run.restarts] == [4, 8, 16]
    assert run.restarts[0].reason == "initial"
    # window: max(10, ceil(8 / lambda)) = 10 generations; the first restart comes after 11 of them
    assert run.restarts[1].generation == 11 and "stall" in run.restarts[1].reason
    assert "in 10 generations (40 laps)" in run.restarts[1].reason
    assert sizes[10:12] == [4, 8] and sizes[-1] == 16  # no third restart: the limit is 2


def test_pycmas_own_termination_also_restarts():
    config = EvolutionConfig(strategy="cma", population=4, tasks=(TASK,), track_label="t", restarts=9)
    run = CmaRun(config)
    for generation in range(2):
        run.tell([5.0] * len(run.ask(generation)))  # perfectly flat fitness
    assert len(run.restarts) == 2 and run.restarts[1].reason == "pycma stop: tolfun"


def test_improving_runs_do_not_restart():
    config = EvolutionConfig(strategy="cma", population=4, tasks=(TASK,), track_label="t", stall_laps=8, restarts=9)
    run = CmaRun(config)
    for generation in range(40):
        run.tell([float(generation) - 0.01 * i for i in range(len(run.ask(generation)))])
    assert len(run.restarts) == 1


def _laps(out: Path) -> tuple[int, int]:
    cp = checkpoint.load(out / "checkpoint.json")
    return sum(e["nevals"] for e in cp.state.logbook), cp.state.strategy.next_population()


def test_budget_stops_before_the_generation_that_would_exceed_it(tmp_path, capsys):
    assert main([*SMALL, "--budget", "50", "--out", str(tmp_path / "r")]) == 0
    laps, upcoming = _laps(tmp_path / "r")
    assert laps == 48 and laps + upcoming > 50
    out = capsys.readouterr().out
    assert "budget 50 laps" in out and "48 laps driven in 8 generations" in out


@pytest.mark.slow
def test_resume_across_restarts_with_a_larger_budget_equals_uninterrupted(tmp_path, capsys):
    restart = ["--restarts", "9", "--stall-laps", "30"]
    assert main([*SMALL, *restart, "--budget", "400", "--out", str(tmp_path / "full")]) == 0
    printed = capsys.readouterr().out
    assert main([*SMALL, *restart, "--budget", "120", "--out", str(tmp_path / "part")]) == 0
    assert main(["--resume", str(tmp_path / "part"), "--budget", "400"]) == 0
    full = checkpoint.load(tmp_path / "full" / "checkpoint.json")
    part = checkpoint.load(tmp_path / "part" / "checkpoint.json")
    assert len(full.state.strategy.restarts) >= 2 and full.state.strategy.restarts[1].population == 12
    assert full.state.strategy.restarts[1].generation > 120 / 6  # the restart came after the interruption
    assert list(full.state.logbook) == list(part.state.logbook)
    assert (tmp_path / "full" / "best.json").read_bytes() == (tmp_path / "part" / "best.json").read_bytes()
    assert "restart 1 at generation" in printed and "stall: best fitness" in printed


# --- perturbations and fitness -------------------------------------------------------------------


def test_perturbations_are_drawn_per_generation_and_track():
    perturbed = TASK.model_copy(update={"perturbation": Perturbation(seed=0, ray_noise=0.05)})
    config = EvolutionConfig(strategy="ga", seed=3, tasks=(perturbed, perturbed.model_copy()), track_label="t")
    g0, g1 = config.generation_tasks(0), config.generation_tasks(1)
    seeds = {t.perturbation.seed for t in (*g0, *g1)}
    assert len(seeds) == 4
    assert g0 == config.generation_tasks(0)
    assert g0[1].perturbation.seed == perturbation_seed(3, 0, 1)
    assert g0[0].perturbation.ray_noise == 0.05
    nominal = EvolutionConfig(strategy="ga", tasks=(TASK,), track_label="t")
    assert nominal.generation_tasks(7) == nominal.tasks


def test_a_perturbed_runs_best_json_names_the_tasks_its_best_was_driven_on(tmp_path, capsys):
    from ga.replay import main as replay

    out = tmp_path / "r"
    assert main([*SMALL, "--generations", "3", "--ray-noise", "0.05", "--out", str(out)]) == 0
    best = json.loads((out / "best.json").read_text())
    cp = checkpoint.load(out / "checkpoint.json")
    generation = cp.state.halloffame[0].generation
    assert best["task"]["perturbation"]["seed"] == perturbation_seed(0, generation, 0)
    assert replay([str(out)]) == 0  # re-drives the stored lap and checks it


def test_multi_track_fitness_ranks_tracks_finished_first_then_relative_speed():
    refs = [20.0, 40.0]
    both_slow = fitness_over_tracks([lap(True, 39.0), lap(True, 79.0)], refs)
    both_fast = fitness_over_tracks([lap(True, 21.0), lap(True, 41.0)], refs)
    one = fitness_over_tracks([lap(True, 20.0), lap(False, progress=0.99)], refs)
    assert both_fast > both_slow > one
    assert one > fitness_over_tracks([lap(False, progress=0.99), lap(False, progress=0.99)], refs)
    # a second on the short track is worth more than a second on the long one
    assert fitness_over_tracks([lap(True, 21.0), lap(True, 42.0)], refs) > fitness_over_tracks(
        [lap(True, 22.0), lap(True, 41.0)], refs)
    # 64 very slow tracks finished still beat 63 fast ones
    many = [lap(True, 1000.0)] * 64
    fewer = [lap(True, 20.0)] * 63 + [lap(False, progress=0.99)]
    assert fitness_over_tracks(many, [20.0] * 64) > fitness_over_tracks(fewer, [20.0] * 64)
    assert fitness_over_tracks([lap(True, 25.0)], [20.0]) == fitness(lap(True, 25.0))
