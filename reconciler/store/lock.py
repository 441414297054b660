"""The run lock: one writing command at a time per state file, and who holds it.

DuckDB lets one process write a file at a time, and only while it has the file open; our
commands keep the file open for short transactions only, so DuckDB's own lock cannot say which
*command* is working. The run lock can: a writing command holds an exclusive ``flock`` on
``<state>.lock`` for its whole run, and writes into it who it is (pid, command, since when).

* A waiting command polls until its timeout and then names the holder.
* ``flock`` is released by the kernel when a process dies, so a crashed holder never blocks
  anyone. Its record stays in the file, though: the next holder sees it, takes the lock over,
  and reports the takeover so that it can be logged as an event.

Used by :class:`reconciler.store.db.StateStore`; readers never take it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential, wait_random

from reconciler.errors import LockTimeout


def patiently(timeout: float, busy: Callable[[BaseException], bool]) -> Retrying:
    """Retry while ``busy(error)`` holds, backing off from 10 ms to 250 ms, for ``timeout`` s;
    then re-raise the last error."""
    return Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=0.01, max=0.25) + wait_random(0, 0.02),
        retry=retry_if_exception(busy),
        reraise=True,
    )


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    since: str  # ISO 8601, UTC
    host: str

    def describe(self) -> str:
        where = "" if self.host == socket.gethostname() else f" on {self.host}"
        return f"pid {self.pid}{where} ({self.command}, since {self.since})"

    @staticmethod
    def parse(text: str) -> Holder | None:
        try:
            data = json.loads(text)
            return Holder(
                int(data["pid"]),
                str(data["command"]),
                str(data["since"]),
                str(data.get("host", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class RunLock:
    """An exclusive, crash-safe lock on ``path`` that records its holder."""

    def __init__(self, path: Path, command: str) -> None:
        self.path = path
        self.command = command
        self._fd: int | None = None
        self.taken_over: Holder | None = None  # a dead holder whose lock we took

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: float) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            patiently(timeout, lambda e: isinstance(e, BlockingIOError))(
                fcntl.flock, fd, fcntl.LOCK_EX | fcntl.LOCK_NB
            )
        except BlockingIOError:
            holder = self.holder(fd)
            os.close(fd)
            who = holder.describe() if holder else "another process"
            raise LockTimeout(
                f"the state file is locked by {who}; gave up after {timeout:g} s. "
                "Wait for it to finish, or pass a longer --lock-timeout"
            ) from None
        previous = self.holder(fd)
        if previous is not None and previous.pid != os.getpid():
            self.taken_over = previous  # it died holding the lock: the kernel released it
        me = Holder(os.getpid(), self.command, now_iso(), socket.gethostname())
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(me)).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # a clean release leaves no holder behind
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def holder(self, fd: int | None = None) -> Holder | None:
        """Who holds (or, after a crash, last held) the lock, from the lock file."""
        try:
            if fd is not None:
                text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            else:
                text = self.path.read_text("utf-8", "replace")
        except OSError:
            return None
        return Holder.parse(text) if text.strip() else None
