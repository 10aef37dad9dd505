"""Atomic file writes: a reader (or a resumed run) never sees a half-written file.

Used by the GA's run folder and by every record file (``servicekit.records``), so it lives in the bottom layer.

The text goes to a temporary file in the same folder, is flushed to disk, then replaces the
target with ``os.replace`` (atomic on POSIX). Killing the run at any moment leaves either
the previous complete file or the new complete file (and, killed at the worst moment, a
hidden ``.NAME.*.tmp`` that :func:`remove_leftovers` clears when the run resumes).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

TMP_SUFFIX = ".tmp"


def _default_mode() -> int:
    """What ``open()`` would give a new file (0666 minus the umask); mkstemp makes 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` atomically, with the mode any other new file gets."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, _default_mode())
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


def remove_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed writer left in ``folder``; returns what was removed."""
    removed = []
    for tmp in Path(folder).glob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed
