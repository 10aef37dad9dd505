"""Reproducibility: same seed -> same run; a stopped and resumed run ends where the
uninterrupted run ends (simulated stop, and a real SIGKILL of the process)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from support import assert_same_run, deterministic_part, die_with_parent

from ga import checkpoint
from ga.run import main
from game import DEFAULT_TRACK

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--population", "6", "--max-frames", "150", "--hidden", "4", "--track", DEFAULT_TRACK]


def run(out: Path, *extra: str) -> None:
    assert main([*SMALL, "--out", str(out), *extra]) == 0


def resume(out: Path, *extra: str) -> None:
    assert main(["--resume", str(out), *extra]) == 0


def test_same_seed_gives_identical_logbook_and_best_json(tmp_path):
    run(tmp_path / "a", "--generations", "3", "--seed", "7", "--workers", "1")
    run(tmp_path / "b", "--generations", "3", "--seed", "7", "--workers", "2")
    a = checkpoint.load(tmp_path / "a" / "checkpoint.json")
    b = checkpoint.load(tmp_path / "b" / "checkpoint.json")
    assert list(a.state.logbook) == list(b.state.logbook)
    assert len(a.state.logbook) == 4
    assert_same_run(tmp_path / "a", tmp_path / "b")
    for name in ("config.json", "log.csv", "fitness.png", "best_lap.png"):
        assert (tmp_path / "a" / name).is_file()


def test_other_seed_gives_another_run(tmp_path):
    run(tmp_path / "a", "--generations", "1", "--seed", "1", "--workers", "1")
    run(tmp_path / "b", "--generations", "1", "--seed", "2", "--workers", "1")
    assert (tmp_path / "a" / "best.json").read_bytes() != (tmp_path / "b" / "best.json").read_bytes()


def test_resume_after_k_generations_equals_uninterrupted(tmp_path):
    run(tmp_path / "full", "--generations", "4", "--workers", "2")
    run(tmp_path / "part", "--generations", "2", "--workers", "2")
    assert checkpoint.load(tmp_path / "part" / "checkpoint.json").state.generation == 2
    resume(tmp_path / "part", "--generations", "4", "--workers", "1")
    assert_same_run(tmp_path / "full", tmp_path / "part")
    config = json.loads((tmp_path / "part" / "config.json").read_text())
    assert config["generations"] == 4


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    run(tmp_path / "r", "--generations", "2", "--workers", "1")
    before = deterministic_part(tmp_path / "r")
    best = (tmp_path / "r" / "best.json").read_bytes()
    (tmp_path / "r" / "best.json").unlink()  # as if killed between checkpoint and best.json
    resume(tmp_path / "r", "--workers", "1")
    assert deterministic_part(tmp_path / "r") == before
    assert (tmp_path / "r" / "best.json").read_bytes() == best


def wait_for_generation(path: Path, generation: int, proc: subprocess.Popen, deadline_s: float = 300) -> int:
    """Poll the checkpoint file until it reaches ``generation`` (returns what it holds)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        try:
            gen = json.loads(path.read_text())["generation"]
        except (FileNotFoundError, ValueError, KeyError):
            gen = -1
        if gen >= generation:
            return gen
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint of generation {generation} in {deadline_s}s")


def start_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ga.run", *args], cwd=ROOT, start_new_session=True, preexec_fn=die_with_parent,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    total = 30
    killed = tmp_path / "killed"
    proc = start_cli(*SMALL, "--generations", str(total), "--workers", "2", "--out", str(killed))
    try:
        wait_for_generation(killed / "checkpoint.json", 1, proc)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    stopped_at = checkpoint.load(killed / "checkpoint.json").state.generation  # valid after the kill
    assert stopped_at < total
    resume(killed, "--workers", "2")
    run(tmp_path / "full", "--generations", str(total), "--workers", "2")
    assert_same_run(tmp_path / "full", killed)


def test_children_get_ctrl_c_even_when_the_test_run_ignores_it():
    """`nohup pytest &` starts the run with SIGINT ignored, which children inherit across exec: the Ctrl-C
    test below then failed. The test helpers' preexec restores the default first."""
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        out = subprocess.run([sys.executable, "-c", probe], preexec_fn=die_with_parent, capture_output=True,
                             text=True, timeout=60).stdout
    finally:
        signal.signal(signal.SIGINT, before)
    assert out.strip() == "True"


def test_ctrl_c_leaves_a_valid_checkpoint(tmp_path):
    out = tmp_path / "int"
    proc = start_cli(*SMALL, "--generations", "200", "--workers", "2", "--out", str(out))
    try:
        wait_for_generation(out / "checkpoint.json", 1, proc)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert "interrupted" in err and "--resume" in err
    cp = checkpoint.load(out / "checkpoint.json")
    assert 1 <= cp.state.generation < 200


def test_a_dead_worker_is_one_line_and_the_run_resumes(tmp_path):
    out = tmp_path / "dead"
    proc = start_cli(*SMALL, "--generations", "300", "--workers", "2", "--out", str(out))
    try:
        wait_for_generation(out / "checkpoint.json", 1, proc)
        parent = psutil.Process(proc.pid)
        workers = [c for c in parent.children() if c.cmdline() == parent.cmdline()]
        assert workers, "no worker processes found"
        workers[0].kill()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 1
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "worker process died" in lines[0] and "--resume" in lines[0]
    generation = checkpoint.load(out / "checkpoint.json").state.generation
    resume(out, "--generations", str(generation + 1), "--workers", "2")
    assert checkpoint.load(out / "checkpoint.json").state.generation == generation + 1


def local_workers(proc: subprocess.Popen) -> list[psutil.Process]:
    parent = psutil.Process(proc.pid)
    workers = [c for c in parent.children() if c.cmdline() == parent.cmdline()]
    assert len(workers) == 2, "expected the two worker processes"
    return workers


def test_workers_die_with_a_killed_run(tmp_path):
    out = tmp_path / "orphans"
    proc = start_cli(*SMALL, "--generations", "300", "--workers", "2", "--out", str(out))
    try:
        wait_for_generation(out / "checkpoint.json", 1, proc)
        workers = local_workers(proc)
        proc.kill()  # the parent alone, as the OOM killer would
        proc.wait()
        _, alive = psutil.wait_procs(workers, timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert alive == [], f"worker processes outlived their run: {alive}"


def test_sigterm_is_like_ctrl_c(tmp_path):
    out = tmp_path / "term"
    proc = start_cli(*SMALL, "--generations", "300", "--workers", "2", "--out", str(out))
    try:
        wait_for_generation(out / "checkpoint.json", 1, proc)
        workers = local_workers(proc)
        proc.terminate()  # the parent alone, as `kill PID` does
        _, err = proc.communicate(timeout=120)
        _, alive = psutil.wait_procs(workers, timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "terminated" in lines[0] and f"--resume {out}" in lines[0], err
    assert alive == []
    cp = checkpoint.load(out / "checkpoint.json")
    assert 1 <= cp.state.generation < 300
