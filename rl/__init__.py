"""Reinforcement learning on the Gymnasium environment: PPO on the batched race (``python -m rl.train``).

The policy has the evolved controllers' shape and exports as an ``mlp`` genome (``rl.export``), so the
GA's judges (``ga.report``, ``ga.replay``, the evaluator fleet) take it unchanged. Layers: ``rl`` imports
``game`` and ``evaluator`` (the controller format, the task, the fitness), never ``ga`` or ``pilot``.
"""
