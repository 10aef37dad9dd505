"""The simulation core: car model, walls, laps, determinism, tracks and their errors."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support import BIG_CIRCLE

from game import DT, PursuitDriver, Race, Track, TrackError, bundled_tracks, generate_track, load_track
from game import physics as P
from game.geometry import nearest_on_centerline
from game.pursuit import pursuit_lap


def random_controls(rng: np.random.Generator, n: int) -> np.ndarray:
    keys = rng.random((n, 4)) < np.array([0.7, 0.1, 0.3, 0.3])
    return keys


def trajectory_digest(track: str, seed: int, frames: int) -> str:
    """Hash of car 0's full trajectory driven by seeded random keys."""
    rng = np.random.default_rng(seed)
    race = Race(track, 1, max_frames=frames)
    h = hashlib.sha256()
    while not race.all_done:
        race.step(random_controls(rng, 1))
        h.update(race._state[0].tobytes())
        h.update(race.observation.rays.tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------ car model
def straight_race(speed: float = 0.0) -> Race:
    race = Race("oval", 1)
    x, y, heading = race.track.start
    race.place(0, x + 50.0, y, heading, speed)
    return race


def test_acceleration_top_speed_and_drag():
    race = straight_race()
    for _ in range(25):
        race.step([[1, 0, 0, 0]])
    assert race.state.speed[0] == pytest.approx(25.0)  # 25 m/s^2 for one second
    race.place(0, *race.track.start, 49.5)
    race.step([[1, 0, 0, 0]])
    assert race.state.speed[0] == 50.0  # capped at top speed
    race.step([[0, 0, 0, 0]])
    assert race.state.speed[0] == pytest.approx(50.0 - 7.5 * DT)  # coasting drag
    race.step([[0, 1, 0, 0]])
    assert race.state.speed[0] == pytest.approx(50.0 - 7.5 * DT - 50.0 * DT)  # braking


def test_reverse_is_limited():
    race = straight_race()
    for _ in range(50):
        race.step([[0, 1, 0, 0]])
    assert race.state.speed[0] == -15.0


def test_turning_radius_follows_the_original_car():
    for speed in (5.0, 20.0, 45.0):
        race = straight_race(speed)
        before = race.state.heading[0]
        race.step([[0, 0, 1, 0]])
        v = speed - 7.5 * DT
        radius = 1.5 + 23.5 * (v / 50.0) ** 1.5
        assert race.state.heading[0] - before == pytest.approx(0.5 * v * DT / radius)
    race = straight_race(0.3)  # below 0.5 m/s the car does not turn
    before = race.state.heading[0]
    race.step([[0, 0, 0, 1]])
    assert race.state.heading[0] == before


# ---------------------------------------------------------------------- walls
@pytest.mark.parametrize("name", bundled_tracks())
def test_no_tunnelling_at_top_speed(name):
    """Aimed straight at a wall at top speed, from many places, a car stops at it."""
    track = load_track(name)
    kd = track.kernel_data
    places = np.linspace(0, len(track.centerline) - 1, 24).astype(int)
    n = 2 * len(places)
    race = Race(track, n, max_frames=200)
    for k, i in enumerate(places):
        x, y = track.centerline[i]
        tx, ty = track.tangents[i]
        heading = math.atan2(ty, tx)
        race.place(2 * k, x, y, heading + math.pi / 2, 50.0)  # at the left wall
        race.place(2 * k + 1, x, y, heading - math.pi / 2, 50.0)  # at the right wall
    limit = track.width / 2 - P.CAR_RADIUS
    hit = np.zeros(n, dtype=bool)
    for _ in range(40):
        race.step(np.tile([True, False, False, False], (n, 1)))
        st = race.state
        for c in range(n):
            d, *_ = nearest_on_centerline(st.x[c], st.y[c], *kd[:4], kd[4], kd[6])
            assert d <= limit + 1e-9, f"car {c} left the road on {name}"
        hit |= race.lap.collisions > 0
    assert hit.all()
    # Held against the wall, head-on, the car never gets going again.
    assert np.all(race.state.speed <= 25.0 * DT + 1e-9)


def test_glancing_hit_costs_at_least_half_the_speed_and_slides():
    race = Race("oval", 1)
    x, y, heading = race.track.start
    race.place(0, x + 100.0, y, heading + math.radians(20), 40.0)
    before = None
    for _ in range(60):
        before = race.state
        race.step([[0, 0, 0, 0]])
        if race.lap.collisions[0]:
            break
    after = race.state
    assert race.lap.collisions[0] == 1
    assert 0.0 < after.speed[0] <= 0.5 * before.speed[0]
    assert after.x[0] > before.x[0]  # still moving along the wall


# ----------------------------------------------------------------------- laps
@pytest.mark.parametrize("name", bundled_tracks())
def test_baseline_driver_finishes_every_track(name):
    track = load_track(name)
    frames = []
    result = pursuit_lap(track, on_frame=lambda observation, keys: frames.append(observation))
    assert result.finished
    assert 20.0 <= result.lap_time_s <= 60.0
    assert (result.frames - 1) * DT < result.lap_time_s <= result.frames * DT  # sub-frame crossing
    assert result.progress == 1.0
    assert len(frames) == result.frames  # one policy call per simulated frame


def test_lap_needs_every_checkpoint_in_order():
    track = load_track("oval")
    race = Race(track, 1, max_frames=400)
    i = len(track.centerline) - 30  # 30 m before the line, checkpoints not passed
    x, y = track.centerline[i]
    race.place(0, x, y, track.start[2], 30.0)
    for _ in range(100):
        race.step([[1, 0, 0, 0]])
    assert not race.lap.finished[0]
    assert race.lap.progress[0] < 0.2


def test_reversing_over_the_line_is_not_a_lap():
    race = Race("oval", 1, max_frames=200)
    for _ in range(100):
        race.step([[0, 1, 0, 0]])
    for _ in range(99):
        race.step([[1, 0, 0, 0]])
    lap = race.lap
    assert not lap.finished[0] and lap.laps[0] == 0
    assert race.arc[0] > 0  # back over the line, forwards


def test_continuous_race_counts_laps_and_best_lap():
    track = load_track("oval")
    race = Race(track, 1, continuous=True)
    driver = PursuitDriver(track)
    while race.lap.laps[0] < 2:
        race.step(driver.keys(race))
    lap = race.lap
    assert lap.laps[0] == 2
    assert lap.best_lap_s[0] <= lap.lap_time_s[0] or lap.best_lap_s[0] < 30
    assert 15 < lap.best_lap_s[0] < 30


def test_stall_ends_a_lap_without_progress():
    race = Race("circuit", 1, max_frames=1000, stall_frames=50)
    while not race.all_done:
        race.step([[0, 0, 0, 0]])
    assert race.frame == 50
    result = race.results()[0]
    assert not result.finished and result.progress == 0.0


# ---------------------------------------------------------------- determinism
def test_a_car_alone_equals_the_same_car_in_a_batch_of_256():
    track = load_track("hairpins")
    rng = np.random.default_rng(7)
    frames = 600
    plan = rng.random((frames, 256, 4)) < np.array([0.7, 0.1, 0.3, 0.3])
    alone = Race(track, 1, max_frames=frames)
    batch = Race(track, 256, max_frames=frames)
    for f in range(frames):
        alone.step(plan[f, 100:101])
        batch.step(plan[f])
        assert alone._state[0].tobytes() == batch._state[100].tobytes()
        assert alone.observation.rays[0].tobytes() == batch.observation.rays[100].tobytes()
    assert alone.results()[0] == batch.results()[100]


def test_pursuit_batch_matches_single_cars():
    track = load_track("circuit")
    alone = pursuit_lap(track)
    race = Race(track, 64, max_frames=10_000, stall_frames=250)
    driver = PursuitDriver(track)
    while not race.all_done:
        race.step(driver.keys(race))
    assert all(r == alone for r in race.results())


def test_same_trajectory_in_another_process():
    here = trajectory_digest("rally", 3, 800)
    code = "from test_sim_core import trajectory_digest; print(trajectory_digest('rally', 3, 800))"
    tests = Path(__file__).resolve().parent  # this module and support.py, the repository above them
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tests), str(tests.parent)]))
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert there.stdout.strip() == here


