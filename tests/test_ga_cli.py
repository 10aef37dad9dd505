"""ga.run / ga.replay command lines: bad input gives one clear line and a non-zero exit."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import die_with_parent

from ga import replay
from ga.run import main
from game import DEFAULT_TRACK

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--population", "4", "--generations", "1", "--max-frames", "60", "--hidden", "3", "--workers", "1"]


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main([*TINY, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(("args", "words"), [
    (["--track", "no-such-track"], ["no-such-track"]),
    (["--track", "/nonexistent/track.json"], ["track.json"]),
    (["--controller", "transformer"], ["transformer"]),
    (["--population", "1"], ["--population"]),
    (["--generations", "0"], ["--generations"]),
    (["--hidden", "8,x"], ["--hidden"]),
    (["--workers", "0"], ["--workers"]),
    (["--hidden", "100"], ["hidden"]),
    (["--max-frames", "40000"], ["max_frames"]),
    (["--evaluators", "ftp://nowhere"], ["--evaluators", "ftp://nowhere"]),
    (["--population", "many"], ["--population"]),
    (["--no-such-option"], ["--no-such-option"]),
    (["--resume", "/nonexistent/run"], ["/nonexistent/run"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and v and v[0].startswith("--") else None)
def test_bad_arguments(tmp_path, args, words):
    assert_one_line_error(cli("ga.run", *args, "--out", str(tmp_path / "out")) if "--resume" not in args
                          else cli("ga.run", *args), *words)


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize(("content", "words"), [
    ("{not json", ["not valid JSON"]),
    ('{"hello": "world"}', ["not a RallyRoboPilot GA checkpoint"]),
    ("", ["not valid JSON"]),
    ("[1, 2, 3]", ["not a RallyRoboPilot GA checkpoint"]),
], ids=["garbage", "foreign", "empty", "list"])
def test_corrupt_or_foreign_checkpoint(tmp_path, finished_run, content, words):
    run_dir = copy_run(finished_run, tmp_path / "run")
    (run_dir / "checkpoint.json").write_text(content)
    assert_one_line_error(cli("ga.run", "--resume", str(run_dir)), *words)


def test_truncated_checkpoint(tmp_path, finished_run):
    run_dir = copy_run(finished_run, tmp_path / "run")
    text = (run_dir / "checkpoint.json").read_text()
    (run_dir / "checkpoint.json").write_text(text[: len(text) // 2])
    assert_one_line_error(cli("ga.run", "--resume", str(run_dir)), "checkpoint")


def test_tampered_checkpoint(tmp_path, finished_run):
    run_dir = copy_run(finished_run, tmp_path / "run")
    doc = json.loads((run_dir / "checkpoint.json").read_text())
    doc["population"][0]["genome"] = doc["population"][0]["genome"][:-1]
    (run_dir / "checkpoint.json").write_text(json.dumps(doc))
    assert_one_line_error(cli("ga.run", "--resume", str(run_dir)), "genes")


def test_changed_fitness_is_refused_in_one_line(tmp_path, finished_run):
    run_dir = copy_run(finished_run, tmp_path / "run")
    doc = json.loads((run_dir / "checkpoint.json").read_text())
    doc["population"][0]["fitness"] += 1.0  # a valid shape, another run
    (run_dir / "checkpoint.json").write_text(json.dumps(doc))
    assert_one_line_error(cli("ga.run", "--resume", str(run_dir)), "digest")


def resign(run_dir: Path, change) -> None:
    """Edit the checkpoint and recompute its digest, as someone editing it on purpose would."""
    from ga.checkpoint import content_digest

    path = run_dir / "checkpoint.json"
    doc = json.loads(path.read_text())
    change(doc)
    doc["digest"] = content_digest(doc)
    path.write_text(json.dumps(doc))


def test_an_edited_strategy_record_is_refused_in_one_line_even_when_resigned(tmp_path, finished_run):
    """An edited CMA-ES state with the digest recomputed (``C[0][0] = -5`` in the old format) used to resume,
    sample NaN genomes and end in a 38-line traceback; the record is now replayed on load and must give the
    stored population, or the run is refused in one line and the checkpoint left as it was."""
    run_dir = copy_run(finished_run, tmp_path / "run")
    resign(run_dir, lambda d: d["strategy"]["told"][-1].__setitem__(0, -5.0))
    before = (run_dir / "checkpoint.json").read_bytes()
    proc = cli("ga.run", "--resume", str(run_dir), "--generations", "2")
    assert_one_line_error(proc, "checkpoint.json", "differs from the population's fitness")
    assert proc.returncode == 2
    assert (run_dir / "checkpoint.json").read_bytes() == before


@pytest.mark.parametrize("out", ["/proc/x", "{file}/run"], ids=["proc", "under-a-file"])
def test_a_run_folder_that_cannot_be_made_is_one_line(tmp_path, out):
    """`--out /proc/x` used to be a 24-line traceback from mkdir."""
    (tmp_path / "file").write_text("")
    out = out.format(file=tmp_path / "file")
    proc = cli("ga.run", *TINY, "--out", out)
    assert_one_line_error(proc, "cannot create the run folder", out)
    assert proc.returncode == 2


def test_resume_removes_leftover_temporary_files(tmp_path, finished_run):
    run_dir = copy_run(finished_run, tmp_path / "run")
    leftover = run_dir / ".checkpoint.json.k2j3h4.tmp"  # what a kill during a write leaves
    leftover.write_text('{"half": ')
    assert main(["--resume", str(run_dir)]) == 0
    assert not leftover.exists()


def test_run_files_have_the_usual_mode(finished_run):
    umask = os.umask(0)
    os.umask(umask)
    for name in ("checkpoint.json", "best.json", "config.json", "log.csv", "fitness.png"):
        assert (finished_run / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_resume_without_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    assert_one_line_error(cli("ga.run", "--resume", str(tmp_path / "empty")), "no checkpoint")


def test_resume_refuses_to_change_the_course(finished_run):
    assert_one_line_error(cli("ga.run", "--resume", str(finished_run), "--population", "10"), "--population")


def test_new_run_refuses_to_overwrite_a_run(finished_run):
    assert_one_line_error(cli("ga.run", *TINY, "--out", str(finished_run)), "--resume")


def test_replay_re_drives_best_json(finished_run, capsys):
    assert replay.main([str(finished_run)]) == 0
    out = capsys.readouterr().out
    assert "identical to the result stored in best.json" in out
    assert f"python -m ga.replay {finished_run} --watch" in out


def test_replay_into_a_closed_pipe_is_quiet(finished_run):
    """``python -m ga.replay RUN | head -0``: the reader is gone before the first line."""
    proc = subprocess.Popen([sys.executable, "-m", "ga.replay", str(finished_run)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=300)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 1


def test_replay_bad_folder(tmp_path):
    assert_one_line_error(cli("ga.replay", str(tmp_path / "missing")), "best.json")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "best.json").write_text('{"genome": [1, 2]}')
    assert_one_line_error(cli("ga.replay", str(tmp_path / "x")), "best.json")


def test_track_given_as_a_file_travels_inline(tmp_path):
    track_file = tmp_path / "my-track.json"
    shutil.copy(ROOT / "game" / "tracks" / f"{DEFAULT_TRACK}.json", track_file)
    out = tmp_path / "run"
    assert main([*TINY, "--track", str(track_file), "--out", str(out)]) == 0
    best = json.loads((out / "best.json").read_text())
    assert isinstance(best["task"]["track"], dict)  # self-contained: replays without the file
    track_file.unlink()
    assert replay.main([str(out)]) == 0


def test_default_out_folder_and_summary_lines(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*TINY, "--seed", "3", "--controller", "schedule"]) == 0
    out = capsys.readouterr().out
    run_dir = tmp_path / "runs" / f"{DEFAULT_TRACK}-schedule-s3"
    assert (run_dir / "best.json").is_file()
    gen_lines = [line for line in out.splitlines() if line.startswith("gen ")]
    assert len(gen_lines) == 2 and "evals/s" in gen_lines[0] and "finished" in gen_lines[0]
    assert "baseline pursuit" in out
    header = (run_dir / "log.csv").read_text().splitlines()[0]
    assert header.startswith("gen,nevals,best_lap_s,mean_lap_s,finished_share")
