"""The small kit the three HTTP services share (the game API, the evaluator, the pilot service), and the
records every part writes for another process to read.

A service is its routes plus this kit:

- :mod:`servicekit.settings`: settings declared once; each declaration gives a flag ``--name`` and a
  variable ``RRP_NAME`` (flags win), validated into one line and exit status 2;
- :mod:`servicekit.guards`: the admission guards in front of every route (bearer token in constant
  time, body size, bodies that must arrive at a minimum rate within a deadline, a byte budget for
  bodies being received) and the capacity slot a route takes once its body is in;
- :mod:`servicekit.errors`: the one JSON error format, ``{"detail": ..., "errors": [{field, message}]}``;
- :mod:`servicekit.http`: uvicorn's protocol with a deadline for request headers;
- :mod:`servicekit.launch`: the port range, the bind address and the forwarded-headers policy;
- :mod:`servicekit.records`: the versioned record base (one writer, one reader, a one-line refusal of
  another version) and :mod:`servicekit.atomic`, atomic file writes: the pilot's serving image reads a
  model card with them and carries nothing of the simulation.

It is the bottom layer beside ``game``: it imports no simulation, no Ursina, and nothing of the
project's other packages.
"""
