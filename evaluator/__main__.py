"""``python -m evaluator``: run the evaluator service (uvicorn).

Every setting is a flag and an ``RRP_*`` variable, declared once in :data:`evaluator.settings.OPTIONS`
(``--workers`` / ``RRP_WORKERS``, ...; ``python -m evaluator --help`` lists them); the bearer token is read
from the environment variable named by ``--token-env`` (default RRP_TOKEN), never from the command line.
"""

from __future__ import annotations

import argparse
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
    from evaluator.service import create_app
    from servicekit.launch import run_cli

    # the evaluator's settings have no forwarded-headers option: nothing here depends on the client address
    return run_cli(PROG, argv, build_parser, settings_from_args, create_app, timeout_graceful_shutdown=30)


if __name__ == "__main__":
    sys.exit(main())
