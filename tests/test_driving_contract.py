"""One driving contract: the Gymnasium environments, the one roll-out, the perturbation wrapper.

A lap is the same lap wherever it is driven: the evaluator's batched race, the picture of a run's
best lap (``ga.trace``), a lock-step game behind HTTP (``ga.remote``) and a plain Gymnasium loop.
"""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from support import InProcessGame, normal_genomes

from evaluator import ControllerSpec, EvaluationTask, Perturbation, make_controller
from evaluator.worker import evaluate_races
from ga.remote import remote_lap
from ga.trace import drive_recorded
from game import load_track
from game.env import RallyRoboPilotVectorEnv
from game.perturbation import perturbed
from game.pursuit import PursuitPolicy, pursuit_lap
from game.rollout import rollout

PERTURBATION = Perturbation(seed=3, ray_noise=0.05, latency_frames=2, start_offset_m=1.0, start_heading_deg=3.0)


def driving_genomes(task: EvaluationTask, n: int, seed: int) -> list[list[float]]:
    """Small random weights and a throttle bias: networks that drive a real distance and steer by their rays."""
    genomes = 0.5 * normal_genomes(task.controller.genome_length(), n, seed)
    genomes[:, -4], genomes[:, -3] = 1.5, -1.5  # forward on, back off
    return [list(g) for g in genomes]


def gymnasium_lap(task: EvaluationTask, genome: list[float]):
    """The lap as a Gymnasium user drives it: make, wrap, reset, step until terminated or truncated."""
    env = perturbed(gymnasium.make("RallyRoboPilot-v0", track=task.track, max_frames=task.max_frames,
                                   stall_frames=task.stall_frames), task.perturbation)
    controller = make_controller(task.controller, task.genome_array([genome]))
    observation, _ = env.reset()
    while True:
        observation, _, terminated, truncated, info = env.step(controller.act(observation[None])[0])
        if terminated or truncated:
            return info["lap"]


@pytest.mark.slow
def test_a_perturbed_lap_is_the_same_lap_everywhere():
    task = EvaluationTask(track="oval", max_frames=700, stall_frames=100, controller=ControllerSpec(kind="mlp"),
                          perturbation=PERTURBATION)
    genomes = driving_genomes(task, 4, seed=11)
    evaluated = task.evaluate_batch(genomes)
    assert max(r.distance_m for r in evaluated) > 100  # laps long enough for noise and latency to matter
    nominal = task.model_copy(update={"perturbation": None}).evaluate_batch(genomes)
    assert evaluated != nominal  # the perturbation changes these laps, so agreeing below means something
    assert evaluate_races(task.model_dump_json(), genomes, [1, 3], network=True) == evaluated  # a pod's worker
    assert [drive_recorded(task, g)[1] for g in genomes] == evaluated  # the best-lap picture
    assert [gymnasium_lap(task, g) for g in genomes] == evaluated
    game = InProcessGame(load_track("oval"), "lockstep").start_loop()
    try:
        assert [remote_lap(task, g, game.url) for g in genomes] == evaluated
    finally:
        game.close()


def test_the_picture_draws_the_evaluated_lap():
    """The trace's path ends where the lap result says: its length is the lap's distance."""
    task = EvaluationTask(track="oval", max_frames=500, stall_frames=100, perturbation=PERTURBATION)
    genome = driving_genomes(task, 1, seed=5)[0]
    _, result, trace = drive_recorded(task, genome)
    steps = np.hypot(np.diff(trace.x), np.diff(trace.y))
    assert result == task(genome)
    assert steps.sum() == pytest.approx(result.distance_m, rel=1e-9)


def test_both_environments_pass_gymnasiums_checker():
    check_env(gymnasium.make("RallyRoboPilot-v0", track="oval").unwrapped)
    check_env(perturbed(gymnasium.make("RallyRoboPilot-v0", track="oval"), PERTURBATION).unwrapped)


def test_spaces_say_what_a_controller_sees():
    env = gymnasium.make("RallyRoboPilot-v0", track="hairpins")
    assert env.observation_space.shape == (16,) and env.observation_space.dtype == np.float64
    assert env.observation_space.high[:15].tolist() == [100.0] * 15 and env.observation_space.high[15] == 50.0
    assert isinstance(env.action_space, gymnasium.spaces.MultiBinary) and env.action_space.n == 4
    observation, info = env.reset(seed=1)
    assert observation in env.observation_space and info == {}


def test_terminated_on_the_line_truncated_by_the_frame_limit():
    track = load_track("oval")
    baseline = pursuit_lap(track)
    for max_frames, terminated in ((baseline.frames + 5, True), (baseline.frames - 5, False)):
        env = RallyRoboPilotVectorEnv(1, track=track, max_frames=max_frames, stall_frames=250)
        policy = PursuitPolicy(env.race)
        observation, _ = env.reset()
        ended = []
        while not ended:
            observation, reward, term, trunc, info = env.step(policy.act(observation))
            assert reward[0] >= 0.0
            if term[0] or trunc[0]:
                ended = [bool(term[0]), bool(trunc[0]), info["lap"][0]]
        assert ended[:2] == [terminated, not terminated]
        assert ended[2] == (baseline if terminated else env.results()[0])
        assert ended[2].finished is terminated


def test_vector_env_equals_single_cars_bit_for_bit():
    task = EvaluationTask(track="circuit", max_frames=400, stall_frames=100)
    genomes = driving_genomes(task, 48, seed=2)
    envs = gymnasium.make_vec("RallyRoboPilot-v0", num_envs=48, vectorization_mode="vector_entry_point",
                              track="circuit", max_frames=400, stall_frames=100)
    assert isinstance(envs, RallyRoboPilotVectorEnv)
    batch_observations: list[np.ndarray] = []
    batch = rollout(envs, make_controller(task.controller, np.array(genomes)),
                    lambda observation, keys: batch_observations.append(observation[7].copy()))
    for i in (0, 7, 47):
        single = gymnasium.make("RallyRoboPilot-v0", track="circuit", max_frames=400, stall_frames=100)
        controller = make_controller(task.controller, task.genome_array([genomes[i]]))
        observation, _ = single.reset()
        seen = [observation]
        while True:
            observation, _, terminated, truncated, info = single.step(controller.act(observation[None])[0])
            if terminated or truncated:
                break
            seen.append(observation)
        assert info["lap"] == batch[i]
        if i == 7:
            assert np.array_equal(np.array(seen[: len(batch_observations)]), np.array(batch_observations))


def test_schedule_controller_restarts_with_each_rollout():
    task = EvaluationTask(track="oval", max_frames=200, controller=ControllerSpec(kind="schedule", segment_frames=5))
    genome = driving_genomes(task, 1, seed=3)[0]
    controller = make_controller(task.controller, task.genome_array([genome]))
    env = task.environment(1)
    assert rollout(env, controller) == rollout(env, controller) == [task(genome)]


def test_the_readme_example_drives_a_lap_with_gymnasium_alone():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    code = readme.split("<!-- gymnasium-example -->\n```python\n", 1)[1].split("```", 1)[0]
    assert "RallyRoboPilot-v0" in code and "env.step" in code
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # our own README, not input from anywhere else
    assert scope["info"]["lap"].finished and scope["terminated"]
