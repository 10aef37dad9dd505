"""One launcher for the three services: port range, bind address, forwarded-headers policy, uvicorn.

Forwarded headers (``X-Forwarded-For``, ``X-Forwarded-Proto``) are ignored unless the service is told
the address of the proxy in front of it (``--forwarded-allow-ips`` / ``RRP_FORWARDED_ALLOW_IPS``, a
comma-separated list of addresses or networks; uvicorn's own default trusts loopback, which lets any
local client pick its address and with it escape every per-client limit). Only connections from those
addresses may name another client address.
"""

from __future__ import annotations

from typing import Any

from servicekit.http import HEADER_TIMEOUT_S, header_deadline_protocol

PORT_RANGE = (0, 65535)


def port_problem(port: int, *, allow_any: bool = True) -> str | None:
    """Why ``port`` cannot be listened on (None when it can; 0 = any free port when ``allow_any``)."""
    low = 0 if allow_any else 1
    if not low <= port <= PORT_RANGE[1]:
        return f"port must be {low}..{PORT_RANGE[1]}, got {port}"
    return None


def uvicorn_config(app: Any, *, host: str, port: int, forwarded_allow_ips: str | None = None,
                   header_timeout_s: float = HEADER_TIMEOUT_S, log_level: str = "warning", **options: Any):
    """uvicorn's ``Config`` as every service runs: the header deadline, no access log, and forwarded
    headers trusted only from ``forwarded_allow_ips``."""
    import uvicorn

    problem = port_problem(port)
    if problem:
        raise ValueError(problem)
    trusted = (forwarded_allow_ips or "").strip()
    options.setdefault("timeout_keep_alive", 75)
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          proxy_headers=bool(trusted), forwarded_allow_ips=trusted or None,
                          http=header_deadline_protocol(header_timeout_s), **options)


def serve(app: Any, **config: Any) -> None:
    """Run ``app`` until SIGTERM/SIGINT (see :func:`uvicorn_config` for the options)."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app, **config)).run()


def run_cli(prog: str, argv: list[str] | None, build_parser: Any, settings_from_args: Any, create_app: Any,
            **config: Any) -> int:
    """A service's ``main``: parse its settings (a bad one is one line and exit 2), log, serve until
    SIGTERM/SIGINT. ``create_app(settings)`` builds the routes; ``config`` goes to uvicorn."""
    import logging
    import sys

    args = build_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ValueError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level,
          forwarded_allow_ips=getattr(settings, "forwarded_allow_ips", None),
          header_timeout_s=settings.header_timeout_s, **config)
    return 0
