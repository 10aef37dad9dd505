"""Settings declared once: each :class:`Option` gives the flag ``--name`` and the variable ``RRP_NAME``.

One naming scheme: the option ``body_timeout_s`` is the flag ``--body-timeout`` and the variable
``RRP_BODY_TIMEOUT`` (a unit suffix ``_s`` is dropped; seconds are said in the help). A variable sets the
default, a flag wins; a bad value of either is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from servicekit.guards import DEFAULT_GRACE_S, DEFAULT_MIN_RATE
from servicekit.http import HEADER_TIMEOUT_S
from servicekit.launch import port_problem

_KINDS = {int: "an integer", float: "a number", str: "text"}


@dataclass(frozen=True)
class Option:
    name: str
    kind: type
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None
    """returns what is wrong with a value (``"must be >= 1"``), or None"""
    also: tuple[str, ...] = ()
    """older names kept working: flags (``"--id"``) and variables (``"RRP_RETRY_AFTER_S"``)"""

    @property
    def stem(self) -> str:
        return self.name.removesuffix("_s")

    @property
    def flag(self) -> str:
        return "--" + self.stem.replace("_", "-")

    @property
    def env(self) -> str:
        return "RRP_" + self.stem.upper()

    @property
    def flags(self) -> list[str]:
        return [self.flag, *(a for a in self.also if a.startswith("--"))]

    @property
    def envs(self) -> list[str]:
        return [self.env, *(a for a in self.also if not a.startswith("--"))]


def at_least(low: float) -> Callable[[Any], str | None]:
    return lambda v: None if v is None or v >= low else f"must be >= {low:g}, got {v:g}"


def positive(v: Any) -> str | None:
    return None if v is None or v > 0 else f"must be > 0, got {v:g}"


def _port(v: int) -> str | None:
    problem = port_problem(v)
    return problem and problem.removeprefix("port ")


def common(*, port: int, max_body_bytes: int, body_timeout_s: float) -> list[Option]:
    """What every service has: where it listens, whom it believes, how requests must arrive."""
    return [
        Option("host", str, "127.0.0.1", "bind address (containers set 0.0.0.0)"),
        Option("port", int, port, "port, 0..65535 (0: any free port)", _port),
        Option("forwarded_allow_ips", str, None, "addresses of the proxy whose X-Forwarded-For is believed "
               "(comma-separated; default: none, the peer is the client)"),
        Option("max_body_bytes", int, max_body_bytes, "request body limit in bytes (413 beyond)", at_least(1024)),
        Option("header_timeout_s", float, HEADER_TIMEOUT_S, "seconds a request's headers may take (408 after)",
               positive),
        Option("body_timeout_s", float, body_timeout_s, "seconds a request body may take (408 after)", positive),
        Option("min_body_rate", float, float(DEFAULT_MIN_RATE),
               f"bytes/s a body must average after a {DEFAULT_GRACE_S:g} s grace (408 after; 0: no minimum)",
               at_least(0)),
        Option("log_level", str, "info", "log level"),
    ]


class SettingsError(ValueError):
    """One line saying which flag or variable is wrong and why."""


def _parse(option: Option, raw: str, where: str) -> Any:
    try:
        return option.kind(raw)
    except ValueError:
        raise SettingsError(f"{where} must be {_KINDS.get(option.kind, option.kind.__name__)}, got {raw!r}") from None


def _flag_type(option: Option) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return _parse(option, text, option.flag)
        except SettingsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def add_options(parser: argparse.ArgumentParser, options: Iterable[Option],
                environ: Mapping[str, str] | None = None) -> None:
    """A flag per option, its default from the option's variable when set (SettingsError if it does not parse)."""
    environ = os.environ if environ is None else environ
    for option in options:
        name = next((n for n in option.envs if environ.get(n, "").strip()), option.env)
        raw = environ.get(name, "").strip()
        default = _parse(option, raw, name) if raw else option.default
        shown = "" if option.default is None else f"; default {option.default}"
        parser.add_argument(*option.flags, dest=option.name, default=default, metavar=option.stem.upper(),
                            type=_flag_type(option),
                            help=f"{option.help} ({option.env}{shown})")


def problem(options: Iterable[Option], values: Mapping[str, Any]) -> str | None:
    """The first of ``values`` that its option's check refuses, said with the option's name, or None
    (for settings built in code rather than from flags: one declaration, one rule)."""
    for option in options:
        if option.name in values and option.check:
            wrong = option.check(values[option.name])
            if wrong:
                return f"{option.name} {wrong}"
    return None


def values(args: argparse.Namespace, options: Iterable[Option]) -> dict[str, Any]:
    """The options' values from parsed ``args``, checked (SettingsError naming the flag and its variable)."""
    out = {}
    for option in options:
        value = getattr(args, option.name)
        problem = option.check(value) if option.check else None
        if problem:
            raise SettingsError(f"{option.flag} ({option.env}) {problem}")
        out[option.name] = value
    return out


class Parser(argparse.ArgumentParser):
    """argparse whose type errors are one line and exit status 2 like every other settings error."""

    def error(self, message: str):  # noqa: D102
        if ": --" in message:  # "argument --port/PORT: --port must be an integer, got 'x'" -> after the colon
            message = message.split(": ", 1)[1]
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser(prog: str, description: str, options: Iterable[Option],
                 environ: Mapping[str, str] | None = None) -> Parser:
    parser = Parser(prog=prog, description=description)
    try:
        add_options(parser, options, environ)
    except SettingsError as exc:
        parser.exit(2, f"{prog}: {exc}\n")
    return parser
