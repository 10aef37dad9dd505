"""What the learning stack costs per call, for the PPO networks of ``rl.ppo`` (actor 16-8-4, critic 16-64-64-1).

Two numbers per stack, each the best of 15 short rounds (on shared cores the best round is the one
least disturbed by other processes):

* **act**: one policy call for 64 cars (sample keys from the actor's logits, value from the critic): the
  trainer makes one per decision, so this bounds the collection speed beside the simulator;
* **update**: one PPO minibatch step on 2,048 transitions (forward, gradients of the clipped surrogate,
  entropy and value losses, Adam).

Stacks: numpy (``rl.ppo``, always), TensorFlow (``tf.function``, if installed: the ``train`` extra) and
JAX (``jax.jit`` + optax, if installed). Run it in each environment you want to compare::

    python benchmarks/bench_rl_stacks.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_CARS, MINIBATCH = 64, 2048


def best_of(fn, rounds: int = 15, calls: int = 50) -> float:
    fn()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls)
    return min(times)


def numpy_stack() -> tuple[float, float]:
    from threadpoolctl import threadpool_limits

    from rl.ppo import Agent, PPOConfig

    rng = np.random.default_rng(0)
    agent = Agent(16, (8,), 4, PPOConfig(minibatch_size=MINIBATCH, update_epochs=1), rng)
    x = rng.random((N_CARS, 16))
    batch = {"obs": rng.random((MINIBATCH, 16)), "keys": (rng.random((MINIBATCH, 4)) < 0.5).astype(float),
             "logp": np.full(MINIBATCH, -2.77), "advantages": rng.normal(size=MINIBATCH),
             "returns": rng.normal(size=MINIBATCH)}
    with threadpool_limits(1, user_api="blas"):
        return best_of(lambda: agent.sample(x, rng)), best_of(lambda: agent.update(batch, rng, 1e-3), calls=5)


def tf_stack() -> tuple[float, float]:
    import tensorflow as tf

    tf.random.set_seed(0)
    actor = tf.keras.Sequential([tf.keras.Input((16,)), tf.keras.layers.Dense(8, "tanh"), tf.keras.layers.Dense(4)])
    critic = tf.keras.Sequential([tf.keras.Input((16,)), tf.keras.layers.Dense(64, "tanh"),
                                  tf.keras.layers.Dense(64, "tanh"), tf.keras.layers.Dense(1)])
    opt = tf.keras.optimizers.Adam(1e-3)
    x = tf.random.uniform((N_CARS, 16), dtype=tf.float32)

    @tf.function
    def act(x):
        logits = actor(x)
        keys = tf.random.uniform(tf.shape(logits)) < tf.sigmoid(logits)
        return keys, critic(x)

    obs = tf.random.uniform((MINIBATCH, 16))
    keys = tf.cast(tf.random.uniform((MINIBATCH, 4)) < 0.5, tf.float32)
    old = tf.fill((MINIBATCH,), -2.77)
    adv = tf.random.normal((MINIBATCH,))
    ret = tf.random.normal((MINIBATCH,))
    variables = actor.trainable_variables + critic.trainable_variables

    @tf.function
    def update():
        with tf.GradientTape() as tape:
            logits = actor(obs)
            logp = tf.reduce_sum(keys * logits - tf.nn.softplus(logits), axis=1)
            ratio = tf.exp(logp - old)
            pg = -tf.reduce_mean(tf.minimum(ratio * adv, tf.clip_by_value(ratio, 0.8, 1.2) * adv))
            ent = tf.reduce_mean(tf.reduce_sum(tf.nn.softplus(logits) - logits * tf.sigmoid(logits), axis=1))
            v = critic(obs)[:, 0]
            loss = pg - 0.003 * ent + 0.25 * tf.reduce_mean((v - ret) ** 2)
        grads, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), 0.5)
        opt.apply_gradients(zip(grads, variables, strict=True))

    return best_of(lambda: act(x)), best_of(update, calls=5)


def jax_stack() -> tuple[float, float]:
    import jax
    import jax.numpy as jnp
    import optax

    def mlp(sizes, key):
        params = []
        for a, b in zip(sizes, sizes[1:], strict=False):
            key, sub = jax.random.split(key)
            params.append((jax.random.normal(sub, (a, b)) / np.sqrt(a), jnp.zeros(b)))
        return params

    def run(params, x):
        for w, b in params[:-1]:
            x = jnp.tanh(x @ w + b)
        w, b = params[-1]
        return x @ w + b

    key = jax.random.PRNGKey(0)
    params = {"actor": mlp([16, 8, 4], key), "critic": mlp([16, 64, 64, 1], jax.random.PRNGKey(1))}
    opt = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(1e-3))
    state = opt.init(params)

    @jax.jit
    def act(params, x, key):
        logits = run(params["actor"], x)
        return jax.random.uniform(key, logits.shape) < jax.nn.sigmoid(logits), run(params["critic"], x)

    def loss(params, obs, keys, old, adv, ret):
        logits = run(params["actor"], obs)
        logp = jnp.sum(keys * logits - jax.nn.softplus(logits), axis=1)
        ratio = jnp.exp(logp - old)
        pg = -jnp.mean(jnp.minimum(ratio * adv, jnp.clip(ratio, 0.8, 1.2) * adv))
        ent = jnp.mean(jnp.sum(jax.nn.softplus(logits) - logits * jax.nn.sigmoid(logits), axis=1))
        v = run(params["critic"], obs)[:, 0]
        return pg - 0.003 * ent + 0.25 * jnp.mean((v - ret) ** 2)

    @jax.jit
    def update(params, state, obs, keys, old, adv, ret):
        grads = jax.grad(loss)(params, obs, keys, old, adv, ret)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((N_CARS, 16)), dtype=jnp.float32)
    data = [jnp.asarray(a, dtype=jnp.float32) for a in (rng.random((MINIBATCH, 16)), rng.random((MINIBATCH, 4)) < 0.5,
                                                         np.full(MINIBATCH, -2.77), rng.normal(size=MINIBATCH),
                                                         rng.normal(size=MINIBATCH))]

    def one_act():
        jax.block_until_ready(act(params, x, key))

    def one_update():
        jax.block_until_ready(update(params, state, *data))

    return best_of(one_act), best_of(one_update, calls=5)


def main() -> int:
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| stack | act, 64 cars (us) | update, 2,048 transitions (ms) |")
    print("|---|---|---|")
    for name, fn in (("numpy (rl.ppo)", numpy_stack), ("tensorflow tf.function", tf_stack),
                     ("jax jit + optax", jax_stack)):
        try:
            act, update = fn()
        except ModuleNotFoundError as exc:
            print(f"| {name} | not installed ({exc.name}) | |")
            continue
        print(f"| {name} | {1e6 * act:.0f} | {1e3 * update:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
