# RallyRoboPilot images, one build with several targets:
#
#   docker build --target evaluator -t rallyrobopilot-evaluator:0.1.0 .   # evaluator service and GA (no OpenGL)
#   docker build --target game      -t rallyrobopilot-game:0.1.0 .        # headless game (EGL + Mesa)
#   docker build --target pilot     -t rallyrobopilot-pilot:0.1.0 .       # vision pilot service (onnxruntime)
#
# The evaluator image also runs the genetic algorithm: `python -m ga.run ...`; the game image also
# collects camera frames for the vision pilot: `python -m pilot.collect ...`.
# The base is pinned by version tag and by the digest of its multi-architecture index;
# override with --build-arg PYTHON_IMAGE=... to move it.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

# ---------------------------------------------------------------------------------------------
# base: runtime settings shared by every final stage (no compilers, no package caches)
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    HOME=/home/rrp
# Non-root user; /runs holds GA run folders (mount a volume there).
RUN groupadd --system --gid 10001 rrp \
    && useradd --system --uid 10001 --gid rrp --home-dir /home/rrp --create-home --shell /usr/sbin/nologin rrp \
    && mkdir -p /runs \
    && chown rrp:rrp /runs
WORKDIR /home/rrp

# ---------------------------------------------------------------------------------------------
# builder: resolves and installs the project into /opt/venv. Only this stage may hold build tools.
FROM base AS builder
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, from pyproject.toml alone: cached while only the source or README change.
COPY pyproject.toml ./
RUN python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(d['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY README.md ./
COPY servicekit ./servicekit
COPY game ./game
COPY evaluator ./evaluator
COPY ga ./ga
COPY pilot ./pilot
RUN pip install --no-deps . \
    && python -c "import servicekit, game, evaluator, ga, pilot" \
    && rm -rf build ./*.egg-info

# builder-game: the project with the front end's extra (Ursina, Panda3D, Pillow) and the pilot's
# runtime (onnxruntime), which frame collection needs to let a model drive (DAgger rounds). Its own
# venv from scratch, dependencies first, so a source change does not reinstall them.
FROM base AS builder-game
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(d['dependencies'] + d['optional-dependencies']['game'] + d['optional-dependencies']['pilot']))" > /tmp/requirements-game.txt \
    && pip install -r /tmp/requirements-game.txt
# the same sources as the builder's (README and packages)
COPY --from=builder /src ./
RUN pip install --no-deps . \
    && python -c "import game, evaluator, ga, pilot"

# builder-pilot: the serving image's venv from scratch: the web stack and numpy from the project's
# dependencies plus the `pilot` extra (onnxruntime, Pillow), the `pilot` package and the services' kit
# `servicekit` (with the records' base the model card uses; serving imports nothing of `game`); no numba,
# no OpenGL, no training framework.
FROM base AS builder-pilot
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import re, tomllib; d = tomllib.load(open('pyproject.toml', 'rb'))['project']; serve = {'numpy', 'pydantic', 'fastapi', 'uvicorn', 'orjson', 'prometheus-client', 'httptools', 'uvloop', 'sniffio'}; print('\n'.join([r for r in d['dependencies'] if re.split('[<>=!~ ;\\[]', r)[0] in serve] + d['optional-dependencies']['pilot']))" > /tmp/requirements-pilot.txt \
    && pip install -r /tmp/requirements-pilot.txt
COPY README.md ./
COPY servicekit ./servicekit
COPY pilot ./pilot
RUN pip install --no-deps . \
    && python -c "import pilot.serve, servicekit.launch"

# ---------------------------------------------------------------------------------------------
# game: headless Ursina renders offscreen through EGL and Mesa's software rasteriser.
FROM base AS game
ENV RRP_HOST=0.0.0.0 \
    RRP_PORT=8200
# Debian package versions follow the pinned base image's release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libegl1 libgl1-mesa-dri \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder-game /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8200
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8200/healthz', timeout=2)"]
CMD ["python", "-m", "game", "--headless", "--port", "8200", "--mode", "realtime"]

# ---------------------------------------------------------------------------------------------
# pilot: the vision pilot service; the model (model.onnx + model.json) comes from a volume at /models.
FROM base AS pilot
ENV RRP_HOST=0.0.0.0 \
    RRP_PORT=8300 \
    RRP_MODEL=/models
COPY --from=builder-pilot /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8300
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RRP_PORT', '8300'), timeout=2)"]
CMD ["python", "-m", "pilot.serve"]

# ---------------------------------------------------------------------------------------------
# evaluator (default target): evaluator service; also runs `python -m ga.run`.
FROM base AS evaluator
ENV RRP_HOST=0.0.0.0 \
    RRP_PORT=8000
COPY --from=builder /opt/venv /opt/venv
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('RRP_PORT', '8000'), timeout=2)"]
CMD ["python", "-m", "evaluator"]
