"""PPO for the four keys, in one readable file (CleanRL's spirit: the whole algorithm is here).

The policy is the evolved controllers' own network: observation / ``OBSERVATION_SCALE`` -> tanh hidden
layers -> four logits, one independent Bernoulli per key (forward, back, left, right). Sampling the
keys explores; the deterministic policy holds a key when its logit is positive, which is exactly
``evaluator.controllers.MLPController`` (keys = outputs > 0), so a trained policy *is* an ``mlp`` genome
(:mod:`rl.export`). The critic is a separate tanh MLP (it is thrown away after training).

Plain numpy in float64 with hand-written backprop: the networks are tiny (16-8-4 has 172 weights),
so a framework's per-call overhead would cost more than the arithmetic (docs/rl.md has the
measurements), and float64 keeps the exported genome bit-identical to the trained policy.
Everything random comes from one ``numpy.random.Generator``: same seed, same policy.

Pieces, in the order of the PPO paper / CleanRL's ``ppo.py``: orthogonal init, GAE(lambda), advantage
normalisation per minibatch, the clipped surrogate, an entropy bonus, a value loss, global gradient
norm clipping, Adam.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Layers = list[tuple[np.ndarray, np.ndarray]]  # (weights (in, out), bias (out,)) per layer


@dataclass(frozen=True)
class PPOConfig:
    """Hyper-parameters (CleanRL's names and, where they fit this task, its defaults)."""

    gamma: float = 0.995  # 25 frames a second: a horizon of ~200 frames = 8 s of driving
    gae_lambda: float = 0.95
    learning_rate: float = 3e-3
    anneal_lr: bool = True
    update_epochs: int = 4
    minibatch_size: int = 4096
    clip_coef: float = 0.2
    ent_coef: float = 0.003
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    value_hidden: tuple[int, ...] = (64, 64)


# --- networks ----------------------------------------------------------------------------------------


def init_mlp(sizes: list[int], rng: np.random.Generator, out_gain: float) -> Layers:
    """Orthogonal weights (gain sqrt(2) inside, ``out_gain`` on the last layer), zero biases."""
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        gain = out_gain if i == len(sizes) - 2 else np.sqrt(2.0)
        q, r = np.linalg.qr(rng.standard_normal((max(a, b), min(a, b))))
        q = q * np.sign(np.diag(r))
        w = q if a >= b else q.T
        layers.append((gain * w[:a, :b].copy(), np.zeros(b)))
    return layers


def forward(layers: Layers, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Tanh hidden layers, linear output; returns the output and every layer's input (for backprop).
    The same arithmetic, in the same order, as ``MLPController.act``."""
    inputs = []
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        inputs.append(x)
        x = x @ w + b
        if i < last:
            x = np.tanh(x)
    return x, inputs


def backward(layers: Layers, inputs: list[np.ndarray], grad_out: np.ndarray) -> Layers:
    """Gradients of every (w, b) given d(loss)/d(output)."""
    grads: Layers = []
    g = grad_out
    for i in range(len(layers) - 1, -1, -1):
        w, _ = layers[i]
        x = inputs[i]
        grads.append((x.T @ g, g.sum(axis=0)))
        if i > 0:
            g = (g @ w.T) * (1.0 - x * x)  # x = tanh(previous pre-activation)
    return grads[::-1]


def softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def log_prob(logits: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """log pi(keys | logits) summed over the four independent keys."""
    return (keys * logits - softplus(logits)).sum(axis=1)


def entropy(logits: np.ndarray) -> np.ndarray:
    return (softplus(logits) - logits * sigmoid(logits)).sum(axis=1)


# --- the agent ---------------------------------------------------------------------------------------


@dataclass
class Adam:
    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-5
    t: int = 0
    m: list[np.ndarray] = field(default_factory=list)
    v: list[np.ndarray] = field(default_factory=list)

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if not self.m:
            self.m = [np.zeros_like(p) for p in params]
            self.v = [np.zeros_like(p) for p in params]
        self.t += 1
        c1 = 1.0 - self.beta1 ** self.t
        c2 = 1.0 - self.beta2 ** self.t
        for p, g, m, v in zip(params, grads, self.m, self.v, strict=True):
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + self.eps)


def flat(layers: Layers) -> list[np.ndarray]:
    return [a for wb in layers for a in wb]


class Agent:
    """Actor (the exportable key network) and critic, with their optimiser."""

    def __init__(self, n_inputs: int, hidden: tuple[int, ...], n_keys: int, config: PPOConfig,
                 rng: np.random.Generator) -> None:
        self.config = config
        self.actor = init_mlp([n_inputs, *hidden, n_keys], rng, out_gain=0.01)
        self.critic = init_mlp([n_inputs, *config.value_hidden, 1], rng, out_gain=1.0)
        self.adam = Adam(config.learning_rate)

    def params(self) -> list[np.ndarray]:
        return flat(self.actor) + flat(self.critic)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return forward(self.actor, x)[0]

    def value(self, x: np.ndarray) -> np.ndarray:
        return forward(self.critic, x)[0][:, 0]

    def sample(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sampled keys (bool), their log-probability and the value of ``x`` (scaled observations)."""
        logits = self.logits(x)
        keys = rng.random(logits.shape) < sigmoid(logits)
        return keys, log_prob(logits, keys), self.value(x)

    def act(self, x: np.ndarray) -> np.ndarray:
        """The deterministic policy: a key is held when its logit is positive."""
        return self.logits(x) > 0.0

    def update(self, batch: dict[str, np.ndarray], rng: np.random.Generator, lr: float) -> dict[str, float]:
        """``update_epochs`` passes of clipped-surrogate minibatch steps over one batch of transitions."""
        cfg = self.config
        self.adam.lr = lr
        n = len(batch["obs"])
        stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "entropy": [], "approx_kl": [],
                                         "clipfrac": []}
        for _ in range(cfg.update_epochs):
            order = rng.permutation(n)
            for start in range(0, n, cfg.minibatch_size):
                idx = order[start : start + cfg.minibatch_size]
                if len(idx) < 2:
                    continue
                x, keys = batch["obs"][idx], batch["keys"][idx]
                adv = batch["advantages"][idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                m = len(idx)

                logits, a_in = forward(self.actor, x)
                new_logp = log_prob(logits, keys)
                log_ratio = new_logp - batch["logp"][idx]
                ratio = np.exp(log_ratio)
                clipped = np.clip(ratio, 1.0 - cfg.clip_coef, 1.0 + cfg.clip_coef)
                unclipped_wins = ratio * adv <= clipped * adv
                policy_loss = -np.minimum(ratio * adv, clipped * adv).mean()
                ent = entropy(logits)
                # d(loss)/d(logits): surrogate through log pi, minus the entropy bonus.
                d_logp = np.where(unclipped_wins, -adv * ratio, 0.0) / m
                p = sigmoid(logits)
                g_logits = d_logp[:, None] * (keys - p) + cfg.ent_coef * logits * p * (1.0 - p) / m
                g_actor = backward(self.actor, a_in, g_logits)

                v, c_in = forward(self.critic, x)
                err = v[:, 0] - batch["returns"][idx]
                value_loss = 0.5 * (err * err).mean()
                g_critic = backward(self.critic, c_in, (cfg.vf_coef * err / m)[:, None])

                grads = flat(g_actor) + flat(g_critic)
                norm = np.sqrt(sum(float((g * g).sum()) for g in grads))
                if norm > cfg.max_grad_norm:
                    grads = [g * (cfg.max_grad_norm / (norm + 1e-6)) for g in grads]
                self.adam.step(self.params(), grads)

                stats["policy_loss"].append(float(policy_loss))
                stats["value_loss"].append(float(value_loss))
                stats["entropy"].append(float(ent.mean()))
                stats["approx_kl"].append(float(((ratio - 1.0) - log_ratio).mean()))
                stats["clipfrac"].append(float((np.abs(ratio - 1.0) > cfg.clip_coef).mean()))
        return {k: float(np.mean(v)) if v else 0.0 for k, v in stats.items()}


def gae(rewards: np.ndarray, values: np.ndarray, live: np.ndarray, last: np.ndarray, gamma: float,
        lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and returns of ``(T, N)`` arrays of complete episodes.

    ``live[t, i]``: car i was still driving at frame t (its transition counts); ``last[t, i]``: frame t
    was its final transition (the lap ended: finished, stalled or out of frames), so nothing is
    bootstrapped past it. Every episode here is complete, so there is no value to bootstrap at the end.
    """
    steps = rewards.shape[0]
    adv = np.zeros_like(rewards)
    running = np.zeros(rewards.shape[1])
    next_value = np.zeros(rewards.shape[1])
    for t in range(steps - 1, -1, -1):
        carry = (~last[t]).astype(np.float64)
        delta = rewards[t] + gamma * next_value * carry - values[t]
        running = delta + gamma * lam * carry * running
        running = np.where(live[t], running, 0.0)
        adv[t] = running
        next_value = np.where(live[t], values[t], 0.0)
    return adv, adv + values
