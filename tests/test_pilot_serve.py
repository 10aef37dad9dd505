"""The pilot service over real HTTP: ``python -m pilot.serve`` processes (uvicorn) on loopback, with small
ONNX models built by ``pilot_models``; answers are compared with the in-process ``PilotModel``."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from pilot_models import SIZE, frames, write_model
from prometheus_client.parser import text_string_to_metric_families
from support import answers, die_with_parent, free_port, poll, process_env

from pilot.client import PilotClient, PilotError
from pilot.runtime import PilotModel, keys_from

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MAX_BATCH = 16
MAX_BODY = 256 * 1024


class Server:
    """One ``python -m pilot.serve`` process on 127.0.0.1 serving the model at ``model``."""

    def __init__(self, model: Path, *args: str, token: str | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = process_env(RRP_TOKEN=token) if token else process_env()
        self.log = tempfile.NamedTemporaryFile(prefix="pilot-", suffix=".log", delete=False)  # noqa: SIM115
        cmd = [sys.executable, "-m", "pilot.serve", "--model", str(model), "--port", str(self.port),
               "--max-batch", str(MAX_BATCH), "--max-body-bytes", str(MAX_BODY), "--log-level", "warning", *args]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        poll(self._answers, 60, f"pilot.serve did not start:\n{self.log_text()}")

    def _answers(self) -> bool:
        return answers(f"{self.url}/healthz", self.proc, Path(self.log.name))

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def png_palette(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).quantize(colors=16).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG")
    return buffer.getvalue()


def batch(images: np.ndarray, speeds: np.ndarray) -> dict:
    return {"frames": [{"image": base64.b64encode(png(i)).decode(), "speed": float(s)}
                       for i, s in zip(images, speeds, strict=True)]}


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("models") / "v1", "v1", bias=0.1)


@pytest.fixture(scope="module")
def server(model_dir):
    s = Server(model_dir, "--watch-interval", "0")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def test_probes_model_card_and_openapi(http, model_dir):
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"ready": True, "model_version": "v1", "receiving": 0, "inflight": 0}
    info = http.get("/v1/model").json()
    assert info["model_version"] == "v1" and info["input"] == {"width": SIZE[0], "height": SIZE[1], "mode": "RGB"}
    assert info["card"] == json.loads((model_dir / "model.json").read_text()) and info["last_error"] is None
    spec = http.get("/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "image/png", "image/jpeg"} <= set(body)
    assert body["application/json"]["schema"]["properties"]["frames"]["items"]["required"] == ["image", "speed"]


def test_batch_and_single_answers_equal_the_in_process_model(http, model_dir):
    model = PilotModel.load(model_dir)
    images, speeds = frames(MAX_BATCH, seed=3)
    expected = model.predict(images, speeds)
    keys = keys_from(expected.steering, expected.target_speed, speeds)
    answer = http.post("/v1/predict", json=batch(images, speeds))
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["model_version"] == "v1"
    got = data["predictions"]
    assert np.array_equal(np.array([p["steering"] for p in got], np.float32), expected.steering)
    assert np.array_equal(np.array([p["target_speed"] for p in got], np.float32), expected.target_speed)
    assert [[p["keys"][k] for k in ("forward", "back", "left", "right")] for p in got] == keys.tolist()
    assert len({tuple(k) for k in keys.tolist()}) > 1, "the frames should not all give the same keys"

    # one frame as the raw body, the way a car posts it
    raw = http.post("/v1/predict", params={"speed": float(speeds[5])}, content=png(images[5]),
                    headers={"content-type": "image/png"})
    assert raw.status_code == 200, raw.text
    one = model.predict(images[5:6], speeds[5:6])  # batch of one: onnxruntime may round differently
    (single,) = raw.json()["predictions"]
    assert raw.json()["model_version"] == "v1"
    assert (np.float32(single["steering"]), np.float32(single["target_speed"])) == (one.steering[0],
                                                                                   one.target_speed[0])


def test_jpeg_is_accepted(http, model_dir):
    images, speeds = frames(1, seed=4)
    buffer = io.BytesIO()
    Image.fromarray(images[0]).save(buffer, format="JPEG", quality=95)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))[None]
    expected = PilotModel.load(model_dir).predict(decoded, speeds)
    answer = http.post("/v1/predict", params={"speed": float(speeds[0])}, content=buffer.getvalue(),
                       headers={"content-type": "image/jpeg"})
    assert answer.status_code == 200, answer.text
    assert np.float32(answer.json()["predictions"][0]["steering"]) == expected.steering[0]


def test_client_has_the_in_process_interface_and_answers(server, model_dir):
    model = PilotModel.load(model_dir)
    images, speeds = frames(5, seed=9)
    with PilotClient(server.url) as client:
        assert (client.version, client.input_size) == (model.version, model.input_size)
        got, expected = client.predict(images, speeds), model.predict(images, speeds)
        assert np.array_equal(got.steering, expected.steering)
        assert np.array_equal(got.target_speed, expected.target_speed)
        with pytest.raises(PilotError, match=r"frames\[0\]\.image: 16x16 image, this model takes 32x24"):
            client.predict(np.zeros((1, 16, 16, 3), np.uint8), [1.0])


def _one(image: bytes = b"", speed: float | str = 1.0) -> dict:
    return {"frames": [{"image": base64.b64encode(image).decode(), "speed": speed}]}


GOOD = png(frames(1)[0][0])


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"json": _one(b"GIF89a not a png")}, 422, "frames[0].image: not a decodable PNG or JPEG image"),
        ({"json": _one(png(np.zeros((48, 64, 3), np.uint8)))}, 422,
         "frames[0].image: 64x48 image, this model takes 32x24"),
        ({"json": _one(png(frames(1)[0][0][:, :, 0]))}, 422,
         "frames[0].image: grayscale image (mode L), this model takes RGB (mode RGB, GET /v1/model)"),
        ({"json": _one(png(np.dstack([frames(1)[0][0], np.full((24, 32), 255, np.uint8)])))}, 422,
         "frames[0].image: RGBA image (mode RGBA), this model takes RGB"),
        ({"json": _one(png_palette(frames(1)[0][0]))}, 422, "frames[0].image: palette image (mode P), this model"),
        ({"content": jpeg(frames(1)[0][0][:, :, 1]), "headers": {"content-type": "image/jpeg"},
          "params": {"speed": 3}}, 422, "body: grayscale image (mode L), this model takes RGB"),
        ({"json": {"frames": [{"image": "***", "speed": 1.0}]}}, 422, "frames[0].image: not valid base64"),
        ({"json": {"frames": [{"image": "é", "speed": 1}]}}, 422, "frames[0].image: not valid base64"),
        ({"content": '{"frames": [{"image": "", "speed": NaN}]}', "headers": {"content-type": "application/json"}},
         422, "frames[0].speed: Input should be a finite number"),
        ({"json": _one(GOOD, 80.0)}, 422, "frames[0].speed: Input should be less than or equal to 50"),
        ({"json": {"frames": []}}, 422, "frames: List should have at least 1 item"),
        ({"json": {"frames": [{"image": "", "speed": 1, "steer": 0}]}}, 422, "frames[0].steer: Extra inputs"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, "body: not valid JSON"),
        ({"content": GOOD, "headers": {"content-type": "image/png"}, "params": {"speed": "nan"}}, 422,
         "speed: Input should be a finite number"),
        ({"content": GOOD, "headers": {"content-type": "image/png"}}, 422, "speed: query parameter required"),
        ({"content": b"\x89PNG\r\n\x1a\n truncated", "headers": {"content-type": "image/png"},
          "params": {"speed": 3}}, 422, "body: not a decodable PNG or JPEG image"),
        ({"content": GOOD, "headers": {"content-type": "image/gif"}}, 415, "Content-Type: image/gif: send"),
        ({"json": {"frames": [{"image": "", "speed": 1}] * (MAX_BATCH + 1)}}, 413,
         f"frames: batch of {MAX_BATCH + 1} exceeds the limit of {MAX_BATCH}"),
        ({"content": b"x" * (MAX_BODY + 1), "headers": {"content-type": "image/png"}}, 413,
         f"body: request body of {MAX_BODY + 1} bytes exceeds the limit of {MAX_BODY} bytes"),
    ],
    ids=["not-an-image", "wrong-size", "grayscale", "rgba", "palette", "grayscale-jpeg-raw",
         "bad-base64", "non-ascii-base64", "nan-speed", "speed-out-of-range",
         "empty-batch",
         "unknown-field", "bad-json", "nan-speed-raw", "no-speed-raw", "truncated-png", "gif", "batch-too-large",
         "body-too-large"],
)
def test_bad_requests_are_refused_with_a_message(http, kwargs, status, message):
    answer = http.post("/v1/predict", **kwargs)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert message in body["detail"], body
    assert body["model_version"] == "v1"


def raw_predict(port: int, rest: bytes, timeout: float) -> tuple[str, str]:
    """Send ``POST /v1/predict`` headers plus ``rest`` over a bare socket (what httpx cannot send: a
    declared length never met, a body that stops); the answer's head and JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + rest)
        answer = b""
        while not answer.endswith(b"}") and (chunk := s.recv(65536)):
            answer += chunk
    head, _, body = answer.decode().partition("\r\n\r\n")
    return head, body


