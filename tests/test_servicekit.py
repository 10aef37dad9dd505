"""The services' kit on its own: a small app behind the kit's guards on a real uvicorn server on loopback."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from fastapi import FastAPI
from support import poll

from servicekit.errors import ServiceError, error_response
from servicekit.guards import Admission, BodyPolicy, Capacity, bearer_ok
from servicekit.launch import port_problem, uvicorn_config
from servicekit.settings import Option, SettingsError, at_least, build_parser, common, values


class KitServer:
    """One route behind Admission that holds its Capacity slot until ``release`` is set."""

    def __init__(self) -> None:
        import uvicorn

        self.release = threading.Event()
        self.capacity = Capacity(1, lambda n: f"{n} in flight")
        app = FastAPI()

        @app.exception_handler(ServiceError)
        async def _refused(_, exc: ServiceError):
            return error_response(exc.status, exc.errors, exc.headers)

        @app.post("/v1/hold")
        async def hold():
            with self.capacity.slot():
                while not self.release.is_set():
                    await asyncio.sleep(0.01)
                return {"held": True}

        guarded = Admission(app, BodyPolicy(1024, 5.0), token="s3cret")
        self.server = uvicorn.Server(uvicorn_config(guarded, host="127.0.0.1", port=0, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        poll(lambda: self.server.started, 30, "kit server started")
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self.release.set()
        self.server.should_exit = True
        self.thread.join(10)


def test_capacity_refuses_at_once_beyond_its_limit_and_errors_share_one_format():
    kit = KitServer()
    auth = {"Authorization": "Bearer s3cret"}
    result = {}
    first = threading.Thread(target=lambda: result.setdefault("r", httpx.post(f"{kit.url}/v1/hold", headers=auth,
                                                                                timeout=30)))
    try:
        first.start()
        poll(lambda: kit.capacity.inflight == 1, 30, "first request holding the slot")
        refused = httpx.post(f"{kit.url}/v1/hold", headers=auth, timeout=30)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json() == {"detail": "1 in flight", "errors": [{"field": "", "message": "1 in flight"}]}
        wrong = httpx.post(f"{kit.url}/v1/hold", headers={"Authorization": "Bearer s3cre"}, timeout=30)
        assert wrong.status_code == 401 and wrong.json()["errors"][0]["field"] == "Authorization"
        big = httpx.post(f"{kit.url}/v1/hold", headers=auth, content=b"x" * 2000, timeout=30)
        assert big.status_code == 413 and big.json()["errors"][0]["field"] == "body"
        kit.release.set()
        first.join(30)
        assert result["r"].status_code == 200
    finally:
        kit.stop()


def test_bearer_check():
    assert bearer_ok(None, None) and bearer_ok("Bearer t", "t") and bearer_ok(b"bearer  t ", "t")
    assert not bearer_ok(None, "t") and not bearer_ok("Bearer u", "t") and not bearer_ok("Basic t", "t")
    assert not bearer_ok("Bearer é", "t")


def test_one_declaration_gives_the_flag_and_the_variable(capsys):
    options = [*common(port=8300, max_body_bytes=4096, body_timeout_s=30.0),
               Option("max_batch", int, 64, "frames per request", at_least(1))]
    assert [(o.flag, o.env) for o in options if o.name in ("body_timeout_s", "max_batch")] == [
        ("--body-timeout", "RRP_BODY_TIMEOUT"), ("--max-batch", "RRP_MAX_BATCH")]
    parser = build_parser("svc", "test", options, environ={"RRP_MAX_BATCH": "8", "RRP_PORT": "9000"})
    got = values(parser.parse_args(["--port", "9001"]), options)
    assert (got["max_batch"], got["port"], got["body_timeout_s"]) == (8, 9001, 30.0)
    with pytest.raises(SettingsError, match=r"--port \(RRP_PORT\) must be 0..65535, got 70000"):
        values(parser.parse_args(["--port", "70000"]), options)
    with pytest.raises(SystemExit) as exit_:
        build_parser("svc", "test", options, environ={"RRP_MAX_BATCH": "many"})
    assert exit_.value.code == 2 and capsys.readouterr().err == "svc: RRP_MAX_BATCH must be an integer, got 'many'\n"
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--max-batch", "x"])
    assert exit_.value.code == 2 and capsys.readouterr().err == "svc: --max-batch must be an integer, got 'x'\n"


def test_ports_out_of_range_are_refused():
    assert port_problem(0) is None and port_problem(65535) is None
    assert port_problem(99999) == "port must be 0..65535, got 99999"
    with pytest.raises(ValueError, match="0..65535"):
        uvicorn_config(FastAPI(), host="127.0.0.1", port=70000)
