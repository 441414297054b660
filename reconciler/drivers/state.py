"""What drivers keep between runs, and the protocol through which they persist it.

A driver for a REST platform (``http``, ``youtube``, ``vimeo``) names its objects by the
platform's own ids, and a resumable upload by a session URI or upload link; the ``s3`` driver
keeps the multipart uploads it started and the checksum S3 reported for each object it put.
Each is a :class:`Session`, keyed by (platform, remote key); spent API units are counted per
quota day.

Drivers never touch the state file: what they persist goes through a :class:`SessionRecords`
(the state file's is :class:`reconciler.store.sessions.StoredSessions`), which apply, verify
and recovery pass to :func:`reconciler.drivers.driver_for`; the driver then holds a
:class:`DriverState` over it.

Writes happen in the middle of transfers (after every chunk), so they must never fail one:
a :class:`DriverState` keeps the platform's sessions in memory (read once, on first use) and
writes each change at once when the state file is free, or later when it is busy (another
process holding it open, this run's recorder writing). Whatever is still unwritten is written
by :meth:`DriverState.flush` at the end of the run. The run lock makes this process the only
writer meanwhile, so the memory copy stays true.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import date
from enum import StrEnum
from typing import Any, Protocol

from reconciler.errors import StateError
from reconciler.redact import redact


class SessionState(StrEnum):
    """``upload_sessions.state``: where one object's upload stands."""

    UPLOADING = "uploading"  # bytes are (or were being) sent
    UPLOADED = "uploaded"  # every byte is there; the platform is processing it
    DONE = "done"  # the object is on the platform, under ``remote_id``


@dataclass(frozen=True)
class Session:
    """One object's upload on one platform: in progress, uploaded (processing) or done."""

    key: str
    protocol: str  # http | youtube | vimeo | s3
    state: str  # a SessionState
    file_sha256: str
    file_size: int
    session_url: str | None = None  # the resumable session URI, tus link or S3 upload id
    remote_id: str | None = None
    remote_url: str | None = None
    bytes_confirmed: int = 0
    remote_checksum: str | None = None  # what the platform itself reported for the object
    confirmed_sha256: str | None = None  # of the bytes_confirmed bytes, as they were sent

    def moved(self, **changes: Any) -> Session:
        return replace(self, **changes)

    def recordable(self) -> dict[str, Any]:
        """The session's fields but its key, as they may be persisted: a link a platform
        handed back is redacted (it could carry the credential it was given); a session link
        that held one is not kept at all (it would not work redacted: that upload starts over
        after a restart)."""
        fields = asdict(self)
        del fields["key"]
        fields["state"] = str(self.state)  # a SessionState is kept as its plain value
        for name in ("session_url", "remote_url"):
            value = fields[name]
            if isinstance(value, str) and redact(value) != value:
                fields[name] = None if name == "session_url" else redact(value)
        return fields


class SessionRecords(Protocol):
    """What a driver persists, for every platform of one state: its sessions (as dicts of the
    :class:`Session` fields, the key named ``remote_key``), the copies recorded by apply, and
    the quota spent per day."""

    @property
    def lock_timeout(self) -> float:
        """How long a write that must land before an upload's first byte may wait."""
        ...

    def load_sessions(self, platform: str) -> list[dict[str, Any]]:
        """Every session of ``platform``."""
        ...

    def recorded_copy(self, platform: str, key: str) -> tuple[str, str | None, str | None] | None:
        """(remote id, url, checksum) of the copy at ``key`` that apply recorded."""
        ...

    def load_quota(self, platform: str, day: date) -> tuple[int, bool]:
        """(units spent, whether the quota was said to be spent) on ``day``."""
        ...

    def take_quota(
        self, platform: str, day: date, units: int, limit: int
    ) -> tuple[bool, int, bool] | None:
        """Spend ``units`` on ``day`` only within ``limit``, atomically in the state:
        (taken, units spent now, said to be spent); None if it cannot be asked now."""
        ...

    def write(
        self,
        platform: str,
        sessions: Mapping[str, Mapping[str, Any] | None],
        spent: Mapping[date, tuple[int, bool]],
        patience: float | None,
    ) -> None:
        """Keep (or, for None, forget) sessions and add spent units, at once; a state busy
        beyond ``patience`` seconds (None: the lock timeout) raises StateError."""
        ...


