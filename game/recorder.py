"""Camera-frame recorder: a game-loop hook that ships frames to a Redis Stream.

The game loop calls :meth:`FrameRecorder.offer` once per frame. ``offer`` never blocks: it puts the
raw frame on a bounded queue, or counts a drop when the queue is full. A background thread encodes
the image (JPEG or PNG) and writes one stream entry per frame with ``XADD ... MAXLEN ~ N``. When Redis
goes away the writer keeps draining the queue (counting each lost frame as dropped), retries the
connection every ``retry_s`` seconds and resumes writing as soon as Redis answers again. Each change
between "writing" and "dropping" is logged once, with the reason (unreachable, refused, out of
memory...); the reason stays in ``snapshot()["last_error"]`` for the game's ``/healthz``.

Stream layout (several games can share one Redis, each under its own session id):

- ``{prefix}:frames:{session}``  stream of :class:`game.frame_records.FrameRecord` entries (image bytes,
  format, size, frame index, track, sensing, controls, pose, ``episode``: resets since the game started,
  the frame index restarts at 0 with each).
- ``{prefix}:sessions``  hash: session id -> :class:`game.frame_records.GameSession` as JSON (track,
  tracks driven so far, size, format, started).

Redis is imported lazily so the simulation core never needs it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from game.frame_records import FrameRecord, GameSession
from game.physics import KEYS

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "rrp"


def new_session_id() -> str:
    """A short unique session id (time-ordered prefix + random suffix)."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, for logs and messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        port = parts.port  # raises ValueError for a password with ':' or '/' that is not URL-encoded
    except ValueError:
        return "<unparsable Redis URL>"
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{port}" if port is not None else "")
    return urlunsplit(parts._replace(netloc=netloc))


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a usable Redis URL (None when it is): checked before the recorder starts, so a
    bad URL stops the game at once instead of killing the recorder thread and dropping every frame."""
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:
        return (f"the Redis URL does not parse ({exc}); URL-encode a password holding @ : / # "
                f"(urllib.parse.quote(password, safe=''))")
    if parts.scheme not in ("redis", "rediss", "unix") or (parts.scheme != "unix" and not parts.hostname):
        return "the Redis URL must look like redis://[:PASSWORD@]HOST[:PORT][/DB]"
    return None


def stream_key(session: str, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}:frames:{session}"


def sessions_key(prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}:sessions"


def encode_image(image: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Encode an (H, W, 3) uint8 RGB array as JPEG or PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if fmt == "jpeg":
        img.save(buf, format="JPEG", quality=quality)
    elif fmt == "png":
        img.save(buf, format="PNG", compress_level=1)
    else:
        raise ValueError(f"unknown image format {fmt!r} (use 'jpeg' or 'png')")
    return buf.getvalue()


@dataclass
class FrameItem:
    frame: int
    image: np.ndarray
    sensing: dict[str, Any] = field(default_factory=dict)
    controls: dict[str, bool] = field(default_factory=dict)
    t: float = 0.0


@dataclass
class RecorderStats:
    offered: int = 0
    written: int = 0
    dropped: int = 0          # all frames that never reached Redis
    dropped_full: int = 0     # queue full (writer too slow)
    dropped_redis: int = 0    # Redis unavailable / write failed
    reconnects: int = 0
    connected: bool = False
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class FrameRecorder:
    """Bounded, non-blocking frame hook writing to a Redis Stream from a background thread."""

    def __init__(
        self,
        url: str,
        session: str | None = None,
        *,
        every: int = 1,
        fmt: str = "jpeg",
        quality: int = 90,
        maxlen: int = 20_000,
        queue_size: int = 64,
        retry_s: float = 0.5,
        socket_timeout: float = 1.0,
        prefix: str = DEFAULT_PREFIX,
        metadata: dict[str, Any] | None = None,
    ):
        if every < 1:
            raise ValueError("every must be >= 1")
        if fmt not in ("jpeg", "png"):
            raise ValueError(f"unknown image format {fmt!r} (use 'jpeg' or 'png')")
        self.url = url
        self.session = session or new_session_id()
        self.every = every
        self.fmt = fmt
        self.quality = quality
        self.maxlen = maxlen
        self.retry_s = retry_s
        self.socket_timeout = socket_timeout
        self.prefix = prefix
        self.key = stream_key(self.session, prefix)
        self.metadata = dict(metadata or {})
        self._session_record()  # bad metadata fails here, in the caller, not later in the writer thread
        self.stats = RecorderStats()
        self._queue: queue.Queue[FrameItem | None] = queue.Queue(maxsize=queue_size)
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._client = None
        self._next_retry = 0.0
        self._registered = False
        self._ever_connected = False
        self._writing: bool | None = None   # None until the first write or failure
        self._thread = threading.Thread(target=self._run, name="frame-recorder", daemon=True)
        self._started = False

    # -- game-loop side ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """False once the writer thread has ended while the recorder was meant to run (it said why in the log)."""
        return not self._started or self._thread.is_alive() or self._stop.is_set()

    def start(self) -> FrameRecorder:
        problem = url_problem(self.url)
        if problem:
            raise ValueError(problem)
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def wants(self, frame: int) -> bool:
        """True when ``frame`` is one the recorder keeps (every k-th frame)."""
        return frame % self.every == 0

    def offer(
        self,
        frame: int,
        image: np.ndarray,
        sensing: dict[str, Any] | None = None,
        controls: dict[str, bool] | None = None,
    ) -> bool:
        """Queue one frame; never blocks. Returns False when the frame was dropped."""
        item = FrameItem(frame, image, sensing or {}, controls or {}, time.time())
        with self._stats_lock:
            self.stats.offered += 1
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            self._count_drop(full=True)
            return False

    def count_missed(self, n: int = 1) -> None:
        """Count frames the game could not even capture (e.g. it had to catch up) as dropped."""
        with self._stats_lock:
            self.stats.offered += n
            self.stats.dropped += n
            self.stats.dropped_full += n

    def note_track(self, name: str) -> None:
        """The game now drives ``name``: list it in the session's metadata (rewritten by the writer)."""
        tracks = self.metadata.setdefault("tracks", [self.metadata["track"]] if "track" in self.metadata else [])
        if name not in tracks:
            self.metadata["tracks"] = [*tracks, name]
            self._registered = False

    def snapshot(self) -> dict[str, Any]:
        with self._stats_lock:
            d = self.stats.as_dict()
        d.update(session=self.session, stream=self.key, queued=self._queue.qsize())
        return d

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued frame was handled (written or dropped). For tests and shutdown."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 5.0) -> None:
        if not self._started:
            return
        self.flush(timeout)
        self._stop.set()
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait(None)
        self._thread.join(timeout)
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()

    # -- writer side ------------------------------------------------------------------------------
    def _count_drop(self, full: bool = False, error: str | None = None) -> None:
        with self._stats_lock:
            self.stats.dropped += 1
            if full:
                self.stats.dropped_full += 1
            else:
                self.stats.dropped_redis += 1
            if error:
                self.stats.last_error = error
        if not full:
            self._writing_now(False)

    def _writing_now(self, writing: bool) -> None:
        """Log each change between writing frames and dropping them (writer thread only)."""
        if writing == self._writing:
            return
        self._writing = writing
        where = f"Redis {redact_url(self.url)} (stream {self.key})"
        if writing:
            log.info("recording frames to %s", where)
        else:
            log.warning("dropping frames: cannot write to %s: %s", where, self.stats.last_error)

    def _set_connected(self, value: bool, error: str | None = None) -> None:
        with self._stats_lock:
            self.stats.connected = value
            if error:
                self.stats.last_error = error

    def _connect(self):
        import redis

        client = redis.Redis.from_url(
            self.url,
            socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            retry_on_timeout=False,
        )
        client.ping()
        return client

    def _ensure_client(self) -> bool:
        if self._client is not None:
            return True
        now = time.monotonic()
        if now < self._next_retry:
            return False
        try:
            client = self._connect()
        except Exception as exc:  # noqa: BLE001 - any connection problem means "not now"
            self._next_retry = now + self.retry_s
            self._set_connected(False, f"connect: {exc}")
            return False
        self._client = client
        with self._stats_lock:
            if self._ever_connected:
                self.stats.reconnects += 1
            self._ever_connected = True
            self.stats.connected = True
        self._register()
        return self._client is not None

    def _session_record(self) -> GameSession:
        meta = dict(self.metadata)
        if "track" in meta:
            meta.setdefault("tracks", [meta["track"]])
        meta.setdefault("started", time.time())
        self.metadata.setdefault("started", meta["started"])  # re-registering keeps the first start
        return GameSession(session=self.session, format=self.fmt, every=self.every, stream=self.key, **meta)

    def _register(self) -> None:
        try:
            self._client.hset(sessions_key(self.prefix), self.session, self._session_record().to_json())
            self._registered = True
        except Exception as exc:  # noqa: BLE001
            self._drop_client(exc)

    def _drop_client(self, exc: Exception) -> None:
        try:
            if self._client is not None:
                self._client.close()
        except Exception:  # noqa: BLE001
            pass
        self._client = None
        self._next_retry = time.monotonic() + self.retry_s
        self._set_connected(False, f"{type(exc).__name__}: {exc}")

    def _fields(self, item: FrameItem) -> dict[str, Any]:
        img = item.image
        record = FrameRecord(
            session=self.session, frame=int(item.frame), t=float(item.t),
            image=encode_image(img, self.fmt, self.quality),
            format=self.fmt, width=int(img.shape[1]), height=int(img.shape[0]),
            controls={k: bool(item.controls.get(k, False)) for k in KEYS},
            **{k: (np.asarray(v, dtype=float).ravel().tolist() if k == "rays" else v) for k, v in item.sensing.items()})
        return record.to_fields()

    def _write(self, item: FrameItem) -> None:
        if not self._ensure_client():
            self._count_drop(error=self.stats.last_error)
            return
        try:
            fields = self._fields(item)
        except Exception as exc:  # noqa: BLE001 - a bad frame must not kill the writer
            log.exception("cannot encode frame %s", item.frame)
            self._count_drop(error=f"encode: {exc}")
            return
        try:
            self._client.xadd(self.key, fields, maxlen=self.maxlen, approximate=True)
        except Exception as exc:  # noqa: BLE001 - Redis went away or refused (full): drop, reconnect later
            self._drop_client(exc)
            self._count_drop()
            return
        if not self._registered:
            self._register()
        with self._stats_lock:
            self.stats.written += 1
        self._writing_now(True)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            try:
                if item is None:
                    return
                self._write(item)
            finally:
                self._queue.task_done()
