"""``python -m evaluator``: run the evaluator service (uvicorn).

Every setting is a flag and an ``RRP_*`` variable, declared once in :data:`evaluator.settings.OPTIONS`
(``--workers`` / ``RRP_WORKERS``, ...; ``python -m evaluator --help`` lists them); the bearer token is read
from the environment variable named by ``--token-env`` (default RRP_TOKEN), never from the command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from evaluator.settings import OPTIONS, Settings
from servicekit.settings import build_parser as kit_parser
from servicekit.settings import values

PROG = "python -m evaluator"


def build_parser() -> argparse.ArgumentParser:
    p = kit_parser(PROG, "RallyRoboPilot evaluator service", OPTIONS)
    p.add_argument("--token-env", default="RRP_TOKEN",
                   help="environment variable holding the bearer token for POST /v1/evaluations (unset/empty: no auth)")
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    given = {k: v for k, v in values(args, OPTIONS).items() if v is not None}
    given.setdefault("evaluator_id", f"{os.environ.get('HOSTNAME') or socket.gethostname()}:{given['port']}")
    return Settings(**given, token=os.environ.get(args.token_env) or None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    from evaluator.service import create_app
    from servicekit.launch import serve

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # no forwarded-headers rewriting: nothing here depends on the client address
    serve(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
          header_timeout_s=settings.header_timeout_s, timeout_graceful_shutdown=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
