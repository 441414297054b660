"""What both stores do alike around their run lock: hold it for a writing command's whole run
(re-entrantly, and logging a takeover of a dead holder's lock), and let one thread of the run
write at a time.

:class:`reconciler.store.db.StateStore` (the DuckDB file, an ``flock``) and
:class:`reconciler.store.postgres.PgStore` (PostgreSQL, a lease) inherit from :class:`Holding`
and say how they take and give back their lock and how they log a takeover.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

from reconciler.store.connection import Busy
from reconciler.store.lock import Holder


class Holding:
    """The run lock held for a run, and the guard of this process's writes."""

    lock_timeout: float
    lock: Any  # a RunLock (the file's flock) or a Lease (PostgreSQL's); both keep taken_over

    def __init__(self) -> None:
        self._depth = 0
        # Threads of one run (the recorder, drivers keeping upload sessions) write through
        # one store: one write transaction at a time, and the lock depth kept exactly.
        self._guard = threading.RLock()

    @property
    def label(self) -> str:
        """The state, as messages name it."""
        raise NotImplementedError

    def _take(self) -> None:
        """Take the run lock, waiting up to ``lock_timeout``."""
        raise NotImplementedError

    def _give(self) -> None:
        """Give the run lock back."""
        raise NotImplementedError

    def _taken_from(self) -> Holder | None:
        """The dead holder whose lock the last take took over, once; else None."""
        taken, self.lock.taken_over = self.lock.taken_over, None
        return taken

    def _record_takeover(self, dead: Holder) -> None:
        raise NotImplementedError

    @contextmanager
    def session(self) -> Iterator[Self]:
        """Hold the run lock for a writing command's whole run (re-entrant)."""
        with self._guard:
            if self._depth == 0:
                self._take()
            self._depth += 1
        try:
            taken = self._taken_from()
            if taken is not None:
                self._record_takeover(taken)
            yield self
        finally:
            with self._guard:
                self._depth -= 1
                if self._depth == 0:
                    self._give()

    @contextmanager
    def guarded(self, patience: float | None, threads: float | None) -> Iterator[None]:
        """This process's turn to write: waits ``max(patience, threads)`` seconds for another
        thread that is writing (for ever with None, not at all with 0), then :class:`Busy`."""
        wait = patience if threads is None or patience is None else max(patience, threads)
        if wait is None:
            acquired = self._guard.acquire()
        elif wait <= 0:
            acquired = self._guard.acquire(blocking=False)
        else:
            acquired = self._guard.acquire(timeout=wait)
        if not acquired:
            raise Busy(f"{self.label} is being written by another thread")
        try:
            yield
        finally:
            self._guard.release()
