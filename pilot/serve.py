"""``python -m pilot.serve --model PATH``: the vision pilot over HTTP (FastAPI on uvicorn).

One frame or a batch in, steering, target speed and the four keys out, from the exported model on
onnxruntime (``pilot.runtime.PilotModel``; never the training framework, never a pickle). Every
answer names the ``model_version`` that produced it.

Two request forms, because a car sends one frame at a time and a data pipeline sends batches:

- ``Content-Type: image/png`` or ``image/jpeg``, the encoded image as the body and the measured speed
  as ``?speed=`` (``curl --data-binary @frame.png``), as image-classification servers take it;
- ``application/json`` ``{"frames": [{"image": "<base64 PNG/JPEG>", "speed": 12.5}, ...]}``.

Images must have the model's input size (``GET /v1/model``): a frame of another size is refused
with 422 rather than resized, because resampling here would feed the net pixels its training data
never had and hide a camera set up wrongly. Bodies are limited before they are read (413 from the
declared ``Content-Length``, or as soon as a chunked upload crosses the limit), batches too (413); a body
must arrive at a minimum rate (408), and only a complete body takes one of the in-flight slots.

Hot reload: the model file (and its card) are polled; a new version is loaded in the background and
swapped in between requests (a request in flight finishes on the model it started with, so none is
dropped). A change is loaded once it has stayed the same for one poll, so a file still being copied
is not picked up half-written; publishing a new folder and swapping a symlink to it is atomic.
``POST /v1/reload`` loads at once. A file that does not load leaves the old model serving;
``/v1/model`` and the reload answer say why.

Split like the evaluator: :mod:`pilot.wire` (the contract and decoding), :mod:`pilot.slot` (the serving
model, its reloads, the metrics), :mod:`pilot.service` (the routes), :mod:`pilot.settings` (the options);
this module is the command line. Guards, errors, settings and the launcher are :mod:`servicekit`'s.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pilot.service import create_app
from pilot.settings import DEFAULT_PORT, OPTIONS, Settings
from pilot.wire import decode_image
from servicekit.settings import SettingsError, values
from servicekit.settings import build_parser as kit_parser

__all__ = ["DEFAULT_PORT", "Settings", "build_parser", "create_app", "decode_image", "main", "settings_from_args"]

PROG = "python -m pilot.serve"


def build_parser() -> argparse.ArgumentParser:
    p = kit_parser(PROG, "Serve a vision pilot model over HTTP", OPTIONS)
    p.add_argument("--token-env", default="RRP_TOKEN",
                   help="environment variable holding the bearer token for POST /v1/reload (unset: open)")
    return p


def settings_from_args(args: argparse.Namespace) -> Settings:
    given = values(args, OPTIONS)
    if not given["model"]:
        raise SettingsError("--model (or RRP_MODEL) is required")
    return Settings(**{**given, "model": Path(given["model"])}, token=os.environ.get(args.token_env) or None)


def main(argv: list[str] | None = None) -> int:
    from servicekit.launch import run_cli

    return run_cli(PROG, argv, build_parser, settings_from_args, create_app, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    sys.exit(main())
