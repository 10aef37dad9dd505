"""The control schedule: key commands waiting for the frame they name.

Kept apart from the runner so the rules a client meets (no frame in the past, at most a minute
ahead, a bounded number pending per client and in all) read in one place and can be tested without
a race, a clock or threads. Not thread-safe by itself: ``game.app.GameRunner`` calls it under its
lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from game import FPS, KEYS
from game.state import Keys

NO_KEYS: Keys = (False, False, False, False)

MAX_SCHEDULE_AHEAD = FPS * 60  # frames: a command may name a frame at most one minute ahead
MAX_PENDING_PER_CLIENT = 256   # pending commands of one client (its address): the rest stay free
MAX_PENDING = 10_000
NEAR_FRAMES = FPS * 2          # commands for the next two seconds are "near"; later ones are "far"
MAX_PENDING_FAR = MAX_PENDING // 2
"""Far commands may fill only this share of the schedule. A command holds its place until its frame, so
commands a minute ahead from many addresses (each within its own limit) could otherwise fill the schedule
for a minute; the near share is left to drivers steering the next frames, and it empties within seconds."""
COMMAND_LOG = 4096             # settled commands kept for GET /v1/controls/{id}


class GameError(Exception):
    """A request the game refuses; ``status`` is the HTTP status the API answers with."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


@dataclass
class Command:
    id: int
    keys: Keys
    frame: int                       # the frame whose step uses these keys
    received_frame: int
    applied_frame: int | None = None
    cancelled: bool = False
    client: str = "local"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "keys": dict(zip(KEYS, self.keys, strict=True)),
            "frame": self.frame,
            "received_frame": self.received_frame,
            "applied_frame": self.applied_frame,
            "status": "cancelled" if self.cancelled else ("applied" if self.applied_frame is not None
                                                           else "pending"),
        }


def keys_tuple(keys: Any) -> Keys:
    """Accept {key: bool}, a list of held key names, or 4 booleans; unknown keys raise GameError."""
    if keys is None:
        return NO_KEYS
    if isinstance(keys, dict):
        unknown = sorted(set(keys) - set(KEYS))
        if unknown:
            raise GameError(f"unknown key(s) {unknown}; keys are {list(KEYS)}", 422)
        return tuple(bool(keys.get(k, False)) for k in KEYS)  # type: ignore[return-value]
    keys = list(keys)
    if all(isinstance(k, str) for k in keys):
        unknown = sorted(set(keys) - set(KEYS))
        if unknown:
            raise GameError(f"unknown key(s) {unknown}; keys are {list(KEYS)}", 422)
        return tuple(k in keys for k in KEYS)  # type: ignore[return-value]
    if len(keys) == 4:
        return tuple(bool(k) for k in keys)  # type: ignore[return-value]
    raise GameError("keys must be a {key: bool} object, a list of key names or 4 booleans", 422)


class ControlSchedule:
    """Commands by frame, the count each client has pending, and a log of recent commands."""

    def __init__(self) -> None:
        self._next_id = 1
        self._by_frame: dict[int, list[Command]] = {}
        self._pending_by_client: dict[str, int] = {}
        self._log: OrderedDict[int, Command] = OrderedDict()

    @property
    def pending(self) -> int:
        return sum(len(cmds) for cmds in self._by_frame.values())

    def submit(self, keys: Keys, frame: int, now: int, client: str = "local") -> Command:
        """Schedule ``keys`` for ``frame`` (the game being at ``now``), or raise GameError saying why not.

        One client may have at most ``MAX_PENDING_PER_CLIENT`` commands pending, so a client that floods
        the schedule is refused (429) while everyone else keeps driving.
        """
        if frame < now:
            raise GameError(f"frame {frame} is in the past: the game is at frame {now} (controls for frame {now} "
                            f"or later are accepted)", 409)
        if frame > now + MAX_SCHEDULE_AHEAD:
            raise GameError(f"frame {frame} is too far ahead (at most {MAX_SCHEDULE_AHEAD} frames after "
                            f"the current frame {now})", 422)
        mine = self._pending_by_client.get(client, 0)
        if mine >= MAX_PENDING_PER_CLIENT:
            raise GameError(f"too many pending commands from {client} ({mine}, at most "
                            f"{MAX_PENDING_PER_CLIENT}); wait for some to apply", 429)
        pending = self.pending
        if pending >= MAX_PENDING:
            raise GameError(f"too many pending commands ({pending}); wait for some to apply", 429)
        if frame > now + NEAR_FRAMES:
            far = sum(len(cmds) for f, cmds in self._by_frame.items() if f > now + NEAR_FRAMES)
            if far >= MAX_PENDING_FAR:
                raise GameError(f"too many commands pending more than {NEAR_FRAMES} frames ahead ({far}); "
                                f"commands for the next {NEAR_FRAMES} frames are still accepted", 429)
        cmd = Command(self._next_id, keys, frame, now, client=client)
        self._next_id += 1
        self._pending_by_client[client] = mine + 1
        self._by_frame.setdefault(frame, []).append(cmd)
        self._log[cmd.id] = cmd
        while len(self._log) > COMMAND_LOG:
            self._log.popitem(last=False)
        return cmd

    def apply(self, frame: int) -> Iterable[Command]:
        """The commands for ``frame``, in the order received, marked applied (the last one wins)."""
        for cmd in self._by_frame.pop(frame, ()):
            self._settled(cmd)
            cmd.applied_frame = frame
            yield cmd

    def cancel_all(self) -> int:
        """Drop every pending command (a reset); returns how many there were."""
        cancelled = 0
        for cmds in self._by_frame.values():
            for cmd in cmds:
                cmd.cancelled = True
                cancelled += 1
        self._by_frame.clear()
        self._pending_by_client.clear()
        return cancelled

    def get(self, cmd_id: int) -> Command:
        cmd = self._log.get(cmd_id)
        if cmd is None:
            raise GameError(f"unknown command id {cmd_id} (only the last {COMMAND_LOG} are kept)", 404)
        return cmd

    def _settled(self, cmd: Command) -> None:
        """A command left the schedule: it no longer counts against its client."""
        left = self._pending_by_client.get(cmd.client, 0) - 1
        if left > 0:
            self._pending_by_client[cmd.client] = left
        else:
            self._pending_by_client.pop(cmd.client, None)