class DriverState:
    """One platform's sessions and quota; safe to use from worker threads."""

    def __init__(self, records: SessionRecords, platform: str) -> None:
        self.records = records
        self.platform = platform
        self._lock = threading.RLock()
        self._sessions: dict[str, Session] | None = None
        self._unwritten: dict[str, Session | None] = {}  # None: forget the key
        self._quota: dict[date, tuple[int, bool]] = {}
        self._spent: dict[date, tuple[int, bool]] = {}  # units and exhaustion not yet written

    # -- sessions ------------------------------------------------------------------------
    def sessions(self) -> dict[str, Session]:
        """Every session of the platform (read once)."""
        with self._lock:
            if self._sessions is None:
                rows = self.records.load_sessions(self.platform)
                self._sessions = {}
                for row in rows:
                    fields = dict(row)
                    key = str(fields.pop("remote_key"))
                    self._sessions[key] = Session(key, **fields)
            return self._sessions

    def session(self, key: str) -> Session | None:
        return self.sessions().get(key)

    def save(self, session: Session, patience: float = 0.0) -> None:
        """Keep ``session``; written now if the state file is free within ``patience``
        seconds (a session that must be on disk before the first byte waits a little: what
        a job is about to write), else later."""
        self._keep(session.key, session)
        self.flush(patience)

    def record_before_sending(self, session: Session) -> bool:
        """Keep a session that must be on disk before its first byte goes (what recovery needs
        to abort or resume it after a kill): wait up to the lock timeout for a busy state
        file. False when it is still busy; the caller then sends nothing."""
        self._keep(session.key, session)
        return self.flush(self.records.lock_timeout)

    def forget(self, key: str) -> None:
        self._keep(key, None)
        self.flush(0.0)

    def _keep(self, key: str, session: Session | None) -> None:
        with self._lock:
            if session is None:
                self.sessions().pop(key, None)
            else:
                self.sessions()[key] = session
            self._unwritten[key] = session

    def remote(self, key: str) -> tuple[str, str | None, str | None] | None:
        """(remote id, url, sha256 of what was sent) of the finished object at ``key``: from
        its session once done (an upload still going, or a video still processing, is not an
        object yet), else from the copy recorded by apply."""
        found = self.session(key)
        if found is not None and found.remote_id is not None and found.state == SessionState.DONE:
            return found.remote_id, found.remote_url, found.file_sha256
        return self.records.recorded_copy(self.platform, key)

    # -- quota ---------------------------------------------------------------------------
    def quota(self, day: date) -> tuple[int, bool]:
        """(units spent, whether the platform said the quota is spent) on quota day ``day``."""
        with self._lock:
            if day not in self._quota:
                self._quota[day] = self.records.load_quota(self.platform, day)
            return self._quota[day]

    def take(self, day: date, units: int, limit: int) -> tuple[bool, int]:
        """Spend ``units`` on quota day ``day`` if that stays within ``limit``: (whether they
        were taken, units spent before). Asked of the state itself, in one write, so that
        workers sharing a PostgreSQL state never spend more than the limit together; from
        this process's own count while the state cannot be asked (a busy DuckDB file, which
        the run lock makes this process the only spender of) or holds units not yet written."""
        with self._lock:
            unwritten = day in self._spent
        answer = None if unwritten else self.records.take_quota(self.platform, day, units, limit)
        if answer is not None:
            taken, used, exhausted = answer
            with self._lock:
                self._quota[day] = (used, exhausted)
            return taken, used - units if taken else used
        used, exhausted = self.quota(day)
        if exhausted or used + units > limit:
            return False, used
        self.spend(day, units)
        return True, used

    def spend(self, day: date, units: int, exhausted: bool = False) -> None:
        with self._lock:
            used, was = self.quota(day)
            self._quota[day] = (used + units, was or exhausted)
            pending, flag = self._spent.get(day, (0, False))
            self._spent[day] = (pending + units, flag or exhausted)
        self.flush(0.0)

    # -- writing -------------------------------------------------------------------------
    def flush(self, patience: float | None = None) -> bool:
        """Write what is not written yet, waiting for a busy state file up to ``patience``
        seconds (None: the lock timeout, then it raises). Returns whether everything is
        written."""
        with self._lock:
            sessions, spent = dict(self._unwritten), dict(self._spent)
        if not sessions and not spent:
            return True
        rows = {k: None if s is None else s.recordable() for k, s in sessions.items()}
        try:
            self.records.write(self.platform, rows, spent, patience)
        except StateError:  # busy (or failing): kept, and written later
            if patience is None:
                raise
            return False
        with self._lock:
            for key, session in sessions.items():
                if self._unwritten.get(key, ...) is session:
                    del self._unwritten[key]
            for day, (units, exhausted) in spent.items():
                pending, flag = self._spent.get(day, (0, False))
                if (pending, flag) == (units, exhausted):
                    del self._spent[day]
                else:
                    self._spent[day] = (pending - units, flag)
        return True