# --------------------------------------------------------------------- tracks
def test_bundled_tracks_are_varied_and_valid():
    names = bundled_tracks()
    assert {"oval", "circuit", "hairpins", "rally"} <= set(names)
    for name in names:
        track = load_track(name)
        assert track.left_wall.shape == track.centerline.shape == track.right_wall.shape
        assert len(track.checkpoints) >= 2


def test_generator_is_seeded_and_valid():
    a, b, c = generate_track(11), generate_track(11), generate_track(12)
    assert np.array_equal(a.points, b.points)
    assert not np.array_equal(a.points, c.points)
    for seed in range(10):
        t = generate_track(seed)
        result = pursuit_lap(t)
        assert result.finished, f"baseline cannot finish random-{seed}"


def test_track_file_round_trip(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(load_track("oval").to_json() | {"name": "mine"}))
    track = load_track(str(path))
    assert track.name == "mine" and track.length == pytest.approx(load_track("oval").length)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[1, 2", "not valid JSON"),
        ({"name": "t", "points": [[0, 0], [100, 0], [100, 100], [0, 100]]}, "missing 'width'"),
        ({"name": "t", "width": 10}, "missing 'points'"),
        ({"name": "t", "width": None, "points": [[0, 0], [100, 0], [100, 100], [0, 100]]},
         "'width' must be a number"),
        ({"name": "t", "width": 10, "widht": 12, "points": [[0, 0], [100, 0], [100, 100], [0, 100]]},
         "unknown key.*'widht'"),
        (BIG_CIRCLE, "grid cells, over the limit of 8,000,000"),
        ({"name": "t", "width": 3, "points": [[0, 0], [100, 0], [100, 100], [0, 100]]}, "outside 6..40"),
        ({"name": "t", "width": 10, "points": [[0, 0], [100, 0]]}, "'points' must be a list of 4"),
        ({"name": "t", "width": 10, "points": [[0, 0], [100, "x"], [100, 100], [0, 100]]}, r"points\[1\]"),
        ({"name": "t", "width": 10, "points": [[0, 0], [1e300, 0], [100, 100], [0, 100]]}, "not finite or beyond"),
        (
            {"name": "eight", "width": 10,
             "points": [[0, 0], [100, 100], [200, 0], [100, -100], [0, 0.5], [-100, 100], [-200, 0], [-100, -100]]},
            "comes within",
        ),
        ({"name": "t", "width": 20, "points": [[0, 0], [30, 0], [30, 30], [0, 30]]}, "length|tighter"),
    ],
)
def test_bad_track_files_name_the_problem(tmp_path, doc, message):
    path = tmp_path / "bad.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(TrackError, match=message):
        load_track(str(path))


