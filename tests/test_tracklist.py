"""One track-list syntax and one held-out rule (``game.tracklist``) for every command that names tracks.

The point of the held-out rule: no track a training or tuning command can draw is ever one that a
judging command calls unseen. These tests go through the commands' own argument parsers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ga import tracksets
from ga.run import build_parser as ga_run_parser
from game import bundled_tracks, generate_track, tracklist
from game.tracklist import HELD_OUT_SEEDS, JUDGING_DEFAULT, UNSEEN, HeldOutError, Purpose, is_held_out, parse

ROOT = Path(__file__).resolve().parents[1]
TRAINING, JUDGING = Purpose.TRAINING, Purpose.JUDGING
FIRST = f"random-{HELD_OUT_SEEDS.start}"
LAST = f"random-{HELD_OUT_SEEDS.stop - 1}"


# --- syntax -----------------------------------------------------------------------------------------


def test_a_list_expands_in_order_with_all_ranges_single_seeds_and_paths(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(generate_track(3).to_json() | {"name": "mine"}))
    names = parse(f" oval , random-3..5,{path},random-7", TRAINING)
    assert names == ["oval", "random-3", "random-4", "random-5", str(path), "random-7"]
    assert parse("all,random-0", TRAINING) == [*bundled_tracks(), "random-0"]
    assert [tracklist.label(n) for n in names] == ["oval", "random-3", "random-4", "random-5", "mine", "random-7"]
    assert tracklist.load("random-4").name == "random-4" and tracklist.load(str(path)).name == "mine"
    assert tracklist.load("random-4").to_json() == generate_track(4).to_json()


@pytest.mark.parametrize(("spec", "words"), [
    ("", ["empty track name"]),
    ("oval,,circuit", ["empty track name", "'oval,,circuit'"]),
    ("oval,", ["empty track name"]),
    ("random-5..4", ["empty track range", "random-5..4"]),
    ("oval,random-2,oval", ["'oval' is named twice"]),
    ("all,hairpins", ["'hairpins' is named twice"]),
    ("random-0..9,random-9", ["'random-9' is named twice"]),
    ("random-0..100000000", ["100000001 tracks", "at most 1000"]),
    ("all,random-0..996", ["more than 1000 tracks"]),
])
def test_a_bad_list_says_what_is_wrong(spec, words):
    with pytest.raises(ValueError) as err:
        parse(spec, JUDGING)
    for word in words:
        assert word in str(err.value)


def test_a_command_may_cap_its_tracks_lower():
    assert len(parse("random-0..63", TRAINING, max_tracks=64)) == 64
    with pytest.raises(ValueError, match="at most 64"):
        parse("random-0..64", TRAINING, max_tracks=64)


# --- the held-out rule ------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [FIRST, LAST, UNSEEN, "oval,random-999999990..1000000000", "random-1000000500",
                                  f"random-{HELD_OUT_SEEDS.stop - 1}..{HELD_OUT_SEEDS.stop + 5}", JUDGING_DEFAULT])
def test_training_may_not_draw_a_held_out_track_and_judging_may(spec):
    with pytest.raises(HeldOutError, match=r"is held out for judging \(random-1000000000..1000000999\)"):
        parse(spec, TRAINING)
    assert any(is_held_out(n) for n in parse(spec, JUDGING))


def test_the_held_out_range_has_edges():
    assert not is_held_out(f"random-{HELD_OUT_SEEDS.start - 1}") and not is_held_out(f"random-{HELD_OUT_SEEDS.stop}")
    assert is_held_out(FIRST) and is_held_out(LAST) and not is_held_out("circuit")
    assert parse(f"random-{HELD_OUT_SEEDS.stop}", TRAINING) == [f"random-{HELD_OUT_SEEDS.stop}"]
    assert tracklist.HELD_OUT_LOOKS == ()  # declared beside the seeds; the looks issue fills it


def test_the_judging_default_is_the_bundled_tracks_and_ten_held_out_ones():
    names = parse(JUDGING_DEFAULT, JUDGING)
    assert names[: len(bundled_tracks())] == bundled_tracks()
    unseen = names[len(bundled_tracks()):]
    assert len(unseen) == 10 and all(is_held_out(n) for n in unseen) and unseen == parse(UNSEEN, JUDGING)


def test_both_judging_commands_default_to_the_same_held_out_set():
    from ga.report import build_parser as report_parser
    from pilot.drive import build_parser as drive_parser

    assert report_parser().parse_args(["run"]).tracks == JUDGING_DEFAULT
    assert drive_parser().parse_args(["model", "--pilot"]).tracks == JUDGING_DEFAULT


def test_no_ga_run_seed_trains_on_a_held_out_track():
    """``ga.run --generated N`` up to its maximum, for many run seeds: a generated training track is
    never held out; the only run seeds that would reach the range (from one million) are refused."""
    seeds = [*range(0, 3000), *range(3000, 1_000_000, 4999), 999_999, 1_000_000, 1_000_001, 2**40]
    refused = []
    for seed in seeds:
        args = ga_run_parser().parse_args(["--track", "all", "--generated", str(tracksets.MAX_TRACKS - 4),
                                           "--seed", str(seed)])
        try:
            names = tracksets.names(args.track, TRAINING, args.generated, args.seed)
        except HeldOutError:
            refused.append(seed)
            continue
        assert len(names) == tracksets.MAX_TRACKS and not any(is_held_out(n) for n in names), seed
    assert refused == [1_000_000]


def test_ga_run_refuses_held_out_tracks_with_one_line_and_status_2(capsys):
    from ga.run import main

    for argv in (["--track", "oval,random-1000000003"], ["--track", "random-999999999..1000000000"],
                 ["--seed", "1000000", "--generated", "3"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is held out" in err and "random-1000000000..1000000999" in err


def test_pilot_collect_defaults_train_on_no_held_out_track_and_refuse_one_from_the_environment(monkeypatch):
    """The chart and compose run ``pilot.collect`` with its defaults or ``RRP_PILOT_TRACKS``."""
    from pilot.collect import build_parser, main

    monkeypatch.delenv("RRP_PILOT_TRACKS", raising=False)
    names = parse(build_parser().parse_args([]).tracks, TRAINING)
    assert len(names) == len(bundled_tracks()) + 36 and not any(is_held_out(n) for n in names)
    env = dict(os.environ, PYTHONPATH=str(ROOT), RRP_PILOT_TRACKS=f"oval,{UNSEEN}")
    proc = subprocess.run([sys.executable, "-m", "pilot.collect", "--redis", "redis://127.0.0.1:1/0"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert f"{FIRST} is held out" in proc.stderr
    assert main(["--tracks", "random-1000000999", "--redis", "redis://127.0.0.1:1/0"]) == 2
