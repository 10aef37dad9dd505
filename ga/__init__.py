"""Evolve RallyRoboPilot controllers with a genetic algorithm (DEAP).

``python -m ga.run`` runs the loop in :mod:`ga.evolve` with the operators of :mod:`ga.toolbox`;
laps are evaluated through an executor that follows ``concurrent.futures.Executor``
(:class:`ga.executors.LocalExecutor` on this machine, ``ga.http_executor.HttpExecutor`` on a
fleet of evaluator services). Runs are checkpointed in JSON (:mod:`ga.checkpoint`) and
reported by :mod:`ga.report`; ``python -m ga.replay`` re-drives a run's best lap.
"""
