"""``python -m evaluator`` configuration: flags, RRP_* environment variables, CPU limits."""

from __future__ import annotations

import subprocess
import sys

import pytest

from evaluator.__main__ import build_parser, settings_from_args
from evaluator.settings import Settings, _cgroup_cpus


def _settings(argv, monkeypatch, env=None):
    for key in ("RRP_HOST", "RRP_PORT", "RRP_WORKERS", "RRP_MAX_INFLIGHT", "RRP_TOKEN", "RRP_MAX_BATCH"):
        monkeypatch.delenv(key, raising=False)
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    return settings_from_args(build_parser().parse_args(argv))


def test_environment_sets_defaults_and_flags_win(monkeypatch):
    env = {"RRP_HOST": "127.0.0.9", "RRP_PORT": "9001", "RRP_WORKERS": "3", "RRP_MAX_INFLIGHT": "5",
           "RRP_TOKEN": "t0k"}
    s = _settings([], monkeypatch, env)
    assert (s.host, s.port, s.workers, s.capacity, s.token) == ("127.0.0.9", 9001, 3, 5, "t0k")
    s = _settings(["--port", "9002", "--workers", "1", "--max-inflight", "4"], monkeypatch, env)
    assert (s.port, s.workers, s.capacity) == (9002, 1, 4)
    assert s.evaluator_id.endswith(":9002")


def test_defaults_and_token_from_another_variable(monkeypatch):
    s = _settings(["--workers", "2"], monkeypatch)
    assert s.host == "127.0.0.1" and s.port == 8000 and s.token is None
    assert s.capacity == 4  # two requests per worker by default
    monkeypatch.setenv("MY_SECRET", "abc")
    assert _settings(["--token-env", "MY_SECRET"], monkeypatch).token == "abc"


def test_bad_values_are_refused(monkeypatch):
    with pytest.raises(ValueError):
        Settings(workers=0)
    with pytest.raises(ValueError):
        Settings(max_inflight=0)
    monkeypatch.setenv("RRP_WORKERS", "many")
    with pytest.raises(SystemExit, match="RRP_WORKERS must be an integer"):
        build_parser()


def test_cli_usage_error_exits_2():
    proc = subprocess.run([sys.executable, "-m", "evaluator", "--workers", "0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "workers must be >= 1" in proc.stderr


def test_cgroup_cpu_limit(tmp_path):
    f = tmp_path / "cpu.max"
    f.write_text("150000 100000\n")
    assert _cgroup_cpus(str(f)) == 1.5
    f.write_text("max 100000\n")
    assert _cgroup_cpus(str(f)) is None
    assert _cgroup_cpus(str(tmp_path / "missing")) is None


@pytest.mark.parametrize(("argv", "message"), [
    (["-m", "evaluator", "--port", "99999"], "port must be 0..65535, got 99999"),
    (["-m", "pilot.serve", "--model", "m", "--port", "70000"], "must be 0..65535, got 70000"),
])
def test_out_of_range_ports_are_refused(argv, message):
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