def test_a_declared_huge_body_is_refused_before_it_is_sent(server):
    """Headers only, announcing a gigabyte: the 413 comes back without a byte of the body sent."""
    head, body = raw_predict(server.port, b"Content-Length: 1000000000\r\n\r\n", timeout=10)
    assert head.startswith("HTTP/1.1 413"), head
    limit = f"request body of 1000000000 bytes exceeds the limit of {MAX_BODY} bytes"
    assert json.loads(body)["detail"] == f"body: {limit}"


def test_a_chunked_upload_is_cut_at_the_limit(http):
    def chunks():
        for _ in range(MAX_BODY // 8192 + 2):
            yield b"x" * 8192

    answer = http.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert answer.status_code == 413
    assert answer.json()["detail"] == f"body: request body exceeds the limit of {MAX_BODY} bytes"


def test_metrics_move(http):
    before = http.get("/metrics").text
    images, speeds = frames(3, seed=5)
    assert http.post("/v1/predict", json=batch(images, speeds)).status_code == 200
    assert http.post("/v1/predict", json=_one(b"nope")).status_code == 422
    after = http.get("/metrics").text
    assert metric(after, "rrp_pilot_predictions_total") - metric(before, "rrp_pilot_predictions_total") == 3
    assert metric(after, "rrp_pilot_predict_seconds_count") - metric(before, "rrp_pilot_predict_seconds_count") == 1
    assert metric(after, "rrp_pilot_predict_seconds_sum") > metric(before, "rrp_pilot_predict_seconds_sum")
    bad = {"reason": "bad_image"}
    assert metric(after, "rrp_pilot_errors_total", **bad) - metric(before, "rrp_pilot_errors_total", **bad) == 1
    assert metric(after, "rrp_pilot_model_info", version="v1") == 1


def test_uploads_that_never_end_take_no_slot_and_are_cut_on_their_own(model_dir):
    """As many never-ending chunked uploads as there are in-flight slots (16 by default): every other caller
    is still answered, because a slot is taken only once a body is complete, and each trickle is cut with
    408 for its own slowness (the 503 for a full house is servicekit's Capacity, tests/test_servicekit.py)."""
    server = Server(model_dir, "--watch-interval", "0")
    images, speeds = frames(1)
    slow = [socket.create_connection(("127.0.0.1", server.port), timeout=60) for _ in range(16)]
    try:
        for s in slow:
            s.sendall(b"POST /v1/predict?speed=1 HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n1\r\n\x89\r\n")
        with httpx.Client(base_url=server.url, timeout=30) as http:
            poll(lambda: http.get("/readyz").json()["receiving"] == 16, 30, "16 uploads under way")
            answer = http.post("/v1/predict", json=batch(images, speeds))
            assert answer.status_code == 200, answer.text
            for s in slow:
                reply = b"".join(iter(lambda s=s: s.recv(4096), b""))  # the whole answer, then the server closes
                assert reply.startswith(b"HTTP/1.1 408") and b"slower than" in reply, reply
            assert metric(http.get("/metrics").text, "rrp_pilot_errors_total", reason="body_timeout") == 16
    finally:
        for s in slow:
            s.close()
        server.stop()


def test_a_body_that_never_finishes_is_cut_with_408_and_frees_its_slot(model_dir):
    """A client that stops sending mid-body would hold an in-flight slot forever: the body deadline
    (0.5 s here) answers 408, and the only slot is free again for the next request."""
    server = Server(model_dir, "--watch-interval", "0", "--max-inflight", "1", "--body-timeout", "0.5")
    images, speeds = frames(1)
    try:
        head, body = raw_predict(server.port, b"Content-Length: 1000\r\n\r\n{\"frames\": [", timeout=30)
        assert head.startswith("HTTP/1.1 408"), head
        assert json.loads(body)["detail"] == "body: request body not received within 0.5 s"
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.post("/v1/predict", json=batch(images, speeds)).status_code == 200
            assert metric(http.get("/metrics").text, "rrp_pilot_errors_total", reason="body_timeout") == 1
    finally:
        server.stop()


def test_headers_that_never_finish_are_cut_with_408(model_dir):
    server = Server(model_dir, "--watch-interval", "0", "--header-timeout", "0.5")
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Ty")
            assert s.recv(4096).startswith(b"HTTP/1.1 408")
    finally:
        server.stop()


# --- hot reload -------------------------------------------------------------------------------------


def publish(link: Path, folder: Path) -> None:
    """Point ``link`` at ``folder`` atomically (a new symlink renamed over the old one)."""
    tmp = link.with_name(link.name + ".new")
    tmp.symlink_to(folder.name)
    os.replace(tmp, link)


def test_a_new_model_is_picked_up_while_requests_flow_and_none_is_lost(tmp_path):
    write_model(tmp_path / "v1", "v1", bias=0.1)
    v2 = write_model(tmp_path / "v2", "v2", bias=0.3)
    link = tmp_path / "current"
    publish(link, tmp_path / "v1")
    server = Server(link, "--watch-interval", "0.1")
    images, speeds = frames(4, seed=1)
    expected_v2 = PilotModel.load(v2).predict(images, speeds)
    answers: list[httpx.Response] = []
    stop = threading.Event()

    def drive():
        with httpx.Client(base_url=server.url, timeout=30) as c:
            while not stop.is_set():
                answers.append(c.post("/v1/predict", json=batch(images, speeds)))

    threads = [threading.Thread(target=drive) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        poll(lambda: len(answers) >= 10, 60, "no answers")
        publish(link, tmp_path / "v2")
        poll(lambda: answers and answers[-1].json()["model_version"] == "v2", 60, "v2 never served")
        seen = len(answers)
        poll(lambda: len(answers) >= seen + 10, 60, "no answers after the switch")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        server.stop()
    assert all(a.status_code == 200 for a in answers), {a.status_code for a in answers}
    versions = [a.json()["model_version"] for a in answers]
    assert set(versions) == {"v1", "v2"}
    # once v2 answers, v1 never does again (the three clients' answers are appended in order of arrival)
    first_v2 = versions.index("v2")
    assert versions[first_v2:].count("v1") <= len(threads) - 1
    last = answers[-1].json()["predictions"]
    assert np.array_equal(np.array([p["target_speed"] for p in last], np.float32), expected_v2.target_speed)


def test_an_invalid_new_file_keeps_the_old_model_and_says_why(tmp_path):
    folder = write_model(tmp_path / "m", "v1", bias=0.1)
    server = Server(folder, "--watch-interval", "0.1", token="s3cret")
    images, speeds = frames(2, seed=2)
    auth = {"authorization": "Bearer s3cret"}
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            before = http.post("/v1/predict", json=batch(images, speeds)).json()
            (folder / "model.onnx").write_bytes(b"this is not an onnx graph")
            # the watcher tries the broken file and reports it; the old model still answers
            poll(lambda: http.get("/v1/model").json()["last_error"], 60, "broken file never noticed")
            info = http.get("/v1/model").json()
            assert info["model_version"] == "v1" and "model.onnx" in info["last_error"]
            assert http.post("/v1/predict", json=batch(images, speeds)).json() == before
            assert http.get("/readyz").status_code == 200

            refused = http.post("/v1/reload")
            assert refused.status_code == 401 and "bearer token" in refused.json()["detail"]
            failed = http.post("/v1/reload", headers=auth)
            assert failed.status_code == 422
            assert "not loaded" in failed.json()["detail"] and "still serving v1" in failed.json()["detail"]
            assert failed.json()["model_version"] == "v1"
            assert metric(http.get("/metrics").text, "rrp_pilot_reloads_total", result="failed") >= 2

            # a card that lies about the input is caught too (written before the graph, so every
            # load the watcher may try in between sees it)
            v2 = write_model(tmp_path / "v2", "v2", bias=0.3)
            card = json.loads((v2 / "model.json").read_text())
            (folder / "model.json").write_text(json.dumps({**card, "input": {"width": "wide"}}))
            (folder / "model.onnx").write_bytes((v2 / "model.onnx").read_bytes())
            assert "model card" in http.post("/v1/reload", headers=auth).json()["detail"]

            (folder / "model.json").write_text(json.dumps(card))
            ok = http.post("/v1/reload", headers=auth)
            assert ok.status_code == 200 and ok.json() == {"model_version": "v2", "reloaded": True}
            assert http.post("/v1/predict", json=batch(images, speeds)).json()["model_version"] == "v2"
            assert http.get("/v1/model").json()["last_error"] is None
    finally:
        server.stop()


def test_not_ready_until_a_model_appears(tmp_path):
    folder = tmp_path / "later"
    server = Server(folder, "--watch-interval", "0.1")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            ready = http.get("/readyz")
            assert ready.status_code == 503 and "no ONNX model" in ready.json()["reason"]
            images, speeds = frames(1)
            refused = http.post("/v1/predict", json=batch(images, speeds))
            assert refused.status_code == 503 and refused.headers["retry-after"]
            assert "no model loaded" in refused.json()["detail"]
            with pytest.raises(PilotError, match="no model loaded"):
                PilotClient(server.url)
            write_model(folder, "v1")
            poll(lambda: http.get("/readyz").status_code == 200, 60, "model never loaded")
            assert http.post("/v1/predict", json=batch(images, speeds)).json()["model_version"] == "v1"
    finally:
        server.stop()


def test_cli_refuses_bad_settings_with_one_line():
    env = process_env()
    proc = subprocess.run([sys.executable, "-m", "pilot.serve"], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "python -m pilot.serve: --model (or RRP_MODEL) is required"
    proc = subprocess.run([sys.executable, "-m", "pilot.serve", "--model", "m"], cwd=REPO,
                          env={**env, "RRP_MAX_BATCH": "many"}, capture_output=True, text=True)
    assert proc.returncode != 0 and proc.stderr.strip().endswith("RRP_MAX_BATCH must be an integer, got 'many'")


DRIVE_BOTH = """
import json, sys
from pilot.drive import drive_lap, open_pilot
from pilot.tracks import track_by_name
from game.scene import UrsinaRenderer

local, served = open_pilot(sys.argv[1]), open_pilot(sys.argv[2])
assert type(served).__name__ == "PilotClient" and served.input_size == local.input_size
track = track_by_name("oval")
renderer = UrsinaRenderer(track, headless=True, frame_size=local.input_size, hud=False)
laps = [drive_lap(renderer, track, pilot, delay=1, max_frames=60).to_dict() for pilot in (local, served)]
print(json.dumps(laps))
"""


def test_pilot_drive_from_the_url_drives_exactly_like_the_file(server, model_dir):
    """`python -m pilot.drive URL` goes through PilotClient: the same frames give the same keys, so the
    lap (up to 60 lock-step frames of real offscreen rendering, in a child process: one renderer per process)
    is identical to driving from the model file."""
    env = process_env()
    proc = subprocess.run([sys.executable, "-c", DRIVE_BOTH, str(model_dir), server.url], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    local, served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert local == served
    assert local["distance_m"] > 0, local
