"""``python -m evaluator``: run the evaluator service (uvicorn).

Flags override the environment: RRP_HOST, RRP_PORT, RRP_WORKERS, RRP_MAX_INFLIGHT, RRP_MAX_BATCH,
RRP_MAX_FRAMES, RRP_MAX_BODY_BYTES, RRP_EVALUATOR_ID; the bearer token is read from the environment
variable named by ``--token-env`` (default RRP_TOKEN), never from the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from pydantic import ValidationError

from evaluator.settings import DEFAULT_PORT, Settings, describe, env_defaults


def build_parser() -> argparse.ArgumentParser:
    env = env_defaults()
    p = argparse.ArgumentParser(prog="python -m evaluator", description="RallyRoboPilot evaluator service")
    p.add_argument("--host", default=env.get("host", "127.0.0.1"),
                   help="bind address (RRP_HOST; containers set 0.0.0.0)")
    p.add_argument("--port", type=int, default=env.get("port", DEFAULT_PORT), help="port (RRP_PORT)")
    p.add_argument(
        "--workers",
        type=int,
        default=env.get("workers"),
        help="simulation worker processes (RRP_WORKERS; default: CPUs)",
    )
    p.add_argument(
        "--max-inflight",
        type=int,
        default=env.get("max_inflight"),
        help="evaluation requests taken at once, beyond it 503 (RRP_MAX_INFLIGHT; default 2 x workers)",
    )
    p.add_argument("--max-batch", type=int, default=env.get("max_batch"), help="genomes per request")
    p.add_argument("--max-frames", type=int, default=env.get("max_frames"), help="frame limit of a lap")
    p.add_argument("--max-body-bytes", type=int, default=env.get("max_body_bytes"), help="request body limit")
    p.add_argument("--stall-timeout", dest="stall_timeout_s", type=float, default=env.get("stall_timeout_s"),
                   help="seconds without a worker heartbeat before it is replaced (RRP_STALL_TIMEOUT; default 10)")
    p.add_argument("--header-timeout", dest="header_timeout_s", type=float, default=env.get("header_timeout_s"),
                   help="seconds a request's headers may take (RRP_HEADER_TIMEOUT; default 10)")
    p.add_argument("--body-timeout", dest="body_timeout_s", type=float, default=env.get("body_timeout_s"),
                   help="seconds a request body may take (RRP_BODY_TIMEOUT; default 60)")
    p.add_argument("--min-body-rate", type=float, default=env.get("min_body_rate"),
                   help="bytes/s a request body must average after a 5 s grace, else 408 (RRP_MIN_BODY_RATE; "
                        "default 1024; 0: no minimum)")
    p.add_argument(
        "--token-env",
        default="RRP_TOKEN",
        help="environment variable holding the bearer token for POST /v1/evaluations (unset/empty: no auth)",
    )
    p.add_argument("--id", dest="evaluator_id", default=env.get("evaluator_id"), help="name in answers")
    p.add_argument("--log-level", default=os.environ.get("RRP_LOG_LEVEL", "info"))
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    kwargs: dict = {"host": args.host, "port": args.port}
    for name in ("workers", "max_inflight", "max_batch", "max_frames", "max_body_bytes", "stall_timeout_s",
                 "header_timeout_s", "body_timeout_s", "min_body_rate"):
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    token = os.environ.get(args.token_env) or None
    kwargs["token"] = token
    kwargs["evaluator_id"] = args.evaluator_id or f"{os.environ.get('HOSTNAME') or socket.gethostname()}:{args.port}"
    return Settings(**kwargs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        print(f"python -m evaluator: {describe(exc)}", file=sys.stderr)
        return 2
    from evaluator.service import create_app
    from servicekit.launch import serve

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # no forwarded-headers rewriting: nothing here depends on the client address
    serve(create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level,
          header_timeout_s=settings.header_timeout_s, timeout_graceful_shutdown=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
