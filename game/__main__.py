"""python -m game: the RallyRoboPilot game with its HTTP control API and frame recorder.

    python -m game [--track NAME|PATH] [--headless] [--port 8200] [--mode realtime|lockstep]
                   [--redis redis://HOST:6379/0] [--driver pursuit]

An evolved driver is watched from the GA's side, ``python -m ga.replay RUN --watch [-- GAME FLAGS]``,
which hands its driver to :func:`play`: the game imports nothing above it.

Environment: RRP_HOST, RRP_PORT, RRP_FORWARDED_ALLOW_IPS, RRP_REDIS, RRP_RECORD_EVERY, RRP_STREAM_MAXLEN,
RRP_LOG_LEVEL (declared once in :data:`OPTIONS` with their flags; flags win).
With RRP_GAME_TOKEN set (or the variable named by --token-env), every /v1/ request needs
``Authorization: Bearer TOKEN``.
The HTTP API starts first, so requests during start-up get 503 "starting" instead of an error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from typing import TextIO

from game import DEFAULT_TRACK, Track, TrackError, load_track
from game.rollout import PolicyFor
from servicekit.settings import Option, SettingsError, at_least, common, values
from servicekit.settings import build_parser as kit_parser


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x240, got {text!r}") from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"size {w}x{h} out of range (16..4096)")
    return w, h


PROG = "python -m game"

OPTIONS = [
    *(o for o in common(port=8200, max_body_bytes=64 * 1024, body_timeout_s=30.0)
      if o.name in ("host", "port", "forwarded_allow_ips")),  # the game's body limits are fixed
    Option("redis", str, None, "record camera frames to this Redis URL (redis://[:PASSWORD@]HOST:6379/0)"),
    Option("record_every", int, 1, "record every K-th frame", at_least(1)),
    Option("stream_maxlen", int, 20_000, "frames kept per session stream", at_least(1)),
    Option("log_level", str, "warning", "log level"),
]
"""The game's settings, each a flag and an ``RRP_*`` variable (:mod:`servicekit.settings`); the flags below
them in :func:`parse_args` say what to play (track, renderer, driver, mode) and have no variable."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = kit_parser(PROG, "RallyRoboPilot: drive, serve, record.", OPTIONS)
    p.add_argument("--track", default=None, help=f"bundled track name or track JSON path (default {DEFAULT_TRACK}; "
                                                 "when watching an evolved driver, its task's track)")
    p.add_argument("--headless", action="store_true", help="render offscreen (EGL, no display needed)")
    p.add_argument("--no-render", action="store_true", help="no Ursina at all: simulation + HTTP API only")
    p.add_argument("--no-api", action="store_true", help="do not serve the HTTP API")
    p.add_argument("--token-env", default="RRP_GAME_TOKEN",
                   help="environment variable holding the API's bearer token (unset/empty: no auth)")
    p.add_argument("--mode", choices=["realtime", "lockstep"], default="realtime")
    p.add_argument("--session", default=None, help="recording session id (default: time + random)")
    p.add_argument("--frame-size", type=_size, default=(320, 240), metavar="WxH", help="camera frame size")
    p.add_argument("--image-format", choices=["jpeg", "png"], default="jpeg")
    p.add_argument("--window-size", type=_size, default=None, metavar="WxH")
    p.add_argument("--driver", choices=["keyboard", "pursuit"], default="keyboard",
                   help="who drives: keyboard/HTTP, or the pure-pursuit baseline")
    args = p.parse_args(argv)
    try:
        values(args, OPTIONS)
    except SettingsError as exc:
        p.exit(2, f"{PROG}: {exc}\n")
    return args


def build_driver(args: argparse.Namespace) -> tuple[Track, PolicyFor | None, str]:
    """(track, driver or None, description) from --track / --driver."""
    track = load_track(args.track or DEFAULT_TRACK)
    if args.driver == "pursuit":
        from game.pursuit import PursuitPolicy

        return track, lambda env: PursuitPolicy(env.race), "pure-pursuit baseline driving"
    return track, None, "keyboard (WASD/arrows) and HTTP controls"


