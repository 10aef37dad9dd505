"""Atomic file writes: a reader (or a resumed run) never sees a half-written file.

The text goes to a temporary file in the same folder, is flushed to disk, then replaces the
target with ``os.replace`` (atomic on POSIX). Killing the run at any moment leaves either
the previous complete file or the new complete file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Replace ``path`` with ``obj`` as stable, strict JSON (sorted keys, no NaN)."""
    write_text(path, json.dumps(obj, indent=1, sort_keys=True, allow_nan=False) + "\n")
