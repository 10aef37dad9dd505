"""The HTTP map's parts, each readable on its own.

* :mod:`ga.fleet.scheduler`: the dispatch policy (chunks, packing, endpoint choice, retries and
  backoff), synchronous and free of sockets, so tests drive it with a fake clock;
* :mod:`ga.fleet.endpoint`: an evaluator endpoint's record and its states, with the allowed moves;
* :mod:`ga.fleet.transport`: the HTTP calls to one evaluator (httpx);
* :mod:`ga.fleet.errors`: what a caller of the map may catch.

:class:`ga.http_executor.HttpExecutor` joins them: the ``concurrent.futures.Executor`` API on the
caller's side, an event loop on a background thread that runs the transport and asks the scheduler
what to send next.
"""