def machine_stdout() -> TextIO:
    """Keep stdout for the game's JSON lines: Ursina and Panda3D print banners to file descriptor 1
    (from Python and from C++), so fd 1 is pointed at stderr and the JSON goes to a copy of the
    original stdout."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return out


def _no_display() -> bool:
    return sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


NO_WINDOW = ("error: cannot open a window{why}; run with --headless (offscreen, no display needed) "
             "or under an X server (xvfb-run python -m game ...)")


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Run the game; ``out`` receives the JSON event lines (default stdout)."""
    args = parse_args(argv)
    try:
        track, driver, desc = build_driver(args)
    except TrackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return play(args, track, driver, desc, out=out)


def play(args: argparse.Namespace, track: Track, driver: PolicyFor | None, desc: str, *,
         out: TextIO | None = None, recording: dict | None = None) -> int:
    """Run the game (window or headless, HTTP API, recorder, as ``args`` from :func:`parse_args` say) with
    ``driver`` at the wheel until the window closes or SIGTERM/SIGINT. ``out`` receives the JSON event
    lines (default stdout); ``recording``: extra metadata of the recorded session."""
    out = out or sys.stdout
    if not args.headless and not args.no_render and _no_display():
        print(NO_WINDOW.format(why=" (no DISPLAY)"), file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    from game.app import GameRunner

    try:
        recorder = _start_recorder(args, track, recording) if args.redis else None
    except ValueError as exc:  # an unusable Redis URL: recording is what was asked for, so say so and stop
        print(f"error: --redis / RRP_REDIS: {exc}", file=sys.stderr)
        return 2
    runner = GameRunner(track, args.mode, recorder=recorder, driver=driver)
    server = None
    if not args.no_api:
        from game.api import ApiServer

        try:
            server = ApiServer(runner, host=args.host, port=args.port, forwarded_allow_ips=args.forwarded_allow_ips,
                               token=os.environ.get(args.token_env) or None).start()
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    stop = threading.Event()

    def _stop(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        if not args.no_render:
            from game.scene import UrsinaRenderer

            try:
                runner.renderer = UrsinaRenderer(track, headless=args.headless, window_size=args.window_size,
                                                 frame_size=args.frame_size)
            except Exception as exc:  # Panda3D: "Could not open window." and the like
                if args.headless:
                    raise
                print(NO_WINDOW.format(why=f" ({exc})"), file=sys.stderr)
                return 2
        info = {"event": "ready", "url": f"http://{args.host}:{server.port}" if server else None,
                "mode": args.mode, "track": track.name, "driver": desc,
                "render": "none" if args.no_render else ("headless" if args.headless else "window"),
                "session": recorder.session if recorder else None}
        runner.run(stop, on_ready=lambda: print(json.dumps(info), file=out, flush=True))
    except SystemExit:  # the window was closed
        pass
    finally:
        stop.set()
        _close(server, recorder, runner, out)
    return 0


def _start_recorder(args: argparse.Namespace, track: Track, recording: dict | None):
    from game.recorder import FrameRecorder

    recorder = FrameRecorder(args.redis, args.session, every=args.record_every, fmt=args.image_format,
                             maxlen=args.stream_maxlen,
                             metadata={"track": track.name, "size": list(args.frame_size), "mode": args.mode,
                                       "replay": None, **(recording or {})}).start()
    if args.no_render:
        print("warning: --no-render records no camera frames", file=sys.stderr)
    return recorder


def _close(server, recorder, runner, out: TextIO) -> None:
    """Stop the API, flush the recorder (one "recorded" line), close the window."""
    if server is not None:
        server.stop()
    if recorder is not None:
        recorder.close(timeout=5)
        s = recorder.snapshot()
        print(json.dumps({"event": "recorded", "session": s["session"], "written": s["written"],
                          "dropped": s["dropped"]}), file=out, flush=True)
    if runner.renderer is not None:
        runner.renderer.close()


if __name__ == "__main__":
    sys.exit(main(out=machine_stdout()))
