"""The run lock: one writing command at a time per state file, and who holds it.

DuckDB lets one process write a file at a time, and only while it has the file open; our
commands keep the file open for short transactions only, so DuckDB's own lock cannot say which
*command* is working. The run lock can: a writing command holds an exclusive ``flock`` on
``<state>.lock`` for its whole run, and writes into it who it is (pid, command, since when).

* The lock belongs to the state file, not to the name it was given: ``<state>.lock`` sits
  beside the file's real path (symlinks and ``..`` resolved), and while the state file exists
  the holder also takes an exclusive ``flock`` on the state file itself, which every hard link
  to it shares. Two commands reaching one file by different names wait for each other.
* A waiting command polls until its timeout and then names the holder.
* ``flock`` is released by the kernel when a process dies, so a crashed holder never blocks
  anyone. Its record stays in the file, though: the next holder sees it, takes the lock over,
  and reports the takeover so that it can be logged as an event.

Used by :class:`reconciler.store.db.StateStore` (and its retry helper :func:`patiently` by
:mod:`reconciler.store.connection`); readers never take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential, wait_random

from reconciler.errors import LockTimeout
from reconciler.store.statefile import os_error


def patiently(timeout: float, busy: Callable[[BaseException], bool]) -> Retrying:
    """Retry while ``busy(error)`` holds, backing off from 10 ms to 250 ms, for ``timeout`` s;
    then re-raise the last error."""
    return Retrying(
        stop=stop_after_delay(timeout),
        wait=wait_exponential(multiplier=0.01, max=0.25) + wait_random(0, 0.02),
        retry=retry_if_exception(busy),
        reraise=True,
    )


def real_path(path: Path) -> Path:
    """The path a state file really has: absolute, symlinks and ``..`` resolved (as far as
    they exist: a new file's folder may not exist yet)."""
    return Path(os.path.realpath(path))


def lock_path_for(state: Path) -> Path:
    """Where the run lock of a state file lives: beside its real path."""
    real = real_path(state)
    return real.with_name(real.name + ".lock")


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    since: str  # ISO 8601, UTC
    host: str
    heartbeat: str = ""  # a lease's last renewal (PostgreSQL states)
    ttl: float | None = None  # a lease's seconds without renewal before it can be taken over

    def describe(self) -> str:
        here = self.host == socket.gethostname()
        where = "" if here else f" on {self.host}"
        beat = f", last heartbeat {self.heartbeat}" if self.heartbeat else ""
        said = f"pid {self.pid}{where} ({self.command}, since {self.since}{beat})"
        if here and process_state(self.pid) == "stopped":
            said += (
                ", which is stopped (SIGSTOP): it holds the lock and does no work; resume it "
                f"with kill -CONT {self.pid} or end it"
            )
        return said

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


# Closing any descriptor of a file drops every POSIX lock this process holds on it, DuckDB's
# own lock included. So the descriptor of the identity lock is closed only while no other
# descriptor of this process refers to the file; otherwise it is parked until that is so.
_PARKED: list[tuple[int, tuple[int, int]]] = []
_PARKED_GUARD = threading.Lock()


def _open_identity(state: Path) -> tuple[int, tuple[int, int]] | None:
    """A new descriptor of the state file itself, and its (device, inode); None while there
    is no such file."""
    try:
        fd = os.open(state, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    info = os.fstat(fd)
    return fd, (info.st_dev, info.st_ino)


def _others_open(key: tuple[int, int], ours: set[int]) -> bool:
    """Whether a descriptor of this process other than ``ours`` refers to the file ``key``
    (Linux: from /proc/self/fd; elsewhere, assume so)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return True
    for name in names:
        if int(name) in ours:
            continue
        try:
            info = os.stat(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if (info.st_dev, info.st_ino) == key:
            return True
    return False


def _close_identity(fd: int, key: tuple[int, int]) -> None:
    """Close the descriptor when that cannot drop a DuckDB lock; else park it. Parked ones
    whose file is no longer open elsewhere are closed too."""
    with _PARKED_GUARD:
        _PARKED.append((fd, key))
        ours = {parked for parked, _key in _PARKED}
        for parked in list(_PARKED):
            if not _others_open(parked[1], ours):
                os.close(parked[0])
                _PARKED.remove(parked)
                ours.discard(parked[0])


def flock_holder(key: tuple[int, int]) -> int | None:
    """The pid holding an ``flock`` on the file (device, inode), from /proc/locks (Linux)."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or fields[-1] == "->":
            continue
        try:
            major, minor, inode = fields[5].split(":")
            device = os.makedev(int(major, 16), int(minor, 16))
            if (device, int(inode)) == key and int(fields[4]) != os.getpid():
                return int(fields[4])
        except ValueError:
            continue
    return None


def alive(pid: int) -> bool:
    """Whether a process with this pid exists (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_state(pid: int) -> str | None:
    """``running``, ``stopped`` (SIGSTOP, or a debugger) or ``zombie``, as /proc tells; None
    where it cannot tell."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text("utf-8", "replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    code = fields[0] if fields else ""
    return {"T": "stopped", "t": "stopped", "Z": "zombie"}.get(code, "running")


def describe_pid(pid: int) -> str:
    """``pid N (its command line)``, as far as /proc tells."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        command = " ".join(raw.decode("utf-8", "replace").replace("\0", " ").split())
    except OSError:
        command = ""
    if len(command) > 100:  # one line, whatever the command line holds
        command = command[:99] + "…"
    said = f"pid {pid} ({command})" if command else f"pid {pid}"
    if process_state(pid) == "stopped":
        said += f", which is stopped (SIGSTOP): resume it with kill -CONT {pid} or end it"
    return said


class RunLock:
    """An exclusive, crash-safe lock on ``path`` that records its holder; with ``identity``
    (the state file), also on that file's inode while it exists."""

    def __init__(self, path: Path, command: str, identity: Path | None = None) -> None:
        self.path = path
        self.command = command
        self.identity = identity
        self._fd: int | None = None
        self._identity: tuple[int, tuple[int, int]] | None = None  # the state file's, locked
        self.taken_over: Holder | None = None  # a dead holder whose lock we took

    def acquire(self, timeout: float) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise os_error(self.path, exc) from None
        try:
            _flock(fd, timeout, lambda: _recorded_holder(self.holder(fd)))
            previous = self.holder(fd)
            me = Holder(os.getpid(), self.command, now_iso(), socket.gethostname())
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(asdict(me)).encode(), 0)
            except OSError as exc:
                fcntl.flock(fd, fcntl.LOCK_UN)
                raise os_error(self.path, exc) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        try:
            self.bind_identity(timeout)
        except BaseException:
            self.release()
            raise
        if previous is not None and previous.pid != os.getpid():
            self.taken_over = previous  # it died holding the lock: the kernel released it

    def bind_identity(self, timeout: float) -> None:
        """Lock the state file itself as it is now: at acquire, and again once the holder
        has created (or replaced) it."""
        if self.identity is None or self._fd is None:
            return
        try:
            info = os.stat(self.identity)
        except OSError:
            info = None
        if self._identity is not None:
            if info is not None and (info.st_dev, info.st_ino) == self._identity[1]:
                return
            self._unbind()  # a file that was replaced
        found = _open_identity(self.identity) if info is not None else None
        if found is None:
            return
        fd, key = found

        def who() -> str | None:
            pid = flock_holder(key)
            return None if pid is None else f"{describe_pid(pid)} through another name of it"

        try:
            _flock(fd, timeout, who)
        except BaseException:
            _close_identity(fd, key)
            raise
        self._identity = found

    def _unbind(self) -> None:
        if self._identity is not None:
            fcntl.flock(self._identity[0], fcntl.LOCK_UN)
            _close_identity(*self._identity)
            self._identity = None

    def release(self) -> None:
        self._unbind()
        if self._fd is None:
            return
        try:
            # a clean release leaves no holder behind; the record only informs, the
            # kernel's lock is what counts
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
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


def _recorded_holder(holder: Holder | None) -> str | None:
    return None if holder is None else holder.describe()


def _flock(fd: int, timeout: float, who: Callable[[], str | None]) -> None:
    """Take an exclusive flock on ``fd``, retrying until ``timeout``; then name the holder."""
    try:
        patiently(timeout, lambda e: isinstance(e, BlockingIOError))(
            fcntl.flock, fd, fcntl.LOCK_EX | fcntl.LOCK_NB
        )
    except BlockingIOError:
        raise LockTimeout(
            f"the state file is locked by {who() or 'another process'}; gave up after "
            f"{timeout:g} s. Wait for it to finish, or pass a longer --lock-timeout"
        ) from None
