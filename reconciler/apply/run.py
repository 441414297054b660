"""Apply: carry out a plan's changes through the platform drivers, and record every step.

Called by the CLI (`reconcile`, `reconcile apply PLAN.json`) and by watch. One run, under the
state file's run lock:

1. **recover**: jobs that an interrupted run left pending or processing are checked against the
   platform (did the object land, with the expected checksum?) and closed either way; partial
   uploads on those platforms are removed;
2. **start**: record the manifests' objects and the hash cache, health-check each platform,
   spend each platform's hourly rate budget (jobs beyond it are deferred), and create one job
   per change, all in one transaction;
3. **run** the jobs on a thread pool (``--parallel``). Workers never open the state file: a
   :class:`Recorder` collects their reports and writes them in batches, each batch one short
   transaction, so the file is never held across a transfer and 10,000 jobs do not mean
   10,000 commits;
4. **finish**: a last flush, and an :class:`ApplyResult` that maps to the exit code.

Failures follow the driver's error types: a :class:`TemporaryError` is retried with exponential
backoff and full jitter (honouring its ``retry_after``), each retry logged; a
:class:`PermanentError` fails the job at once. After every upload the checksum the platform
reports must equal the master's; a mismatch records a ``checksum_mismatch`` conflict and is
retried.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from reconciler.apply.recorder import (
    PlacementRecord,
    record_objects,
    record_placements,
    update_placements,
)
from reconciler.apply.renditions import Transformer
from reconciler.apply.renditions import default_folder as default_renditions
from reconciler.apply.transfer import Transfer
from reconciler.drivers import driver_for
from reconciler.drivers.base import (
    Cancelled,
    Deferred,
    Driver,
    PermanentError,
    TemporaryError,
)
from reconciler.errors import ExitCode, LockTimeout, StateError
from reconciler.model import HealthStatus, ManifestSet
from reconciler.observe.masters import opened_master
from reconciler.plan.actions import Action, Plan, remote_key
from reconciler.plan.schedule import next_occurrence, timing
from reconciler.provenance import Provenance
from reconciler.provenance import of as provenance_of
from reconciler.redact import redact, redact_value
from reconciler.store import hash_cache
from reconciler.store.db import Connection, StateStore, insert_rows, upsert_rows, utcnow
from reconciler.store.records import EventRow, insert_events, open_conflicts
from reconciler.store.sessions import StoredSessions
from reconciler.transforms.renditions import DEFAULT_MAX_BYTES

JOB_TYPES = {
    "create": "initial",
    "update": "update",
    "update-metadata": "metadata",
    "delete": "delete",
}
PROGRESS_EVENT_MIN_BYTES = 1024 * 1024
FLUSH_SECONDS = 1.0  # each flush opens, writes and checkpoints the state file (~40 ms)


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


@dataclass
class Job:
    """One change being carried out; mirrors a sync_jobs row while the run lasts."""

    id: int
    code: str
    action: Action
    job_type: str
    key: str
    previous_key: str | None
    previous_remote_checksum: str | None
    platform_id: int
    asset_id: int
    config_id: int
    pa_id: int
    on_conflict: str = "manual"
    status: str = "pending"
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
    _progress_step: int = 0

    def row(self) -> tuple[Any, ...]:
        return (
            self.id,
            self.status,
            round(self.progress, 2),
            self.started_at,
            self.completed_at,
            self.error,
            self.retries,
            self.eligible_at,
            self.expected_checksum,
            self.expected_size,
            self.job_type,
        )


JOB_UPDATE_COLUMNS = (
    "id",
    "status",
    "progress_percent",
    "started_at",
    "completed_at",
    "error_message",
    "retry_count",
    "eligible_at",
    "expected_checksum",
    "expected_size",
    "job_type",
)
JOB_KEPT = ("expected_checksum", "expected_size", "job_type")  # set once, never unset
JOB_KEPT_WHEN_NULL = (
    "progress_percent",
    "started_at",
    "retry_count",
    "expected_checksum",
    "expected_size",
    "job_type",
)


class Observer(Protocol):
    """Who watches a run: the terminal progress display, plain lines, or a JSON stream."""

    def run_started(self, jobs: list[Job]) -> None: ...
    def job_started(self, job: Job) -> None: ...
    def job_progress(self, job: Job, sent: int) -> None: ...
    def job_finished(self, job: Job) -> None: ...
    def event(self, event: EventRow, job: Job | None) -> None: ...
    def run_finished(self) -> None: ...


class NullObserver:
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


class Recorder:
    """Collects what the workers report and writes it in batches.

    Workers call :meth:`job`, :meth:`placement`, :meth:`event`, :meth:`conflict`; a background
    thread flushes every :data:`FLUSH_SECONDS` when something changed, in one short write
    transaction. The last job state, placement and health per key win; events and conflicts
    are kept in order.
    """

    def __init__(
        self, store: StateStore, observer: Observer, provenance: Provenance | None = None
    ) -> None:
        self.store = store
        self.observer = observer
        self.provenance = provenance
        self._lock = threading.Lock()
        self._jobs: dict[int, tuple[Any, ...]] = {}
        self._placements: dict[int, PlacementRecord] = {}
        self._details: dict[int, str] = {}
        self._events: list[EventRow] = []
        self._conflicts: list[tuple[Any, ...]] = []
        self._resolved: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flushing = threading.Lock()  # one flush at a time: events stay in order
        self.failure: BaseException | None = None

    def job(self, job: Job) -> None:
        with self._lock:
            self._jobs[job.id] = job.row()

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

    def conflict(
        self, pa_id: int, kind: str, source: str | None, target: str | None, notes: str
    ) -> None:
        with self._lock:
            self._conflicts.append((pa_id, kind, source, target, utcnow(), "pending", notes))

    def resolve_retried(self, pa_id: int, kind: str) -> None:
        """A retry fixed what a conflict of ``kind`` recorded: close it."""
        with self._lock:
            self._resolved.append((pa_id, kind))

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
            f"the results of this run could not be recorded: the state file {self.store.path} "
            "stayed busy; the next run checks the platforms and records what landed"
        )

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()  # a busy file keeps the batch for the next try
            except BaseException as exc:  # surfaced by the run, not lost in a thread
                self.failure = exc
                return

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
                if details:  # before the placements: a pruned copy leaves platform_assets
                    upsert_rows(
                        con, "platform_assets", "id", ("id", "metadata"), list(details.items())
                    )
                update_placements(con, list(placements.items()))
                upsert_rows(
                    con, "sync_jobs", "id", JOB_UPDATE_COLUMNS, list(jobs.values()), JOB_KEPT
                )
                open_conflicts(con, conflicts)
                if resolved:
                    con.execute(
                        "UPDATE sync_conflicts SET resolution = 'resolved_by_retry', "
                        "resolved_by = 'reconcile', resolved_at = ? WHERE resolution = "
                        "'pending' AND (platform_asset_id, conflict_type) IN "
                        "(SELECT unnest(?::INTEGER[]), unnest(?::VARCHAR[]))",
                        [utcnow(), [r[0] for r in resolved], [r[1] for r in resolved]],
                    )
                insert_events(con, events, self.provenance)
        except LockTimeout:
            with self._lock:  # kept; what was reported since is newer and wins
                for key, row in jobs.items():
                    self._jobs.setdefault(key, row)
                for pa_id, record in placements.items():
                    self._placements.setdefault(pa_id, record)
                for pa_id, text in details.items():
                    self._details.setdefault(pa_id, text)
                self._events = events + self._events
                self._conflicts = conflicts + self._conflicts
                self._resolved = resolved + self._resolved
            return False
        return True


@dataclass
class ApplyResult:
    run_id: str
    jobs: list[Job] = field(default_factory=list)
    blocked: list[Action] = field(default_factory=list)
    held: list[Action] = field(default_factory=list)
    waiting: list[Action] = field(default_factory=list)  # scheduled, or auto_sync false
    recovered: list[str] = field(default_factory=list)
    open_conflicts: int = 0

    def counts(self) -> dict[str, int]:
        counts = Counter(j.status for j in self.jobs)
        return {s: counts.get(s, 0) for s in ("completed", "failed", "deferred")}

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.PARTIAL if self.undone() else ExitCode.OK

    def undone(self) -> list[str]:
        """What the run left undone, for exit code 3 and the line that explains it: failed,
        deferred and blocked work, and open conflicts."""
        c = self.counts()
        parts = [f"{c[k]} {k}" for k in ("failed", "deferred") if c[k]]
        blocked = [a for a in self.blocked if a.blocked_by != "disabled"]  # on purpose: not
        if blocked:  # work left undone; a master or a format that keeps a copy out is
            parts.append(f"{len(blocked)} blocked")
        if self.open_conflicts:
            parts.append(f"{self.open_conflicts} open conflicts")
        return parts


def runs_now(action: Action, options: ApplyOptions) -> bool:
    """A change runs unless it waits for its schedule or an explicit run; naming its rule
    with --rule is that explicit run."""
    return action.is_change and (action.waiting is None or action.rule == options.rule)


def narrow(actions: list[Action], options: ApplyOptions) -> list[Action]:
    return [
        a
        for a in actions
        if (options.rule is None or a.rule == options.rule)
        and (options.platform is None or a.platform == options.platform)
    ]


# -- the run ----------------------------------------------------------------------------------


class Run:
    """One apply run: holds the drivers, the jobs, the recorder and the retry policy."""

    def __init__(
        self,
        manifests: ManifestSet,
        store: StateStore,
        options: ApplyOptions,
        observer: Observer | None = None,
    ) -> None:
        self.manifests = manifests
        self.store = store
        self.options = options
        self.observer = observer or NullObserver()
        self.run_id = f"R{utcnow():%Y%m%dT%H%M%S}-{secrets.token_hex(2)}"
        self.drivers: dict[str, Driver] = {}
        self.provenance = provenance_of(manifests.manifests_dir)
        self.recorder = Recorder(store, self.observer, self.provenance)
        self.stopping_since: float | None = None
        self.transformer = Transformer(
            manifests,
            options.renditions or default_renditions(store.path),
            options.renditions_max_bytes,
        )
        self.transfer = Transfer(self)

    def driver(self, platform: str) -> Driver:
        if platform not in self.drivers:
            self.drivers[platform] = driver_for(
                self.manifests.platforms[platform], StoredSessions(self.store)
            )
        return self.drivers[platform]

    def finish_drivers(self) -> None:
        """Write what drivers could not write while the state file was busy."""
        for driver in self.drivers.values():
            driver.finish()

    # 1. recover ---------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Close the jobs an interrupted run left open, checking what actually landed."""
        from reconciler.apply.recovery import recover_jobs

        return recover_jobs(self)

    # 2. start -----------------------------------------------------------------------------
    def start(self, plan: Plan, actions: list[Action]) -> list[Job]:
        changes = [a for a in actions if runs_now(a, self.options)]
        now = utcnow()
        health = {}
        for platform in sorted({a.platform for a in changes}):
            try:
                health[platform] = self.driver(platform).health_check()
            except Exception as exc:  # a broken check means down
                health[platform] = (HealthStatus.DOWN, redact(str(exc)))
        observed = plan.observed
        with self.store.writing() as con:
            record_objects(con, self.manifests, observed.files if observed else {})
            if observed is not None:
                hash_cache.save(con, observed.new_cache)
            for platform, (status, _detail) in health.items():
                con.execute(
                    "UPDATE sync_platforms SET health_status = ?, last_health_check = ? "
                    "WHERE platform_code = ?",
                    [status, now, platform],
                )
            budgets = self._budgets(con, now)
            runnable, deferred, down = self._triage(changes, health, budgets, now)
            waiting = runnable + [a for a, _ in deferred]
            record_placements(
                con,
                [
                    PlacementRecord(a.asset, a.platform, a.rule, "pending")
                    for a in waiting
                    if a.action in ("create", "update")
                ]
                + [
                    PlacementRecord(a.asset, a.platform, a.rule, "failed")
                    for a in down
                    if a.action == "create"
                ],
            )
            jobs = self._create_jobs(con, runnable, deferred, down, now, health)
            insert_events(con, self._start_events(jobs, health), self.provenance)
            self._record_schedules(con, runnable, now)
        return jobs

    def _record_schedules(self, con: Connection, ran: list[Action], now: datetime) -> None:
        """A due scheduled rule that ran now has its clock reset; record when each
        scheduled rule runs next, for `reconcile status`."""
        ran_rules = {a.rule for a in ran}
        rows = dict(
            con.execute(
                "SELECT config_code, last_run_at FROM sync_configurations "
                "WHERE schedule_cron IS NOT NULL"
            ).fetchall()
        )
        updates = []
        for code, last_run in rows.items():
            rule = self.manifests.rules.get(code)
            if rule is None or not rule.schedule_cron:
                continue
            if code in ran_rules and timing(rule, last_run, now).due:
                last_run = now
            upcoming = next_occurrence(rule.schedule_cron, last_run) if last_run else None
            updates.append((code, last_run, upcoming))
        upsert_rows(
            con,
            "sync_configurations",
            "config_code",
            ("config_code", "last_run_at", "next_run_at"),
            updates,
        )

    def _budgets(self, con: Connection, now: datetime) -> dict[str, tuple[int, datetime | None]]:
        """Per platform: calls made in the last hour, and the oldest of them."""
        rows = con.execute(
            "SELECT sp.platform_code, count(*), min(j.started_at) FROM sync_jobs j "
            "JOIN sync_platforms sp ON sp.id = j.platform_id WHERE j.started_at >= ? "
            "GROUP BY sp.platform_code",
            [now - timedelta(hours=1)],
        ).fetchall()
        return {code: (used, oldest) for code, used, oldest in rows}

    def _triage(
        self,
        changes: list[Action],
        health: dict[str, tuple[str, str]],
        budgets: dict[str, tuple[int, datetime | None]],
        now: datetime,
    ) -> tuple[list[Action], list[tuple[Action, datetime]], list[Action]]:
        runnable: list[Action] = []
        deferred: list[tuple[Action, datetime]] = []
        down: list[Action] = []
        spent: Counter[str] = Counter()
        for action in changes:  # in plan order: highest priority first
            if health.get(action.platform, ("healthy", ""))[0] == HealthStatus.DOWN:
                down.append(action)
                continue
            limit = self.manifests.platforms[action.platform].rate_limit_per_hour
            used, oldest = budgets.get(action.platform, (0, None))
            if limit is not None and used + spent[action.platform] >= limit:
                eligible = (oldest or now) + timedelta(hours=1)
                deferred.append((action, eligible))
                continue
            spent[action.platform] += 1
            runnable.append(action)
        return runnable, deferred, down

    def _create_jobs(
        self,
        con: Connection,
        runnable: list[Action],
        deferred: list[tuple[Action, datetime]],
        down: list[Action],
        now: datetime,
        health: dict[str, tuple[str, str]],
    ) -> list[Job]:
        ids = {
            "asset": dict(con.execute("SELECT asset_code, id FROM source_assets").fetchall()),
            "platform": dict(
                con.execute("SELECT platform_code, id FROM sync_platforms").fetchall()
            ),
            "rule": dict(con.execute("SELECT config_code, id FROM sync_configurations").fetchall()),
        }
        recorded = {
            (asset, platform): (pa_id, key, remote_sum)
            for asset, platform, pa_id, key, remote_sum in con.execute(
                "SELECT sa.asset_code, sp.platform_code, pa.id, pa.remote_key, "
                "pa.remote_checksum FROM platform_assets pa "
                "JOIN source_assets sa ON sa.id = pa.source_asset_id "
                "JOIN sync_platforms sp ON sp.id = pa.platform_id "
                "QUALIFY row_number() OVER (PARTITION BY pa.source_asset_id, pa.platform_id "
                "ORDER BY pa.id DESC) = 1"
            ).fetchall()
        }
        # what the last failed job of each placement set out to write: if the platform holds
        # exactly that, it is this tool's own write (a run killed when recovery could not
        # look); completed jobs need no such memory, their bytes are the recorded ones
        intended = {
            (asset, platform): expected
            for asset, platform, expected in con.execute(
                "SELECT sa.asset_code, sp.platform_code, j.expected_checksum FROM sync_jobs j "
                "JOIN source_assets sa ON sa.id = j.asset_id "
                "JOIN sync_platforms sp ON sp.id = j.platform_id "
                "WHERE j.status = 'failed' AND j.expected_checksum IS NOT NULL "
                "QUALIFY row_number() OVER (PARTITION BY j.asset_id, j.platform_id "
                "ORDER BY j.id DESC) = 1"
            ).fetchall()
        }
        entries: list[tuple[Action, str, datetime | None, str | None]] = (
            [(a, "pending", None, None) for a in runnable]
            + [(a, "deferred", when, None) for a, when in deferred]
            + [(a, "failed", None, f"the platform is down: {health[a.platform][1]}") for a in down]
        )
        jobs: list[Job] = []
        rows = []
        for n, (action, status, eligible, error) in enumerate(entries, start=1):
            pa_id, old_key, old_sum = recorded.get(
                (action.asset, action.platform), (None, None, None)
            )
            assert pa_id is not None, "placements were recorded before their jobs"
            job_type = JOB_TYPES[action.action]
            key = old_key if job_type in ("delete", "metadata") and old_key else remote_key(action)
            rule = self.manifests.rules.get(action.rule or "")
            job = Job(
                id=0,
                code=f"{self.run_id}-{n:05d}",
                action=action,
                job_type=job_type,
                key=key,
                previous_key=old_key if old_key != key else None,
                previous_remote_checksum=old_sum,
                intended_checksum=intended.get((action.asset, action.platform)),
                platform_id=ids["platform"][action.platform],
                asset_id=ids["asset"][action.asset],
                config_id=ids["rule"].get(action.rule or "", 0),
                pa_id=pa_id,
                on_conflict=rule.on_conflict if rule else "manual",
                status=status,
                eligible_at=eligible,
                error=error,
                completed_at=now if status == "failed" else None,
            )
            # what the job will write, known before it starts: the master, or a rendition
            # already in the cache (one still to be made is recorded once it is made)
            if action.rendition_id:
                known = self.transformer.cache.expected(action.rendition_id)
                job.expected_checksum, job.expected_size = known or (None, None)
            else:
                job.expected_checksum, job.expected_size = action.checksum, action.size_bytes
            if status == "deferred":
                job.error = f"rate limit reached; eligible at {eligible:%Y-%m-%d %H:%M:%S} UTC"
            jobs.append(job)
            rows.append(
                (
                    job.code,
                    job.config_id,
                    job.asset_id,
                    job.platform_id,
                    job_type,
                    job.status,
                    0,
                    action.source_version,
                    action.target_version,
                    job.completed_at,
                    job.error,
                    0,
                    now,
                    self.run_id,
                    key,
                    job.previous_key,
                    job.expected_checksum,
                    action.metadata_hash,
                    action.transform_hash,
                    job.eligible_at,
                    self.provenance.commit,
                    self.provenance.dirty,
                    action.rendition_id,
                    action.checksum,
                    job.expected_size,
                )
            )
        new_ids = insert_rows(
            con,
            "sync_jobs",
            (
                "job_code",
                "config_id",
                "asset_id",
                "platform_id",
                "job_type",
                "status",
                "progress_percent",
                "source_version",
                "target_version",
                "completed_at",
                "error_message",
                "retry_count",
                "created_at",
                "run_id",
                "remote_key",
                "previous_key",
                "expected_checksum",
                "metadata_hash",
                "transform_hash",
                "eligible_at",
                "git_commit",
                "git_dirty",
                "rendition_id",
                "source_checksum",
                "expected_size",
            ),
            rows,
        )
        for job, job_id in zip(jobs, new_ids, strict=True):
            job.id = job_id
        return jobs

    def _start_events(self, jobs: list[Job], health: dict[str, tuple[str, str]]) -> list[EventRow]:
        events = [
            EventRow(
                "health_check",
                "success" if status != HealthStatus.DOWN else "failed",
                f"{platform} is {status}: {detail}",
                {"platform": platform},
            )
            for platform, (status, detail) in health.items()
        ]
        for job in jobs:
            if job.status == "deferred":
                events.append(
                    EventRow(
                        "deferred",
                        "deferred",
                        job.error or "deferred",
                        {"eligible_at": f"{job.eligible_at:%Y-%m-%dT%H:%M:%SZ}"},
                        job.id,
                        job.pa_id,
                    )
                )
            elif job.status == "failed":
                events.append(
                    EventRow(
                        "upload_start", "failed", job.error or "failed", None, job.id, job.pa_id
                    )
                )
        return events

    # 3. run -------------------------------------------------------------------------------
    def run(self, jobs: list[Job]) -> None:
        todo = [j for j in jobs if j.status == "pending"]
        self.observer.run_started(jobs)
        self.recorder.start()
        try:
            with ThreadPoolExecutor(max_workers=max(1, self.options.parallel)) as pool:
                list(pool.map(self.run_job, todo))
        finally:
            try:
                self.recorder.stop()
                self.finish_drivers()
            finally:
                self.observer.run_finished()
        if self.recorder.failure is not None:
            raise StateError(f"recording the run failed: {self.recorder.failure}")

    def stopping(self) -> bool:
        stop = self.options.stop
        if stop is None or not stop.is_set():
            return False
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        return True

    def run_job(self, job: Job) -> None:
        rec = self.recorder
        if self.stopping():  # not started: it waits for the next run
            job.status, job.error = "deferred", "the run was stopping before it started"
            rec.job(job)
            rec.event(self.event(job, "deferred", "deferred", job.error), job)
            return
        job.status, job.started_at = "processing", utcnow()
        rec.job(job)
        if job.job_type in ("initial", "update"):
            rec.placement(
                job.pa_id,
                PlacementRecord(job.action.asset, job.action.platform, job.action.rule, "syncing"),
            )
        start_type = {"delete": "delete_start", "metadata": "metadata_start"}.get(
            job.job_type, "upload_start"
        )
        verb = {"delete": "deleting from", "metadata": "updating metadata on"}.get(
            job.job_type, "uploading to"
        )
        rec.event(self.event(job, start_type, "success", f"{verb} {job.action.platform}"), job)
        self.observer.job_started(job)
        try:
            retrying = Retrying(
                stop=stop_after_attempt(self.options.max_attempts),
                wait=self._wait,
                retry=retry_if_exception_type(TemporaryError),
                before_sleep=lambda state: self._retrying(job, state),
                reraise=True,
            )
            self._attempts(job, retrying)
            job.status, job.progress = "completed", 100.0
        except Cancelled:
            self._fail(job, "interrupted by shutdown; the next run sends it again")
        except Deferred as exc:
            self._defer(job, exc)
        except TemporaryError as exc:
            self._fail(job, f"gave up after {self.options.max_attempts} attempts: {exc}")
        except PermanentError as exc:
            self._fail(job, str(exc))
        except Exception as exc:  # a driver bug must not kill the run
            self._fail(job, redact(f"unexpected {type(exc).__name__}: {exc}"))
        job.completed_at = utcnow()
        rec.job(job)
        self.observer.job_finished(job)

    def _attempts(self, job: Job, retrying: Retrying) -> None:
        """Every attempt of one job. An upload opens its master once, safely, for all of its
        attempts; whatever it sends is read from that descriptor."""
        if job.job_type == "delete":
            retrying(self.transfer.delete, job)
        elif job.job_type == "metadata":
            retrying(self.transfer.metadata, job)
        else:
            assert job.action.path is not None
            with opened_master(job.action.path, str(self.manifests.media_root)) as master:
                retrying(self.transfer.upload, job, master)

    def event(
        self, job: Job, kind: str, status: str, message: str, details: dict[str, Any] | None = None
    ) -> EventRow:
        return EventRow(kind, status, redact(message), redact_value(details), job.id, job.pa_id)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TemporaryError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.options.backoff_max)
        backoff = wait_random_exponential(
            multiplier=self.options.backoff_base, max=self.options.backoff_max
        )
        return backoff(state)

    def _retrying(self, job: Job, state: RetryCallState) -> None:
        job.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        self.recorder.job(job)
        self.recorder.event(
            self.event(
                job,
                "retry",
                "retrying",
                f"attempt {state.attempt_number} failed ({exc}); retrying in {wait:.1f} s",
                {"attempt": state.attempt_number, "wait_seconds": round(wait, 3)},
            ),
            job,
        )

    def _defer(self, job: Job, exc: Deferred) -> None:
        """The platform takes no more work until a known time: the job waits for it."""
        job.status, job.error, job.eligible_at = "deferred", redact(str(exc)), exc.until
        if job.job_type in ("initial", "update"):
            self.recorder.placement(
                job.pa_id,
                PlacementRecord(job.action.asset, job.action.platform, job.action.rule, "pending"),
            )
        self.recorder.event(
            self.event(
                job,
                "deferred",
                "deferred",
                str(exc),
                {"eligible_at": f"{exc.until:%Y-%m-%dT%H:%M:%SZ}"},
            ),
            job,
        )

    def _fail(self, job: Job, message: str) -> None:
        job.status, job.error = "failed", redact(message)
        if job.job_type in ("initial", "update"):
            self.recorder.placement(
                job.pa_id,
                PlacementRecord(job.action.asset, job.action.platform, job.action.rule, "failed"),
            )
        kind = {"delete": "delete", "metadata": "metadata_update"}.get(
            job.job_type, "upload_complete"
        )
        self.recorder.event(self.event(job, kind, "failed", message), job)

    def progress(self, job: Job, sent: int) -> None:
        if (
            self.stopping()
            and self.stopping_since is not None
            and (time.monotonic() - self.stopping_since > self.options.grace)
        ):
            raise Cancelled(job.code)
        total = job.total_bytes or 0
        if total:
            job.progress = min(100.0, 100.0 * sent / total)
            step = int(job.progress // 25)
            if total >= PROGRESS_EVENT_MIN_BYTES and 0 < step < 4 and step > job._progress_step:
                job._progress_step = step
                self.recorder.event(
                    self.event(
                        job,
                        "upload_progress",
                        "success",
                        f"upload at {step * 25}%",
                        {"bytes": sent, "of": total},
                    ),
                    job,
                )
            if total >= PROGRESS_EVENT_MIN_BYTES:  # a small file's row is written when it ends
                self.recorder.job(job)
        self.observer.job_progress(job, sent)


def apply_plan(
    manifests: ManifestSet,
    store: StateStore,
    plan: Plan,
    options: ApplyOptions | None = None,
    observer: Observer | None = None,
    recovered: list[str] | None = None,
) -> ApplyResult:
    """Carry out the plan's changes (narrowed by --rule / --platform). Hold the run lock."""
    options = options or ApplyOptions()
    run = Run(manifests, store, options, observer)
    actions = narrow(plan.actions, options)
    jobs = run.start(plan, actions)
    run.run(jobs)
    run.transformer.finish()
    with store.reading() as con:
        row = (
            con.execute(
                "SELECT count(*) FROM sync_conflicts WHERE resolution = 'pending'"
            ).fetchone()
            if con is not None
            else (0,)
        )
    return ApplyResult(
        run_id=run.run_id,
        jobs=jobs,
        blocked=[a for a in actions if a.action == "blocked"],
        held=[a for a in actions if a.action == "held"],
        waiting=[a for a in actions if a.is_change and not runs_now(a, options)],
        recovered=recovered or [],
        open_conflicts=int(row[0]) if row else 0,
    )


def recover(manifests: ManifestSet, store: StateStore) -> list[str]:
    """Close the jobs an interrupted run left open. Hold the run lock."""
    return Run(manifests, store, ApplyOptions()).recover()
