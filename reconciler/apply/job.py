"""The values an apply run passes between its stages: its options, one :class:`Job` per change,
the :class:`Outcome` each job ends with, and the :class:`Observer` that watches the run.

Admission (:mod:`.admission`) makes the jobs, the worker (:mod:`.worker`) runs them and turns
each into an Outcome, the transfers (:mod:`.transfer`) return one on success, and the recorder
(:mod:`.recorder`) turns outcomes into rows. The CLI, watch and the renderers import these
through :mod:`reconciler.apply.run`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from reconciler.model import ActionKind, ConflictType, EventStatus, EventType, JobStatus, JobType
from reconciler.plan.actions import Action
from reconciler.redact import redact, redact_value
from reconciler.store.jobs import JobState
from reconciler.store.placements import PlacementRecord
from reconciler.store.records import EventRow
from reconciler.transforms.renditions import DEFAULT_MAX_BYTES

JOB_TYPES = {
    ActionKind.CREATE: JobType.INITIAL,
    ActionKind.UPDATE: JobType.UPDATE,
    ActionKind.UPDATE_METADATA: JobType.METADATA,
    ActionKind.DELETE: JobType.DELETE,
    ActionKind.IMPORT: JobType.IMPORT,
    ActionKind.MOVED: JobType.MOVE,
    ActionKind.ADOPT: JobType.ADOPT,
}
UPLOADS = (JobType.INITIAL, JobType.UPDATE)  # the job types that send bytes
CHANGED = (
    "the master file changed after it was planned; nothing was kept, and the next run "
    "will sync the new version"
)


class Expected(Protocol):
    """Where a finished rendition's (sha256, size) is known (the rendition cache)."""

    def expected(self, rid: str) -> tuple[str, int] | None: ...


def expected_bytes(action: Action, cache: Expected) -> tuple[str | None, int | None]:
    """What a placement sends, as far as it is known before the job starts: the master's
    sha256 and size, or its rendition's when the cache has it made ((None, None): not yet)."""
    if action.rendition_id:
        return cache.expected(action.rendition_id) or (None, None)
    return action.checksum, action.size_bytes


def holds(found_sha: str | None, found_size: int | None, sha: str, size: int | None) -> bool | None:
    """Whether an object the platform reports holds the expected bytes: by its sha256 where
    the platform gives one, else by its size; None when it gives neither."""
    if found_sha is not None:
        return found_sha == sha
    if found_size is not None:
        return found_size == size
    return None


@dataclass(frozen=True)
class ApplyOptions:
    parallel: int = 4
    max_attempts: int = 5  # per job, the first try included
    backoff_base: float = 0.5  # seconds
    backoff_max: float = 60.0
    rule: str | None = None  # only this rule's placements
    platform: str | None = None  # only this platform's placements
    stop: threading.Event | None = field(default=None, compare=False)  # set to stop the run
    grace: float = 7.0  # seconds a transfer in flight may take to finish after a stop
    renditions: Path | None = None  # the rendition cache; default: renditions/ by the state
    renditions_max_bytes: int = DEFAULT_MAX_BYTES
    # --queue: admission writes the jobs for `reconcile worker` processes (PostgreSQL) and
    # runs none of them; the workers check health and spend the rate budgets as they claim
    queue: bool = False


@dataclass
class Job:
    """One change being carried out; mirrors a sync_jobs row while the run lasts."""

    id: int
    code: str
    action: Action
    job_type: str  # a JobType
    key: str
    previous_key: str | None
    previous_remote_checksum: str | None
    platform_id: int
    asset_id: int
    config_id: int
    pa_id: int
    on_conflict: str = "manual"
    status: str = JobStatus.PENDING
    progress: float = 0.0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: str | None = None
    retries: int = 0
    eligible_at: datetime | None = None
    total_bytes: int | None = None
    mismatched: bool = False  # a checksum mismatch was recorded during this job
    sent: bool = False  # an attempt of this job has sent bytes
    intended_checksum: str | None = None  # what the placement's last job set out to write
    replaces: Any = None  # the identity of the object checked at the key ("absent": none)
    expected_checksum: str | None = None  # what must land; a rendition's once it is made
    expected_size: int | None = None  # its size, recorded with it before the first byte
    keeps_owner: bool = False  # the copy is an imported object: the team's after any update
    taken: frozenset[str] = frozenset()  # an import: the platform's keys and ids other copies hold
    _progress_step: int = 0

    def state(self) -> JobState:
        """The job's row as it stands now."""
        return JobState(
            id=self.id,
            status=self.status,
            progress_percent=round(self.progress, 2),
            started_at=self.started_at,
            completed_at=self.completed_at,
            error_message=self.error,
            retry_count=self.retries,
            eligible_at=self.eligible_at,
            expected_checksum=self.expected_checksum,
            expected_size=self.expected_size,
            job_type=self.job_type,
        )

    def placement(self, status: str) -> PlacementRecord:
        """The job's copy recorded with ``status`` (a SyncStatus) and nothing else."""
        a = self.action
        return PlacementRecord(a.asset, a.platform, a.rule, status)

    def event(
        self,
        kind: EventType,
        status: EventStatus,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> EventRow:
        """An event of this job, with no credential in its message or details."""
        return EventRow(kind, status, redact(message), redact_value(details), self.id, self.pa_id)


@dataclass(frozen=True)
class ConflictRow:
    """A conflict a job found on its copy (sync_conflicts' columns, by name)."""

    platform_asset_id: int
    conflict_type: ConflictType
    source_value: str | None
    target_value: str | None
    notes: str


@dataclass(frozen=True)
class Outcome:
    """How one job ended, as the worker returns it: what the recorder writes for it.

    ``placement`` and ``details`` are the copy as the job left it (``None``: as recorded);
    ``events`` and ``conflicts`` come in the order they happened; ``resolved`` names the
    conflicts of the job's copy that a retry fixed.
    """

    status: JobStatus
    message: str | None = None
    eligible_at: datetime | None = None
    placement: PlacementRecord | None = None
    details: dict[str, Any] | None = None
    events: tuple[EventRow, ...] = ()
    conflicts: tuple[ConflictRow, ...] = ()
    resolved: tuple[ConflictType, ...] = ()


class Observer(Protocol):
    """Who watches a run: the terminal progress display, plain lines, or a JSON stream."""

    def run_started(self, jobs: list[Job]) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def job_progress(self, job: Job, sent: int) -> None: ...
    def job_finished(self, job: Job) -> None: ...
    def event(self, event: EventRow, job: Job | None) -> None: ...
    def run_finished(self) -> None: ...


class NullObserver:
    """Watches nothing; renderers subclass it and override what they show."""

    def run_started(self, jobs: list[Job]) -> None:
        pass

    def job_started(self, job: Job) -> None:
        pass

    def job_progress(self, job: Job, sent: int) -> None:
        pass

    def job_finished(self, job: Job) -> None:
        pass

    def event(self, event: EventRow, job: Job | None) -> None:
        pass

    def run_finished(self) -> None:
        pass
