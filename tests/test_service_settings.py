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


def test_bad_values_are_refused(monkeypatch, capsys):
    with pytest.raises(ValueError, match="workers must be >= 1"):
        Settings(workers=0)
    with pytest.raises(ValueError, match="max_inflight must be >= 1"):
        Settings(max_inflight=0)
    monkeypatch.setenv("RRP_WORKERS", "many")
    with pytest.raises(SystemExit) as exit_:
        build_parser()
    assert exit_.value.code == 2  # like every other settings error (it was 1 from pydantic-settings)
    assert "RRP_WORKERS must be an integer" in capsys.readouterr().err


def test_cli_usage_error_exits_2():
    proc = subprocess.run([sys.executable, "-m", "evaluator", "--workers", "0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--workers (RRP_WORKERS) must be >= 1" in proc.stderr


def test_cgroup_cpu_limit(tmp_path):
    f = tmp_path / "cpu.max"
    f.write_text("150000 100000\n")
    assert _cgroup_cpus(str(f)) == 1.5
    f.write_text("max 100000\n")
    assert _cgroup_cpus(str(f)) is None
    assert _cgroup_cpus(str(tmp_path / "missing")) is None


@pytest.mark.parametrize(("argv", "message"), [
    (["-m", "evaluator", "--port", "99999"], "--port (RRP_PORT) must be 0..65535, got 99999"),
    (["-m", "pilot.serve", "--model", "m", "--port", "70000"], "must be 0..65535, got 70000"),
])
def test_out_of_range_ports_are_refused(argv, message):
    proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --------------------------------------------------------------------------------------------------
# Declared once: every service's settings are servicekit Options, each giving its flag and variable
# --------------------------------------------------------------------------------------------------

EVALUATOR_NAMES = [  # every flag and variable the evaluator had before its settings moved onto the kit
    ("--host", "RRP_HOST", "127.0.0.9", "host", "127.0.0.9"),
    ("--port", "RRP_PORT", "9001", "port", 9001),
    ("--workers", "RRP_WORKERS", "3", "workers", 3),
    ("--max-inflight", "RRP_MAX_INFLIGHT", "5", "max_inflight", 5),
    ("--max-batch", "RRP_MAX_BATCH", "7", "max_batch", 7),
    ("--max-frames", "RRP_MAX_FRAMES", "600", "max_frames", 600),
    ("--max-body-bytes", "RRP_MAX_BODY_BYTES", "4096", "max_body_bytes", 4096),
    ("--stall-timeout", "RRP_STALL_TIMEOUT", "2.5", "stall_timeout_s", 2.5),
    ("--header-timeout", "RRP_HEADER_TIMEOUT", "3", "header_timeout_s", 3.0),
    ("--body-timeout", "RRP_BODY_TIMEOUT", "4", "body_timeout_s", 4.0),
    ("--min-body-rate", "RRP_MIN_BODY_RATE", "0", "min_body_rate", 0.0),
    ("--id", "RRP_EVALUATOR_ID", "pod-7", "evaluator_id", "pod-7"),
    ("--log-level", "RRP_LOG_LEVEL", "debug", "log_level", "debug"),
    (None, "RRP_RETRY_AFTER_S", "3", "retry_after_s", 3),
]


@pytest.mark.parametrize(("flag", "variable", "raw", "field", "value"), EVALUATOR_NAMES,
                         ids=[row[1] for row in EVALUATOR_NAMES])
def test_evaluator_keeps_every_flag_and_variable_name(monkeypatch, flag, variable, raw, field, value):
    assert getattr(_settings([], monkeypatch, {variable: raw}), field) == value
    if flag:
        assert getattr(_settings([flag, raw], monkeypatch), field) == value


def _declared(options) -> dict[str, tuple[str, str]]:
    return {o.name: (o.flag, o.env) for o in options}


def test_the_evaluator_declares_each_setting_once_on_the_kit():
    """One list of Options: its settings are the Settings fields (the token aside, read from the variable
    --token-env names), their checks are the ones Settings applies to values given in code."""
    import dataclasses

    from evaluator.settings import OPTIONS

    fields = {f.name for f in dataclasses.fields(Settings)} - {"token"}
    assert set(_declared(OPTIONS)) == fields
    assert _declared(OPTIONS)["stall_timeout_s"] == ("--stall-timeout", "RRP_STALL_TIMEOUT")
    actions = {a.dest: a.option_strings for a in build_parser()._actions}
    assert actions["evaluator_id"] == ["--evaluator-id", "--id"]
    assert set(actions) - {"help", "token_env"} == fields


def test_the_game_declares_its_service_settings_once_on_the_kit(monkeypatch):
    """The game's settings are kit Options too (its old flags and variables keep their names); only what
    to play (track, renderer, driver, mode, sizes) stays plain flags."""
    from game.__main__ import OPTIONS, parse_args

    assert _declared(OPTIONS) == {
        "host": ("--host", "RRP_HOST"), "port": ("--port", "RRP_PORT"),
        "forwarded_allow_ips": ("--forwarded-allow-ips", "RRP_FORWARDED_ALLOW_IPS"),
        "redis": ("--redis", "RRP_REDIS"), "record_every": ("--record-every", "RRP_RECORD_EVERY"),
        "stream_maxlen": ("--stream-maxlen", "RRP_STREAM_MAXLEN"), "log_level": ("--log-level", "RRP_LOG_LEVEL"),
    }
    for option in OPTIONS:
        monkeypatch.delenv(option.env, raising=False)
    monkeypatch.setenv("RRP_PORT", "8211")
    monkeypatch.setenv("RRP_REDIS", "redis://r:6379/0")
    args = parse_args(["--host", "127.0.0.3", "--record-every", "2"])
    assert (args.host, args.port, args.redis, args.record_every, args.log_level) == (
        "127.0.0.3", 8211, "redis://r:6379/0", 2, "warning")
    assert parse_args(["--port", "8212"]).port == 8212


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--record-every", "0"], {}, "--record-every (RRP_RECORD_EVERY) must be >= 1, got 0"),
    (["--port", "70000"], {}, "--port (RRP_PORT) must be 0..65535, got 70000"),
    ([], {"RRP_STREAM_MAXLEN": "lots"}, "RRP_STREAM_MAXLEN must be an integer, got 'lots'"),
])
def test_the_games_bad_settings_are_one_line_and_exit_2(argv, env, message):
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("RRP_")}
    proc = subprocess.run([sys.executable, "-m", "game", "--no-render", *argv], capture_output=True, text=True,
                          env={**clean, **env}, timeout=60)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"python -m game: {message}"], proc.stderr
