"""``python -m rl.train``: PPO on the batched Gymnasium environment; the policy is exported as an mlp genome.

    python -m rl.train --track circuit --car-frames 10000000 --seed 0
    python -m ga.report runs/rl-circuit-h8-s0          # the same held-out judge as evolved controllers

One iteration drives ``--cars`` cars on every training track for one whole lap each (the vector
environment's autoreset is disabled: ``reset`` starts every car of a track on the line, a finished car
is a no-op until all are done), so every episode is the lap the judge sees, from the start line, under
the same frame and stall limits. Only the frames a car actually drove are transitions (and count as
car-frames). Then PPO updates the policy, the deterministic policy drives one nominal lap per track
(through ``evaluator.EvaluationTask``, the evaluator's own code; those car-frames count too) and the
best so far is written as ``best.json``.

The run folder holds ``config.json``, ``checkpoint.npz`` + ``checkpoint.json`` (weights, Adam state, RNG
state, counters; after every iteration, no pickle), ``best.json``, ``log.csv`` and TensorBoard scalars
in ``tb/`` (with the ``rl`` extra: ``tensorboard --logdir runs``). ``--resume RUN_DIR`` continues a run;
the same configuration and seed give the same policy, bit for bit.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from evaluator import EvaluationTask, Perturbation, TrackData, fitness, fitness_over_tracks
from evaluator.best import BestRecord
from game import LapResult, tracklist
from game import physics as P
from game.env import OBSERVATION_SCALE, RallyRoboPilotVectorEnv
from game.perturbation import perturbed
from game.pursuit import pursuit_lap
from game.rollout import rollout
from rl import export
from rl.ppo import Agent, PPOConfig, gae
from rl.reward import RewardWeights, frame_reward

PROG = "rl.train"
FRAME_LIMIT_FACTOR = 1.5  # frame limit = 1.5 x the pursuit baseline's lap, as ga.run's default
LOG_FIELDS = ("iteration", "car_frames", "wall_s", "car_frames_per_s", "episodic_return", "finished_share",
              "mean_progress", "mean_lap_s", "eval_fitness", "eval_lap_s", "best_lap_s", "policy_loss", "value_loss",
              "entropy", "approx_kl", "clipfrac", "lr", "collect_s", "update_s")


class TrainConfig(BaseModel):
    """Everything that defines a run (``config.json``); equal configs give equal policies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tracks: list[str] = ["circuit"]
    cars: int = Field(default=64, ge=1, le=4096, description="cars per track per iteration")
    car_frames: int = Field(default=2_000_000, ge=1, description="budget: driven car-frames, evaluation included")
    hidden: tuple[int, ...] = (8,)
    seed: int = 0
    reward: RewardWeights = RewardWeights()
    max_frames: int | None = None  # None: 1.5 x the pursuit lap of each track
    stall_frames: int = 125
    action_repeat: int = Field(default=4, ge=1, le=25, description="frames a sampled key set is held in training")
    ray_noise: float = 0.0
    latency: int = 0
    ppo: dict[str, Any] = {}
    init: str | None = None  # a best.json (or run folder) whose genome starts the actor

    def ppo_config(self) -> PPOConfig:
        cfg = dict(self.ppo)
        if "value_hidden" in cfg:
            cfg["value_hidden"] = tuple(cfg["value_hidden"])
        return PPOConfig(**cfg)

    def perturbation(self) -> Perturbation | None:
        if not self.ray_noise and not self.latency:
            return None
        return Perturbation(ray_noise=self.ray_noise, latency_frames=self.latency)


