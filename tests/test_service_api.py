"""The evaluator service over real HTTP: a ``python -m evaluator`` process on loopback, no mocks."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import BIG_CIRCLE, start_evaluators
from support import SERVICE_TASK as TASK
from support import service_body as body
from support import service_genomes as genomes

from evaluator import ControllerSpec, EvaluationTask, Perturbation, TrackData
from game import DEFAULT_TRACK, bundled_tracks, load_track

pytestmark = pytest.mark.slow

MAX_BATCH = 8
N_GENES = TASK.controller.genome_length()


@pytest.fixture(scope="module")
def ev():
    (evaluator,) = start_evaluators(1, args=("--max-batch", str(MAX_BATCH), "--max-frames", "15000"))
    yield evaluator
    evaluator.stop()


@pytest.fixture(scope="module")
def client(ev):
    with httpx.Client(base_url=ev.url, timeout=120) as c:
        yield c


def test_health_ready_info_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok", "workers_ready": 1, "workers_replaced_frozen": 0}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    info = client.get("/v1/info").json()
    assert info["tracks"] == bundled_tracks()
    assert info["controller_kinds"] == ["mlp", "schedule"]
    assert info["capacity"] == 2 and info["workers"] == 1 and info["max_batch"] == MAX_BATCH
    assert info["version"] and info["auth"] is False
    spec = client.get("/openapi.json").json()
    assert "/v1/evaluations" in spec["paths"]
    assert {"EvaluationRequest", "EvaluationResponse", "EvaluationTask"} <= set(spec["components"]["schemas"])
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "task",
    [
        TASK,
        EvaluationTask(track="oval", max_frames=250, controller=ControllerSpec(kind="schedule")),
        EvaluationTask(track="hairpins", max_frames=200, stall_frames=0, controller=ControllerSpec(hidden=(6, 4))),
        EvaluationTask(track="hairpins", max_frames=300, perturbation=Perturbation(
            seed=9, ray_noise=0.05, latency_frames=2, start_offset_m=1.0, start_heading_deg=3.0)),
    ],
    ids=["mlp", "schedule", "two-layers-no-stall", "perturbed"],
)
def test_same_answers_as_in_process(client, task):
    gs = genomes(5, task.controller.genome_length(), seed=11)
    resp = client.post("/v1/evaluations", json=body(task, gs))
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["results"] == [r.to_dict() for r in task.evaluate_batch(gs)]
    assert data["evaluator"].endswith(f":{client.base_url.port}")
    assert data["elapsed_s"] >= 0


def test_genomes_driven_in_several_races(client):
    gs = genomes(5, seed=13)
    resp = client.post("/v1/evaluations", json={**body(TASK, gs), "races": [1, 3, 1]})
    assert resp.status_code == 200, resp.text
    expected = TASK.evaluate_batch(gs[:1]) + TASK.evaluate_batch(gs[1:4]) + TASK.evaluate_batch(gs[4:])
    assert resp.json()["results"] == [r.to_dict() for r in expected]


def test_inline_track_drives_like_the_bundled_one(client):
    track = load_track("oval")
    inline = TrackData(name="oval-copy", width=track.width, points=tuple(map(tuple, track.points.tolist())))
    gs = genomes(3)
    by_name = client.post("/v1/evaluations", json=body(TASK.model_copy(update={"track": "oval"}), gs)).json()
    by_data = client.post("/v1/evaluations", json=body(TASK.model_copy(update={"track": inline}), gs)).json()
    assert by_data["results"] == by_name["results"]


def _task_json(**changes) -> dict:
    doc = TASK.model_dump(mode="json")
    doc.update(changes)
    return doc


def raw_genomes(literal: str) -> str:
    return '{"task": ' + json.dumps(_task_json()) + ', "genomes": ' + literal + "}"


FIGURE_EIGHT = {"name": "eight", "width": 10, "points": [[0, 0], [100, 100], [100, 0], [0, 100]]}
GOOD = json.dumps(genomes(1)[0])

# (id, raw JSON body, status, field named in the message, words of the message)
CASES = [
    (
        "genome-length",
        json.dumps({"task": _task_json(), "genomes": [genomes(1)[0], genomes(1)[0][:-1]]}),
        422, "genomes[1]", f"expected {N_GENES} floats",
    ),
    ("nan", raw_genomes('[[1.0, NaN]]'), 422, "genomes[0][1]", "finite"),
    ("infinity", raw_genomes('[[-Infinity]]'), 422, "genomes[0][0]", "finite"),
    ("overflow-to-inf", raw_genomes('[[1e999]]'), 422, "genomes[0][0]", "finite"),
    ("nan-string", raw_genomes('[["nan"]]'), 422, "genomes[0][0]", "finite"),
    ("unknown-track", json.dumps({"task": _task_json(track="nowhere"), "genomes": [[0.0]]}),
     422, "task.track", "unknown track 'nowhere'"),
    ("path-track-absolute", json.dumps({"task": _task_json(track="/etc/passwd"), "genomes": [[0.0]]}),
     422, "task.track", "bundled name"),
    ("path-track-real-file", json.dumps({"task": _task_json(track="game/tracks/oval.json"), "genomes": [[0.0]]}),
     422, "task.track", "unknown track"),
    ("inline-track-invalid", json.dumps({"task": _task_json(track=FIGURE_EIGHT), "genomes": json.loads(f"[{GOOD}]")}),
     422, "task.track", "invalid track"),
    ("inline-track-too-few-points",
     json.dumps({"task": _task_json(track={**FIGURE_EIGHT, "points": [[0, 0], [1, 1]]}), "genomes": [[0.0]]}),
     422, "task.track.points", "at least 4"),
    ("max-frames-zero", json.dumps({"task": _task_json(max_frames=0), "genomes": [[0.0]]}),
     422, "task.max_frames", "greater than or equal to 1"),
    ("max-frames-over-limit", json.dumps({"task": _task_json(max_frames=20000), "genomes": json.loads(f"[{GOOD}]")}),
     422, "task.max_frames", "limit of 15000"),
    ("unknown-controller", json.dumps({"task": _task_json(controller={"kind": "rnn"}), "genomes": [[0.0]]}),
     422, "task.controller.kind", "'mlp' or 'schedule'"),
    ("batch-too-large", json.dumps({"task": _task_json(), "genomes": genomes(MAX_BATCH + 1)}),
     413, "genomes", f"limit of {MAX_BATCH}"),
    ("empty-batch", json.dumps({"task": _task_json(), "genomes": []}), 422, "genomes", "at least 1"),
    ("genomes-not-a-list", json.dumps({"task": _task_json(), "genomes": "abc"}), 422, "genomes", "valid array"),
    ("missing-task", json.dumps({"genomes": [[0.0]]}), 422, "task", "Field required"),
    ("extra-field", json.dumps({"task": _task_json(), "genomes": [[0.0]], "code": "import os"}),
     422, "code", "Extra inputs are not permitted"),
    ("not-json", '{"task": ', 422, "body", "not valid JSON"),
    ("perturbation-latency-negative",
     json.dumps({"task": _task_json(perturbation={"latency_frames": -1}), "genomes": json.loads(f"[{GOOD}]")}),
     422, "task.perturbation.latency_frames", "greater than or equal to 0"),
    ("perturbation-noise-too-large",
     json.dumps({"task": _task_json(perturbation={"ray_noise": 2.0}), "genomes": json.loads(f"[{GOOD}]")}),
     422, "task.perturbation.ray_noise", "less than or equal to 1"),
    ("perturbation-unknown-field",
     json.dumps({"task": _task_json(perturbation={"wind": 3}), "genomes": json.loads(f"[{GOOD}]")}),
     422, "task.perturbation.wind", "Extra inputs are not permitted"),
    ("races-not-adding-up", json.dumps({"task": _task_json(), "genomes": genomes(3), "races": [1, 1]}),
     422, "races", "add up to the 3 genomes"),
    ("race-of-zero", json.dumps({"task": _task_json(), "genomes": genomes(2), "races": [0, 2]}),
     422, "races", ">= 1"),
]


@pytest.mark.parametrize("raw, status, field, words", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation(client, raw, status, field, words):
    resp = client.post("/v1/evaluations", content=raw, headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    data = resp.json()
    assert field in [e["field"] for e in data["errors"]], data
    assert words in data["detail"], data
    assert f"{field}: " in data["detail"], data


def test_body_of_50_mb_is_refused_and_the_service_stays_up(ev, client):
    rss_before = ev.rss()
    big = b"[" + b"0.5," * (50 * 1024 * 1024 // 4) + b"0]"
    assert len(big) > 50 * 1024 * 1024
    # declared length: refused before a byte of the body is read
    resp = client.post("/v1/evaluations", content=big, headers={"content-type": "application/json"})
    assert resp.status_code == 413
    assert resp.json()["errors"][0]["field"] == "body" and "exceeds the limit" in resp.json()["detail"]

    # no declared length (chunked upload): refused as soon as the limit is crossed
    def chunks():
        view = memoryview(big)
        for i in range(0, len(big), 1 << 20):
            yield bytes(view[i : i + (1 << 20)])

    resp = client.post("/v1/evaluations", content=chunks(), headers={"content-type": "application/json"})
    assert resp.status_code == 413
    assert "exceeds the limit" in resp.json()["detail"]

    assert ev.proc.poll() is None
    assert client.get("/healthz").status_code == 200
    ok = client.post("/v1/evaluations", json=body())
    assert ok.status_code == 200
    # the 50 MB never got buffered: the service grew far less than the body's size
    assert ev.rss() - rss_before < 30 * 1024 * 1024


def test_metrics_count_evaluations_laps_errors_and_latency(client):
    client.post("/v1/evaluations", json=body(gs=genomes(3)))
    client.post("/v1/evaluations", json={"task": _task_json(track="nowhere"), "genomes": [[0.0]]})
    resp = client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("rrp_evaluations_total", ())] >= 1
    assert samples[("rrp_laps_simulated_total", ())] >= 3
    assert samples[("rrp_errors_total", (("reason", "invalid"),))] >= 1
    assert samples[("rrp_busy_workers", ())] == 0
    assert samples[("rrp_workers", ())] == 1
    assert samples[("rrp_evaluation_seconds_count", ())] >= 1
    assert ("rrp_evaluation_seconds_bucket", (("le", "+Inf"),)) in samples


def test_bearer_token_guards_the_evaluation_route():
    (ev,) = start_evaluators(1, token="s3cret-token")
    try:
        with httpx.Client(base_url=ev.url, timeout=60) as c:
            missing = c.post("/v1/evaluations", json=body())
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"] == "Bearer"
            assert missing.json()["errors"][0]["field"] == "Authorization"
            wrong = c.post("/v1/evaluations", json=body(), headers={"authorization": "Bearer nope"})
            assert wrong.status_code == 401
            right = c.post("/v1/evaluations", json=body(), headers={"authorization": "Bearer s3cret-token"})
            assert right.status_code == 200
            assert c.get("/v1/info").json()["auth"] is True  # probes stay open
            assert c.get("/readyz").status_code == 200
    finally:
        ev.stop()


def test_over_capacity_answers_503_with_retry_after():
    (ev,) = start_evaluators(1, max_inflight=1)
    try:
        with httpx.Client(base_url=ev.url, timeout=120) as c:
            # freeze the only worker: the first request is then certainly still in flight
            workers = ev.workers()
            assert workers
            for w in workers:
                w.send_signal(signal.SIGSTOP)
            first: dict = {}
            thread = threading.Thread(target=lambda: first.update(r=c.post("/v1/evaluations", json=body())))
            thread.start()
            with httpx.Client(base_url=ev.url, timeout=30) as probe:
                deadline = time.monotonic() + 60
                while probe.get("/readyz").json()["inflight"] < 1:
                    assert time.monotonic() < deadline
                second = probe.post("/v1/evaluations", json=body())
            assert second.status_code == 503
            assert second.headers["retry-after"] == "1"
            assert "capacity 1" in second.json()["detail"]
            for w in workers:
                w.send_signal(signal.SIGCONT)
            thread.join()
            assert first["r"].status_code == 200
            assert c.post("/v1/evaluations", json=body()).status_code == 200
    finally:
        ev.stop()


def test_a_worker_dying_mid_request_gives_503_and_is_replaced():
    (ev,) = start_evaluators(1)
    try:
        with httpx.Client(base_url=ev.url, timeout=120) as c:
            (worker,) = ev.workers()
            worker.send_signal(signal.SIGSTOP)  # keeps the request in the worker until it is killed
            first: dict = {}
            thread = threading.Thread(target=lambda: first.update(r=c.post("/v1/evaluations", json=body())))
            thread.start()
            with httpx.Client(base_url=ev.url, timeout=30) as probe:
                deadline = time.monotonic() + 60
                while probe.get("/metrics").text.find("rrp_busy_workers 1.0") < 0:
                    assert time.monotonic() < deadline
                worker.send_signal(signal.SIGKILL)
                thread.join()
                resp = first["r"]
                assert resp.status_code == 503 and resp.headers["retry-after"] == "1", resp.text
                assert "worker process died" in resp.json()["detail"]
                # a replacement worker takes the next requests
                for _ in range(600):
                    resp = probe.post("/v1/evaluations", json=body())
                    if resp.status_code != 503:
                        break
                    assert time.monotonic() < deadline + 60
                assert resp.status_code == 200, resp.text
                assert resp.json()["results"] == [r.to_dict() for r in TASK.evaluate_batch(genomes(2))]
            assert [w.pid for w in ev.workers()] != [worker.pid]
    finally:
        ev.stop()


SQUARE = [[0, 0], [300, 0], [300, 300], [0, 300]]


@pytest.mark.parametrize(("track_raw", "field"), [
    ('{"name": "n", "width": NaN, "points": ' + json.dumps(SQUARE) + "}", "task.track.width"),
    ('{"name": "n", "width": 12, "points": [[0, 0], [NaN, 0], [300, 300], [0, 300]]}', "task.track.points[1][0]"),
    ('{"name": "n", "width": Infinity, "points": ' + json.dumps(SQUARE) + "}", "task.track.width"),
], ids=["nan-width", "nan-point", "infinite-width"])
def test_nan_in_an_inline_track_is_a_422(client, track_raw, field):
    task = json.dumps(_task_json()).replace(f'"{DEFAULT_TRACK}"', track_raw)
    resp = client.post("/v1/evaluations", content='{"task": ' + task + ', "genomes": [' + GOOD + "]}",
                       headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert field in [e["field"] for e in resp.json()["errors"]] and "finite" in resp.json()["detail"]


def test_a_track_too_big_to_precompute_is_a_422_naming_the_limit(client):
    resp = client.post("/v1/evaluations", json={"task": _task_json(track=BIG_CIRCLE), "genomes": [genomes(1)[0]]})
    assert resp.status_code == 422, resp.text
    assert "grid cells" in resp.json()["detail"] and "8,000,000" in resp.json()["detail"]
