"""skrl 2.1.1's JAX PPO on the RallyRoboPilot vector environment: a speed probe, not a product path (docs/rl.md).

Needs a separate environment with ``pip install "skrl[jax]==2.1.1" numba pydantic`` (no torch)::

    PYTHONPATH=. python benchmarks/probe_skrl_jax.py 640     # decisions per car

skrl's Gymnasium wrapper assumes vector environments autoreset; this one's autoreset is disabled, so the
adapter below restarts every car when all are done, and cars already done emit terminal no-ops (which
skrl trains on). Keys become ``MultiDiscrete([2, 2, 2, 2])`` (8 logits). Prints slot-frames/s (every car
every step) and driven car-frames/s (the frames a car actually drove), compiles included.
"""
import os
import sys
import time

import flax.linen as nn
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from skrl.agents.jax.ppo import PPO, PPO_CFG
from skrl.envs.wrappers.jax import wrap_env
from skrl.memories.jax import RandomMemory
from skrl.models.jax import DeterministicMixin, Model, MultiCategoricalMixin
from skrl.trainers.jax import SequentialTrainer

from game.env import OBSERVATION_SCALE, RallyRoboPilotVectorEnv

N = 64
class Adapter(VectorEnv):
    """Fake autoreset (skrl assumes it): all cars restart when all are done; idle cars emit terminal no-ops."""
    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}
    def __init__(self):
        self.env = RallyRoboPilotVectorEnv(N, track="circuit", max_frames=1044)
        self.num_envs = N
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (16,), np.float32)
        self.single_action_space = spaces.MultiDiscrete([2, 2, 2, 2])
        self.observation_space = spaces.Box(-np.inf, np.inf, (N, 16), np.float32)
        self.action_space = spaces.MultiDiscrete(np.full((N, 4), 2))
        self.frames = 0
    def reset(self, *, seed=None, options=None):
        o, i = self.env.reset(seed=seed)
        return (o / OBSERVATION_SCALE).astype(np.float32), {}
    def step(self, a):
        live = ~self.env.race.done
        self.frames += int(live.sum())
        o, r, te, tr, info = self.env.step(np.asarray(a).astype(bool))
        if self.env.race.all_done:
            o, _ = self.env.reset()
        return (o / OBSERVATION_SCALE).astype(np.float32), r.astype(np.float32), te, tr, {}

class Policy(MultiCategoricalMixin, Model):
    def __init__(self, observation_space, action_space, device=None, **kw):
        Model.__init__(self, observation_space=observation_space, action_space=action_space, device=device, **kw)
        MultiCategoricalMixin.__init__(self, unnormalized_log_prob=True)
    @nn.compact
    def __call__(self, inputs, role):
        x = nn.tanh(nn.Dense(8)(inputs["observations"]))
        return nn.Dense(8)(x), {}

class Value(DeterministicMixin, Model):
    def __init__(self, observation_space, action_space, device=None, **kw):
        Model.__init__(self, observation_space=observation_space, action_space=action_space, device=device, **kw)
        DeterministicMixin.__init__(self)
    @nn.compact
    def __call__(self, inputs, role):
        x = nn.tanh(nn.Dense(64)(inputs["observations"]))
        x = nn.tanh(nn.Dense(64)(x))
        return nn.Dense(1)(x), {}

raw = Adapter()
env = wrap_env(raw, wrapper="gymnasium")
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
memory = RandomMemory(memory_size=64, num_envs=N)
models = {"policy": Policy(env.observation_space, env.action_space),
          "value": Value(env.observation_space, env.action_space)}
for m in models.values():
    m.init_state_dict(role="policy" if m is models["policy"] else "value")
cfg = PPO_CFG()
cfg.rollouts = 64
cfg.learning_epochs = 4
cfg.mini_batches = 8
cfg.experiment.write_interval = 0
cfg.experiment.checkpoint_interval = 0
agent = PPO(models=models, memory=memory, cfg=cfg, observation_space=env.observation_space,
            action_space=env.action_space, state_space=None)
trainer = SequentialTrainer(cfg={"timesteps": steps, "headless": True, "disable_progressbar": True}, env=env,
                            agents=agent)
t0 = time.perf_counter()
trainer.train()
wall = time.perf_counter() - t0
print(f"skrl-jax PPO: {steps} steps x {N} cars in {wall:.1f} s: {steps*N/wall:,.0f} slot-frames/s, "
      f"{raw.frames/wall:,.0f} driven car-frames/s, load {os.getloadavg()[0]:.1f}")