def test_unknown_track_name():
    with pytest.raises(TrackError, match="unknown track 'monza'.*oval"):
        load_track("monza")


def test_tight_curve_is_rejected():
    doc = {"name": "tight", "width": 30, "points": [[0, 0], [200, 0], [200, 40], [0, 40]]}
    with pytest.raises(TrackError, match="tighter than"):
        Track.from_json(doc)


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        (np.zeros((2, 4), dtype=bool), r"shape \(3, 4\)"),
        (np.zeros((3, 5), dtype=bool), r"shape \(3, 4\)"),
        (np.full((3, 4), 0.5), "booleans or 0/1"),
        ([["a", "b", "c", "d"]] * 3, "booleans or 0/1"),
    ],
)
def test_bad_controls_get_a_clear_error(controls, message):
    race = Race("oval", 3)
    with pytest.raises(ValueError, match=message):
        race.step(controls)


# ----------------------------------------------------------------------- CLIs
def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True)


def test_race_cli_json():
    out = run_cli("game.race", "--track", "hairpins", "--driver", "pursuit", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["finished"] and result["track"] == "hairpins"


def test_tracks_cli_lists_baselines_and_plots(tmp_path):
    out = run_cli("game.tracks", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert {r["name"] for r in rows} == set(bundled_tracks())
    assert all(r["baseline_lap_s"] for r in rows)
    png = tmp_path / "t.png"
    out = run_cli("game.tracks", "--plot", "rally", "--out", str(png))
    assert out.returncode == 0 and png.read_bytes()[:4] == b"\x89PNG"


def test_cli_unknown_track_is_one_clear_line():
    out = run_cli("game.race", "--track", "nowhere")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "unknown track 'nowhere'" in out.stderr


def test_bench_cli_reports_rates():
    out = run_cli("game.bench", "--json", "--seconds", "0.2")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["results"]
    assert [r["batch"] for r in rows] == [1, 64, 256]
    assert all(r["car_frames_per_s"] > 0 for r in rows)
