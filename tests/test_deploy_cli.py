"""Every command, argument and RRP_* environment variable that the compose file, the Helm chart
(default and all-on values) and the Dockerfile give a container is accepted by the project's own
command-line parsers, and means what the deployment intends (listen on all addresses, the right
port, the fleet's discovery URL, the Redis URL, ...)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from unittest import mock

import pytest
import yaml
from support import compose_services, dockerfile_env, dockerfile_stages, helm_binary

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "rallyrobopilot"
CONTRACT_ENV = {"RRP_HOST", "RRP_PORT", "RRP_WORKERS", "RRP_MAX_INFLIGHT", "RRP_TOKEN", "RRP_EVALUATORS", "RRP_REDIS",
                "RRP_MODEL", "RRP_MAX_BATCH"}
SECRET = "token-from-a-secret"
IMAGE_TARGET = {"rallyrobopilot-evaluator": "evaluator", "rallyrobopilot-game": "game", "rallyrobopilot-pilot": "pilot"}


# --- where the containers' commands come from ----------------------------------------------------


def image_env(target: str) -> dict[str, str]:
    """RRP_* variables the image itself sets (a container's own env overrides them)."""
    return {k: v for k, v in dockerfile_env(target).items() if k.startswith("RRP_")}


def chart_containers(*values: str) -> list[tuple[str, list[str], dict[str, str]]]:
    proc = subprocess.run(
        [helm_binary(), "template", "rrp", str(CHART), "--namespace", "rallyrobopilot", *values],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    found = []
    for obj in yaml.safe_load_all(proc.stdout):
        if not obj or obj["kind"] not in ("Deployment", "Job"):
            continue
        for c in obj["spec"]["template"]["spec"]["containers"]:
            repo = c["image"].rsplit(":", 1)[0]
            if repo not in IMAGE_TARGET:
                continue  # third-party images (redis)
            env = image_env(IMAGE_TARGET[repo])
            for e in c.get("env", []):
                if e["name"].startswith("RRP_"):
                    env[e["name"]] = e.get("value", SECRET)
            argv = c.get("command", dockerfile_stages()[IMAGE_TARGET[repo]]["cmd"]) + c.get("args", [])
            label = " ".join(v.replace(str(CHART) + "/", "") for v in values) or "defaults"
            found.append((f"chart {label}: {obj['kind']}/{obj['metadata']['name']}", argv, env))
    return found


def compose_containers() -> list[tuple[str, list[str], dict[str, str]]]:
    # the shell's token is passed through to the containers; the opt-in services too
    services = compose_services(RRP_TOKEN=SECRET, COMPOSE_PROFILES="collect,pilot")
    found = []
    for name, svc in services.items():
        target = (svc.get("build") or {}).get("target")
        if target is None:
            continue  # redis
        container_env = image_env(target)
        container_env.update(
            {k: v for k, v in (svc.get("environment") or {}).items() if v is not None and k.startswith("RRP_")}
        )
        argv = svc.get("command") or dockerfile_stages()[target]["cmd"]
        found.append((f"compose: {name}", argv, container_env))
    return found


def dockerfile_containers() -> list[tuple[str, list[str], dict[str, str]]]:
    return [(f"Dockerfile: {t}", dockerfile_stages()[t]["cmd"], image_env(t)) for t in ("evaluator", "game", "pilot")]


CHART_VALUE_SETS = [
    (),
    ("-f", str(CHART / "ci" / "all-on-values.yaml")),
    ("--set", "ga.enabled=true", "--set", "ga.evaluators=dns://rrp-evaluator:8000", "--set", "game.enabled=true"),
]


def all_containers() -> list[tuple[str, list[str], dict[str, str]]]:
    found = compose_containers() + dockerfile_containers()
    for values in CHART_VALUE_SETS:
        found += chart_containers(*values)
    return found


# --- the project's CLIs ----------------------------------------------------------------------------


def check_evaluator(argv: list[str], env: dict[str, str]) -> None:
    from evaluator.__main__ import build_parser, settings_from_args

    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    assert settings.host == "0.0.0.0", "a container must listen on all addresses"
    assert settings.port == 8000
    if "RRP_WORKERS" in env:
        assert settings.workers == int(env["RRP_WORKERS"])
    if "RRP_MAX_INFLIGHT" in env:
        assert settings.max_inflight == int(env["RRP_MAX_INFLIGHT"])
    assert settings.token == env.get("RRP_TOKEN")


def check_ga(argv: list[str], env: dict[str, str]) -> None:
    from evaluator import CONTROLLER_KINDS as CONTROLLERS
    from ga.discovery import parse_spec
    from ga.http_executor import HttpExecutor
    from ga.run import build_parser
    from game import bundled_tracks

    args = build_parser().parse_args(argv)
    assert args.generations >= 1
    assert args.out and args.out.startswith("/runs/"), "the run folder goes to the mounted volume"
    assert args.evaluators, "the GA in a container evaluates on the fleet"
    if "RRP_EVALUATORS" in env:
        assert args.evaluators == env["RRP_EVALUATORS"]
    discovery = parse_spec(args.evaluators)
    assert discovery.dynamic, "the fleet's membership is re-read during the run"
    assert args.track is None or args.track in bundled_tracks()
    assert args.controller is None or args.controller in CONTROLLERS
    assert args.population is None or args.population >= 2
    # the GA sends RRP_TOKEN to the evaluators (read by the HTTP executor)
    executor = HttpExecutor("http://127.0.0.1:9")
    try:
        sent = executor._headers.get("authorization")
    finally:
        executor.shutdown(wait=True)
    assert sent == (f"Bearer {env['RRP_TOKEN']}" if env.get("RRP_TOKEN") else None)


def check_game(argv: list[str], env: dict[str, str]) -> None:
    from game.__main__ import parse_args

    args = parse_args(argv)
    assert args.headless, "containers have no display"
    assert args.host == "0.0.0.0", "a container must listen on all addresses"
    assert args.port == 8200
    assert args.mode in ("realtime", "lockstep")
    if "RRP_REDIS" in env:
        assert args.redis == env["RRP_REDIS"]


def check_pilot_serve(argv: list[str], env: dict[str, str]) -> None:
    from pilot.serve import build_parser, settings_from_args

    settings = settings_from_args(build_parser().parse_args(argv))
    assert settings.host == "0.0.0.0", "a container must listen on all addresses"
    assert settings.port == 8300
    assert str(settings.model).startswith("/models"), "the model comes from the mounted volume"
    assert settings.token == env.get("RRP_TOKEN")
    if "RRP_MAX_BATCH" in env:
        assert settings.max_batch == int(env["RRP_MAX_BATCH"])
    if "RRP_MAX_INFLIGHT" in env:
        assert settings.max_inflight == int(env["RRP_MAX_INFLIGHT"])


def check_collect(argv: list[str], env: dict[str, str]) -> None:
    """The collector's own CLI checks every argument (tracks, shard, sizes) before it connects to Redis:
    here the deployment's Redis host does not exist, so getting as far as connecting is the pass."""
    import contextlib
    import io
    from urllib.parse import urlsplit

    from pilot.collect import main

    url = env["RRP_REDIS"].replace("$(REDIS_PASSWORD)", "from-the-secret")  # as Kubernetes expands it
    if "--redis" in argv:
        assert argv[argv.index("--redis") + 1] == env["RRP_REDIS"]
    else:  # the URL (with its password) comes from the environment only
        argv = ["--redis", url, *argv]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(argv) == 2
    host = urlsplit(url).hostname
    assert f"connecting to {host}:" in err.getvalue(), err.getvalue()


CHECKS = {"evaluator": check_evaluator, "ga.run": check_ga, "game": check_game, "pilot.serve": check_pilot_serve,
          "pilot.collect": check_collect}


def test_every_deployment_runs_a_known_command():
    containers = all_containers()
    origins = {origin for origin, _, _ in containers}
    expected = {"compose: evaluator", "compose: ga", "compose: game", "compose: pilot", "compose: collector",
                "Dockerfile: evaluator", "Dockerfile: game", "Dockerfile: pilot"}
    assert expected <= origins
    modules = {argv[2] for _, argv, _ in containers}
    assert modules == set(CHECKS)
    assert len(containers) >= 12


@pytest.mark.parametrize(("origin", "argv", "env"), all_containers(), ids=lambda v: v if isinstance(v, str) else "")
def test_command_and_environment_are_accepted_by_the_cli(origin, argv, env):
    assert argv[:2] == ["python", "-m"], origin
    module, cli_args = argv[2], argv[3:]
    assert set(env) <= CONTRACT_ENV, f"{origin}: unknown RRP_* variables {set(env) - CONTRACT_ENV}"
    # CLIs read RRP_* at parse time: parse under exactly the container's environment
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RRP_")}
    with mock.patch.dict(os.environ, {**clean, **env}, clear=True):
        try:
            CHECKS[module](cli_args, env)
        except SystemExit as exc:  # argparse refusing the arguments
            pytest.fail(f"{origin}: `{' '.join(argv)}` refused by the CLI (exit {exc.code})")