class Trainer:
    """Environments, agent, counters; ``iteration()`` = one lap for every car + one PPO update."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.ppo = config.ppo_config()
        self.rng = np.random.default_rng(config.seed)
        self.spec = export.controller_spec(config.hidden)
        self.labels = [tracklist.label(name) for name in config.tracks]
        self.tasks: list[EvaluationTask] = []
        self.envs = []
        for name in config.tracks:
            track = tracklist.load(name)
            limit = config.max_frames or math.ceil(FRAME_LIMIT_FACTOR * pursuit_lap(track).frames)
            ref = TrackData.from_track(track) if tracklist.generated_seed(name) is not None else name
            self.tasks.append(EvaluationTask(track=ref, max_frames=limit, stall_frames=config.stall_frames,
                                             controller=self.spec))
            env = RallyRoboPilotVectorEnv(config.cars, track=track, max_frames=limit, stall_frames=config.stall_frames)
            self.envs.append(perturbed(env, config.perturbation()))
        self.agent = Agent(P.N_RAYS + 1, config.hidden, 4, self.ppo, self.rng)
        if config.init:
            from evaluator.best import load_best

            task, genes, _ = load_best(config.init)
            if task.controller.kind != "mlp" or task.controller.hidden != self.spec.hidden:
                raise ValueError(f"--init {config.init} holds a {task.controller.describe()} controller; this run's "
                                 f"actor is {self.spec.describe()} (give the same --hidden)")
            self.agent.actor = export.layers(self.spec, genes)
        self.iteration_index = 0
        self.car_frames = 0
        self.best: dict | None = None  # {"record": best.json's document, "iteration", "car_frames"}

    # --- one iteration ------------------------------------------------------------------------------
    def collect(self) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        """One lap for every car of every track with the stochastic policy; transitions of driven frames."""
        cfg = self.config
        n_env = len(self.envs)
        seed = int(self.rng.integers(2**62))
        obs = [env.reset(seed=seed + k)[0] for k, env in enumerate(self.envs)]
        races = [env.unwrapped.race for env in self.envs]
        contacts = [np.zeros(cfg.cars) for _ in range(n_env)]
        live = np.ones(n_env * cfg.cars, dtype=bool)
        rows: dict[str, list[np.ndarray]] = {k: [] for k in ("obs", "keys", "logp", "value", "reward", "live", "last")}
        laps: list[LapResult] = []
        returns = np.zeros(n_env * cfg.cars)
        driven = 0
        while live.any():
            x = np.concatenate(obs) / OBSERVATION_SCALE
            keys, logp, value = self.agent.sample(x, self.rng)
            reward = np.zeros(n_env * cfg.cars)
            done = np.zeros(n_env * cfg.cars, dtype=bool)
            # The keys are held for ``action_repeat`` frames (one decision, one transition).
            for _ in range(cfg.action_repeat):
                still = live & ~done
                if not still.any():
                    break
                driven += int(still.sum())
                for k, env in enumerate(self.envs):
                    part = slice(k * cfg.cars, (k + 1) * cfg.cars)
                    if not still[part].any():
                        continue
                    o, progress, terminated, truncated, info = env.step(keys[part])
                    obs[k] = o
                    table = races[k].table
                    new_contacts = table[:, P.COLLISIONS] - contacts[k]
                    contacts[k] = table[:, P.COLLISIONS].copy()
                    ended = {int(i): info["lap"][i] for i in np.flatnonzero(info.get("_lap", np.zeros(0, bool)))}
                    laps += ended.values()
                    car_live = still[part]
                    finished_now = terminated & car_live
                    reward[part] += frame_reward(cfg.reward, progress, car_live, new_contacts, finished_now, ended)
                    done[part] |= (terminated | truncated) & car_live
            rows["obs"].append(x)
            rows["keys"].append(keys)
            rows["logp"].append(logp)
            rows["value"].append(value)
            rows["reward"].append(reward)
            rows["live"].append(live.copy())
            rows["last"].append(live & done)
            returns += reward
            live = live & ~done
        arr = {k: np.stack(v) for k, v in rows.items()}
        adv, ret = gae(arr["reward"], arr["value"], arr["live"], arr["last"], self.ppo.gamma ** cfg.action_repeat,
                       self.ppo.gae_lambda)
        mask = arr["live"]
        batch = {"obs": arr["obs"][mask], "keys": arr["keys"][mask].astype(np.float64), "logp": arr["logp"][mask],
                 "advantages": adv[mask], "returns": ret[mask]}
        finished = [lap for lap in laps if lap.finished]
        stats = {"episodic_return": float(returns.mean()),
                 "finished_share": len(finished) / len(laps),
                 "mean_progress": float(np.mean([lap.progress for lap in laps])),
                 "mean_lap_s": float(np.mean([lap.lap_time_s for lap in finished])) if finished else math.nan,
                 "driven": driven}
        return batch, stats

    def evaluate(self) -> tuple[list[LapResult], int]:
        """The deterministic policy's nominal lap on every track, through the evaluator's task (the judge's
        code); also the car-frames it drove."""
        genes = export.genome(self.agent.actor)
        results, frames = [], 0
        for task in self.tasks:
            env = task.environment(1)
            from evaluator import make_controller

            results += rollout(env, make_controller(self.spec, task.genome_array([genes])))
            frames += env.unwrapped.race.frame
        return results, frames

    def iteration(self) -> dict[str, float]:
        lr = self.ppo.learning_rate
        if self.ppo.anneal_lr:
            lr *= max(0.0, 1.0 - self.car_frames / self.config.car_frames)
        t0 = time.perf_counter()
        batch, stats = self.collect()
        t1 = time.perf_counter()
        losses = self.agent.update(batch, self.rng, lr)
        t2 = time.perf_counter()
        results, eval_frames = self.evaluate()
        self.car_frames += stats.pop("driven") + eval_frames
        self.iteration_index += 1
        score = fitness_over_tracks(results)
        if self.best is None or score > self.best["record"]["fitness"]:
            record = export.best_record(export.genome(self.agent.actor), self.tasks, self.labels, results)
            self.best = {"record": record.to_doc(), "iteration": self.iteration_index, "car_frames": self.car_frames}
        first = results[0]
        best_first = LapResult.from_dict(self.best["record"]["result"])
        return {**stats, **losses, "lr": lr, "eval_fitness": score, "collect_s": t1 - t0, "update_s": t2 - t1,
                "eval_lap_s": first.lap_time_s if first.finished else math.nan,
                "best_lap_s": best_first.lap_time_s if best_first.finished else math.nan,
                "eval_progress": first.progress, "eval_single_fitness": fitness(first)}

    # --- checkpoints --------------------------------------------------------------------------------
    def save(self, run_dir: Path) -> None:
        arrays = {}
        for name, layers in (("actor", self.agent.actor), ("critic", self.agent.critic)):
            for i, (w, b) in enumerate(layers):
                arrays[f"{name}_w{i}"], arrays[f"{name}_b{i}"] = w, b
        for i, (m, v) in enumerate(zip(self.agent.adam.m, self.agent.adam.v, strict=True)):
            arrays[f"adam_m{i}"], arrays[f"adam_v{i}"] = m, v
        tmp = run_dir / "checkpoint.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, run_dir / "checkpoint.npz")
        state = {"iteration": self.iteration_index, "car_frames": self.car_frames, "adam_t": self.agent.adam.t,
                 "rng": self.rng.bit_generator.state, "best": self.best}
        _write_json(run_dir / "checkpoint.json", state)
        if self.best is not None:
            BestRecord.model_validate(self.best["record"]).write(run_dir / "best.json")

    def load(self, run_dir: Path) -> None:
        state = json.loads((run_dir / "checkpoint.json").read_text(encoding="utf-8"))
        with np.load(run_dir / "checkpoint.npz", allow_pickle=False) as data:
            for name in ("actor", "critic"):
                layers = getattr(self.agent, name)
                setattr(self.agent, name, [(data[f"{name}_w{i}"].copy(), data[f"{name}_b{i}"].copy())
                                           for i in range(len(layers))])
            n = len(self.agent.params())
            if state["adam_t"]:
                self.agent.adam.m = [data[f"adam_m{i}"].copy() for i in range(n)]
                self.agent.adam.v = [data[f"adam_v{i}"].copy() for i in range(n)]
        self.agent.adam.t = state["adam_t"]
        self.rng.bit_generator.state = state["rng"]
        self.iteration_index = state["iteration"]
        self.car_frames = state["car_frames"]
        self.best = state["best"]


def _write_json(path: Path, doc: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


class Scalars:
    """``log.csv`` always; TensorBoard event files when ``tensorboardX`` (the ``rl`` extra) is installed."""

    def __init__(self, run_dir: Path, fresh: bool) -> None:
        self.path = run_dir / "log.csv"
        if fresh or not self.path.exists():
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(LOG_FIELDS)
        try:
            from tensorboardX import SummaryWriter
        except ModuleNotFoundError:
            self.tb = None
        else:
            self.tb = SummaryWriter(str(run_dir / "tb"))

    def write(self, row: dict[str, float]) -> None:
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(k)) for k in LOG_FIELDS])
        if self.tb is not None:
            step = int(row["car_frames"])
            for tag in ("episodic_return", "finished_share", "mean_progress", "mean_lap_s", "eval_lap_s",
                        "best_lap_s", "eval_fitness", "car_frames_per_s"):
                if row.get(tag) is not None and not math.isnan(row[tag]):
                    self.tb.add_scalar(f"charts/{tag}", row[tag], step)
            for tag in ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "lr"):
                self.tb.add_scalar(f"losses/{tag}", row[tag], step)
            for tag in ("collect_s", "update_s"):
                self.tb.add_scalar(f"time/{tag}", row[tag], step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def train(config: TrainConfig, run_dir: Path, *, resume: bool = False, progress_bar: bool = True,
          max_iterations: int | None = None) -> Trainer:
    """Train until the car-frame budget is spent (or ``max_iterations`` more); the run folder is kept
    up to date after every iteration."""
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(config)
    if resume:
        trainer.load(run_dir)
    else:
        _write_json(run_dir / "config.json", config.model_dump(mode="json"))
    scalars = Scalars(run_dir, fresh=not resume)
    bar = tqdm(total=config.car_frames, initial=min(trainer.car_frames, config.car_frames), unit="car-frame",
               unit_scale=True, disable=not progress_bar, dynamic_ncols=True)
    t0 = time.perf_counter()
    start_frames = trainer.car_frames
    done = 0
    # One BLAS thread: OpenBLAS's threads spinning on shared cores made an update 10x slower here, and
    # one thread keeps the arithmetic the same whatever the core count (as ga.cmaes does).
    limits = threadpool_limits(limits=1, user_api="blas")
    try:
        while trainer.car_frames < config.car_frames and (max_iterations is None or done < max_iterations):
            before = trainer.car_frames
            row = trainer.iteration()
            done += 1
            wall = time.perf_counter() - t0
            row.update(iteration=trainer.iteration_index, car_frames=trainer.car_frames, wall_s=wall,
                       car_frames_per_s=(trainer.car_frames - start_frames) / wall)
            trainer.save(run_dir)
            scalars.write(row)
            bar.update(min(trainer.car_frames, config.car_frames) - min(before, config.car_frames))
            best = row["best_lap_s"]
            bar.set_postfix_str(f"finished {100 * row['finished_share']:.0f}% "
                                f"eval {_lap(row['eval_lap_s'], row['eval_progress'])} "
                                f"best {'-' if math.isnan(best) else f'{best:.2f}s'}")
    finally:
        limits.restore_original_limits()
        bar.close()
        scalars.close()
    return trainer


def _lap(lap_s: float, progress: float) -> str:
    return f"{100 * progress:.0f}%" if math.isnan(lap_s) else f"{lap_s:.2f}s"


# --- command line ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m {PROG}", description=__doc__.splitlines()[0])
    p.add_argument("--track", default="circuit",
                   help=f"training tracks, the track-list syntax (not the held-out {tracklist.held_out_range()})")
    p.add_argument("--cars", type=int, default=64, help="cars per track per iteration (default 64)")
    p.add_argument("--car-frames", type=float, default=2e6, help="budget of driven car-frames (default 2e6)")
    p.add_argument("--hidden", default="8", help="actor hidden layer sizes, the mlp genome's (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reward", default="",
                   help="reward weights, e.g. progress=1,time=0.002,wall=0.05,lap=1,fitness=0 (default progress=1)")
    p.add_argument("--max-frames", type=int, default=None, help="frame limit (default 1.5 x the pursuit lap)")
    p.add_argument("--stall-frames", type=int, default=125)
    p.add_argument("--action-repeat", type=int, default=4,
                   help="frames a sampled key set is held in training (default 4; the judged policy acts every frame)")
    p.add_argument("--ray-noise", type=float, default=0.0, help="train with noisy rays (relative std-dev)")
    p.add_argument("--latency", type=int, default=0, help="train with this many frames of key latency")
    p.add_argument("--ppo", default="", help="PPO overrides, e.g. learning_rate=1e-3,ent_coef=0.01,gamma=0.99")
    p.add_argument("--init", default=None, help="start the actor from this best.json / run folder's genome")
    p.add_argument("--out", default=None, help="run folder (default runs/rl-<tracks>-h<hidden>-s<seed>)")
    p.add_argument("--resume", metavar="RUN_DIR", default=None, help="continue the run in RUN_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _ppo_overrides(spec: str) -> dict[str, Any]:
    fields = PPOConfig.__dataclass_fields__
    out: dict[str, Any] = {}
    for part in filter(None, (s.strip() for s in spec.split(","))):
        name, _, value = part.partition("=")
        if name not in fields:
            raise ValueError(f"unknown PPO setting {name!r} (settings: {', '.join(fields)})")
        kind = type(getattr(PPOConfig(), name))
        if kind is bool:
            out[name] = value.lower() in ("1", "true", "yes")
        elif kind is tuple:
            out[name] = [int(v) for v in value.split(":")]
        else:
            out[name] = kind(value)
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.resume:
            run_dir = Path(args.resume)
            config = TrainConfig.model_validate_json((run_dir / "config.json").read_text(encoding="utf-8"))
            if args.car_frames != 2e6:
                config = config.model_copy(update={"car_frames": int(args.car_frames)})
        else:
            tracks = tracklist.parse(args.track, tracklist.Purpose.TRAINING)
            hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip())
            export.controller_spec(hidden)  # validates the sizes (1..64, at most 3 layers)
            config = TrainConfig(tracks=tracks, cars=args.cars, car_frames=int(args.car_frames), hidden=hidden,
                                 seed=args.seed, reward=RewardWeights.parse(args.reward), max_frames=args.max_frames,
                                 stall_frames=args.stall_frames, action_repeat=args.action_repeat,
                                 ray_noise=args.ray_noise, latency=args.latency,
                                 ppo=_ppo_overrides(args.ppo), init=args.init)
            config.ppo_config()
            label = "+".join(tracklist.label(t) for t in tracks) if len(tracks) <= 3 else f"{len(tracks)}tracks"
            run_dir = Path(args.out or f"runs/rl-{label}-h{'x'.join(map(str, hidden))}-s{args.seed}")
    except (ValueError, OSError, TypeError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    actor = export.controller_spec(config.hidden).describe()
    print(f"{PROG}: PPO, actor {actor}, {len(config.tracks)} track(s) x {config.cars} cars, reward "
          f"{config.reward.describe()}, budget {config.car_frames:,} car-frames -> {run_dir}")
    try:
        trainer = train(config, run_dir, resume=bool(args.resume), progress_bar=not args.no_progress)
    except (ValueError, OSError) as exc:  # e.g. an --init genome of another shape
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: stopped; continue with: python -m {PROG} --resume {run_dir}", file=sys.stderr)
        return 130
    best = trainer.best or {}
    result = LapResult.from_dict(best["record"]["result"]) if best else None
    if result is not None and result.finished:
        print(f"best lap {result.lap_time_s:.2f} s on {trainer.labels[0]} (iteration {best['iteration']}, "
              f"{best['car_frames']:,} car-frames)")
    elif result is not None:
        print(f"no lap finished; best {100 * result.progress:.0f}% of {trainer.labels[0]}")
    print(f"judge it: python -m ga.report {run_dir}   replay: python -m ga.replay {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
