"""The one place where an apply run's reports become rows: the :class:`Recorder`.

Workers never open the state file. They report to the recorder, which keeps the reports and
writes them in batches, each batch one short transaction, so the file is never held across
a transfer and 10,000 jobs do not mean 10,000 commits. Two kinds of report come in:

* while a job runs (:mod:`.worker`, :mod:`.transfer`): its state (:meth:`Recorder.job`), the
  events the observer shows as they happen, and the findings of an attempt that is retried;
* when it ends: its :class:`~reconciler.apply.job.Outcome` (:meth:`Recorder.record`), the
  placement, events and conflicts it leaves.

Created by :class:`reconciler.apply.run.Run`; the SQL is in :mod:`reconciler.store.jobs` and
:mod:`reconciler.store.placements`.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from typing import Any

from reconciler.apply.job import ConflictRow, Job, Observer, Outcome
from reconciler.errors import LockTimeout, StateError
from reconciler.model import ConflictType, JobStatus, Resolution
from reconciler.provenance import Provenance
from reconciler.redact import redact_value
from reconciler.store.db import PgStore, Store, utcnow
from reconciler.store.jobs import JobState, record_job_states
from reconciler.store.placements import (
    PlacementRecord,
    record_details,
    resolve_retried,
    update_placements,
)
from reconciler.store.records import EventRow, insert_events, open_conflicts

FLUSH_SECONDS = 1.0  # each flush opens, writes and checkpoints the state file (~40 ms)
FLUSH_SHARE = 2.0  # after a flush, wait at least this many times as long as it took ...
FLUSH_MAX_SECONDS = 10.0  # ... but never longer than this


def next_pause(took: float) -> float:
    """Seconds until the next flush, after one that took ``took`` seconds. A flush costs a
    fixed part and a part that grows with the state file (the update joins and checkpoints
    whole tables): at 100,000 jobs each took seconds, and flushing again at once spent a
    third of the run's CPU on it. Waiting twice as long as the last flush took keeps the
    recorder's share of the time at most a third, and batches larger."""
    return min(max(FLUSH_SECONDS, FLUSH_SHARE * took), FLUSH_MAX_SECONDS)


class Recorder:
    """Collects what the workers report and writes it in batches.

    A background thread flushes every :data:`FLUSH_SECONDS` when something changed, in one
    short write transaction. The last job state, placement and details per key win; events
    and conflicts are kept in order.
    """

    def __init__(
        self, store: Store, observer: Observer, provenance: Provenance | None = None
    ) -> None:
        self.store = store
        self.observer = observer
        self.provenance = provenance
        self._lock = threading.Lock()
        self._jobs: dict[int, JobState] = {}
        self._placements: dict[int, PlacementRecord] = {}
        self._details: dict[int, str] = {}
        self._events: list[EventRow] = []
        self._conflicts: list[tuple[Any, ...]] = []
        self._resolved: list[tuple[int, ConflictType]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flushing = threading.Lock()  # one flush at a time: events stay in order
        self.failure: BaseException | None = None

    # -- reports ---------------------------------------------------------------------------
    def job(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job.state()

    def placement(
        self, pa_id: int, record: PlacementRecord, details: dict[str, Any] | None = None
    ) -> None:
        with self._lock:
            self._placements[pa_id] = record
            if details is not None:  # what a platform answered: no credential it echoed
                self._details[pa_id] = json.dumps(redact_value(details), sort_keys=True)

    def event(self, event: EventRow, job: Job | None = None) -> None:
        with self._lock:
            self._events.append(event)
        self.observer.event(event, job)

    def conflict(self, found: ConflictRow, detected_at: datetime | None = None) -> None:
        row = (
            found.platform_asset_id,
            found.conflict_type,
            found.source_value,
            found.target_value,
            detected_at or utcnow(),
            Resolution.PENDING,
            found.notes,
        )
        with self._lock:
            self._conflicts.append(row)

    def record(self, job: Job, outcome: Outcome) -> None:
        """A finished job: its outcome onto the job, and everything it leaves to be written."""
        for found in outcome.conflicts:
            self.conflict(found)
        for event in outcome.events:
            self.event(event, job)
        with self._lock:
            self._resolved += [(job.pa_id, kind) for kind in outcome.resolved]
        if outcome.placement is not None:
            self.placement(job.pa_id, outcome.placement, outcome.details)
        job.status, job.completed_at = outcome.status, utcnow()
        if outcome.status == JobStatus.COMPLETED:
            job.progress = 100.0
        else:
            job.error = outcome.message
        if outcome.eligible_at is not None:
            job.eligible_at = outcome.eligible_at
        self.job(job)

    def lost_lease(self) -> StateError | None:
        """Why this run must do nothing more: its run lock on a PostgreSQL state was taken
        over (it was stopped or cut off past the lease's TTL), so nothing it did could be
        recorded, and another run now works on the same copies. None while it holds it."""
        return self.store.lock.lost_error() if isinstance(self.store, PgStore) else None

    # -- writing ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """The last flush: patient, since nothing runs any more; a state file that stays
        busy for three lock timeouts fails the run (recovery closes its jobs next time)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for _ in range(3):
            if self.flush():
                return
        raise StateError(
            f"the results of this run could not be recorded: {self.store.label} stayed busy; "
            "the next run checks the platforms and records what landed"
        )

    def _loop(self) -> None:
        pause = FLUSH_SECONDS
        while not self._stop.wait(pause):
            started = time.monotonic()
            try:
                # a busy file keeps the batch for the next try; waiting for it no longer
                # than a cycle keeps the file free for the drivers' session writes
                self.flush(FLUSH_SECONDS)
            except BaseException as exc:  # surfaced by the run, not lost in a thread
                self.failure = exc
                return
            pause = next_pause(time.monotonic() - started)

    def flush_now(self, patience: float) -> bool:
        """Write what is pending now, waiting at most ``patience`` seconds for the file;
        False (everything kept for later) when it stayed busy."""
        return self.flush(patience)

    def flush(self, patience: float | None = None) -> bool:
        """Write every pending report in one transaction. A busy state file (a reader holding
        it open, longer than ``patience``) keeps the reports for the next flush and returns
        False; it never fails the transfers that made them."""
        wait = -1 if patience is None else max(patience, 0.0)
        if not self._flushing.acquire(timeout=wait):
            return False
        try:
            return self._flush(patience)
        finally:
            self._flushing.release()

    def _flush(self, patience: float | None) -> bool:
        with self._lock:
            jobs, self._jobs = self._jobs, {}
            placements, self._placements = self._placements, {}
            details, self._details = self._details, {}
            events, self._events = self._events, []
            conflicts, self._conflicts = self._conflicts, []
            resolved, self._resolved = self._resolved, []
        if not (jobs or placements or details or events or conflicts or resolved):
            return True
        try:
            with self.store.writing(patience) as con:
                record_details(con, details)  # before the placements: a pruned copy leaves
                update_placements(con, list(placements.items()))
                record_job_states(con, list(jobs.values()))
                open_conflicts(con, conflicts)
                resolve_retried(con, resolved, utcnow())
                insert_events(con, events, self.provenance)
        except LockTimeout:
            with self._lock:  # kept; what was reported since is newer and wins
                for key, state in jobs.items():
                    self._jobs.setdefault(key, state)
                for pa_id, record in placements.items():
                    self._placements.setdefault(pa_id, record)
                for pa_id, text in details.items():
                    self._details.setdefault(pa_id, text)
                self._events = events + self._events
                self._conflicts = conflicts + self._conflicts
                self._resolved = resolved + self._resolved
            return False
        return True
