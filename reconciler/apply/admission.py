"""Admission: which of a plan's changes run now, and one job row for each of them.

Called by :class:`reconciler.apply.run.Run` before any transfer, in one write transaction:

1. record the manifests' objects (:mod:`.objects`) and the hash cache;
2. health-check each platform the changes go to (a broken check means down);
3. triage, in plan order (highest priority first): a change for a platform that is down
   fails at once; one beyond its platform's hourly rate budget (the calls of the last hour,
   counted in the state) is deferred to when the budget frees up; the others run;
4. record their copies as pending (or failed) and create one job per change, with what it
   will write when that is already known;
5. log the health checks and the jobs that do not run, and keep the scheduled rules' clocks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from reconciler.apply import health as platform_health
from reconciler.apply.health import Health
from reconciler.apply.job import JOB_TYPES, ApplyOptions, Job, expected_bytes
from reconciler.apply.objects import record_objects
from reconciler.apply.queue import work_spec
from reconciler.drivers.base import Driver
from reconciler.model import (
    ActionKind,
    EventStatus,
    EventType,
    JobStatus,
    JobType,
    ManifestSet,
    SyncStatus,
)
from reconciler.plan.actions import Action, Plan, remote_key
from reconciler.plan.schedule import next_occurrence, timing
from reconciler.provenance import Provenance
from reconciler.store import hash_cache
from reconciler.store.db import Connection, Store, utcnow
from reconciler.store.jobs import (
    NewJob,
    Schedule,
    hourly_calls,
    insert_jobs,
    intended_checksums,
    record_schedules,
    scheduled_runs,
)
from reconciler.store.placements import (
    Latest,
    ObjectIds,
    PlacementRecord,
    latest_placements,
    object_ids,
    record_health,
    record_placements,
    recorded_objects,
)
from reconciler.store.queue import analyze, queued_placements
from reconciler.store.records import EventRow, insert_events
from reconciler.transforms.renditions import RenditionCache


def runs_now(action: Action, options: ApplyOptions) -> bool:
    """A change runs unless it waits for its schedule or an explicit run; naming its rule
    with --rule is that explicit run."""
    return action.is_change and (action.waiting is None or action.rule == options.rule)


@dataclass
class Triage:
    """The changes of a run, sorted: run now, wait until a time, or fail (platform down)."""

    runnable: list[Action]
    deferred: list[tuple[Action, datetime]]
    down: list[Action]


@dataclass(frozen=True)
class Admission:
    """What admission needs of the run."""

    manifests: ManifestSet
    store: Store
    options: ApplyOptions
    run_id: str
    provenance: Provenance
    driver: Callable[[str], Driver]
    cache: RenditionCache

    def admit(
        self, plan: Plan, actions: list[Action], busy_before: frozenset[tuple[str, str]]
    ) -> tuple[list[Job], list[Action]]:
        """The run's jobs, recorded with their copies and the run's first events; and the
        changes left out because a queued job for their copy is not done yet, or was not
        when the plan began (``busy_before``: a worker may have finished it since, after
        the plan had read the copy as it was)."""
        changes = [a for a in actions if runs_now(a, self.options)]
        now = utcnow()
        queue = self.options.queue  # health and budgets are the claiming workers' to check
        health = {} if queue else platform_health.check(self.driver, {a.platform for a in changes})
        observed = plan.observed
        with self.store.writing() as con:
            record_objects(con, self.manifests, observed.files if observed else {})
            if observed is not None:
                hash_cache.save(con, observed.new_cache)
            record_health(con, {p: status for p, (status, _) in health.items()}, now)
            busy = queued_placements(con) | busy_before
            waiting_for_worker = [a for a in changes if (a.asset, a.platform) in busy]
            changes = [a for a in changes if (a.asset, a.platform) not in busy]
            triage = self.triage(changes, health, {} if queue else hourly_calls(con, now), now)
            waiting = triage.runnable + [a for a, _ in triage.deferred]
            uploads = (ActionKind.CREATE, ActionKind.UPDATE, ActionKind.IMPORT, ActionKind.ADOPT)
            record_placements(
                con,
                [PlacementRecord(a.asset, a.platform, a.rule, SyncStatus.PENDING)
                 for a in waiting if a.action in uploads]
                + [PlacementRecord(a.asset, a.platform, a.rule, SyncStatus.FAILED)
                   for a in triage.down
                   if a.action in (ActionKind.CREATE, ActionKind.IMPORT, ActionKind.ADOPT)],
            )  # fmt: skip
            jobs = self.create_jobs(con, triage, now, health)
            insert_events(con, start_events(jobs, health, queue), self.provenance)
            if queue and jobs:
                analyze(con)
            self.record_schedules(con, triage.runnable, now)
        return jobs, waiting_for_worker

    def triage(
        self,
        changes: list[Action],
        health: Health,
        budgets: dict[str, tuple[int, datetime | None]],
        now: datetime,
    ) -> Triage:
        """Sort the changes in plan order, spending each platform's hourly budget."""
        triage = Triage([], [], [])
        spent: Counter[str] = Counter()
        for action in changes:  # in plan order: highest priority first
            if platform_health.is_down(health, action.platform):
                triage.down.append(action)
                continue
            limit = self.manifests.platforms[action.platform].rate_limit_per_hour
            limit = None if self.options.queue else limit
            used, oldest = budgets.get(action.platform, (0, None))
            if limit is not None and used + spent[action.platform] >= limit:
                triage.deferred.append((action, (oldest or now) + timedelta(hours=1)))
                continue
            spent[action.platform] += 1
            triage.runnable.append(action)
        return triage

    def create_jobs(
        self, con: Connection, triage: Triage, now: datetime, health: Health
    ) -> list[Job]:
        """One job per triaged change, inserted in one statement."""
        ids = object_ids(con)
        recorded = latest_placements(con)
        # what the last failed job of each placement set out to write: if the platform holds
        # exactly that, it is this tool's own write (a run killed when recovery could not
        # look); completed jobs need no such memory, their bytes are the recorded ones
        intended = intended_checksums(con)
        # the objects already recorded as copies, on the platforms of imports: an import of
        # one of them would make one object two assets' copy
        taken = {
            platform: frozenset(set.union(*recorded_objects(con, platform)))
            for platform in {a.platform for a in triage.runnable if a.action == ActionKind.IMPORT}
        }
        entries: list[tuple[Action, JobStatus, datetime | None, str | None]] = [
            *((a, JobStatus.PENDING, None, None) for a in triage.runnable),
            *((a, JobStatus.DEFERRED, when, None) for a, when in triage.deferred),
            *((a, JobStatus.FAILED, None, f"the platform is down: {health[a.platform][1]}")
              for a in triage.down),
        ]  # fmt: skip
        jobs = [
            self._job(n, action, status, eligible, error, recorded, intended, ids, now)
            for n, (action, status, eligible, error) in enumerate(entries, start=1)
        ]
        for job in jobs:
            job.taken = taken.get(job.action.platform, frozenset())
        new_ids = insert_jobs(con, [self._row(job, now) for job in jobs])
        for job, job_id in zip(jobs, new_ids, strict=True):
            job.id = job_id
        return jobs

    def _job(
        self,
        n: int,
        action: Action,
        status: JobStatus,
        eligible: datetime | None,
        error: str | None,
        recorded: dict[tuple[str, str], Latest],
        intended: dict[tuple[str, str], str],
        ids: ObjectIds,
        now: datetime,
    ) -> Job:
        latest = recorded.get((action.asset, action.platform))
        assert latest is not None, "placements were recorded before their jobs"
        old_key = latest.remote_key
        job_type = JOB_TYPES[ActionKind(action.action)]
        # a copy stays at its key but when it moves; one this tool did not make (adopted,
        # imported) is updated where it is
        stays = (JobType.DELETE, JobType.METADATA) + (() if latest.managed else (JobType.UPDATE,))
        key = old_key if job_type in stays and old_key else None
        key = key or remote_key(action)
        rule = self.manifests.rules.get(action.rule or "")
        job = Job(
            id=0,
            code=f"{self.run_id}-{n:05d}",
            action=action,
            job_type=job_type,
            key=key,
            previous_key=old_key if old_key != key else None,
            previous_remote_checksum=latest.remote_checksum,
            intended_checksum=intended.get((action.asset, action.platform)),
            platform_id=ids.platforms[action.platform],
            asset_id=ids.assets[action.asset],
            config_id=ids.rules.get(action.rule or "", 0),
            pa_id=latest.id,
            on_conflict=rule.on_conflict if rule else "manual",
            status=status,
            eligible_at=eligible,
            error=error,
            completed_at=now if status == JobStatus.FAILED else None,
            keeps_owner=latest.imported,
        )
        # what the job will write, known before it starts: the master, or a rendition
        # already in the cache (one still to be made is recorded once it is made)
        job.expected_checksum, job.expected_size = expected_bytes(action, self.cache)
        if status == JobStatus.DEFERRED:
            job.error = f"rate limit reached; eligible at {eligible:%Y-%m-%d %H:%M:%S} UTC"
        return job

    def _row(self, job: Job, now: datetime) -> NewJob:
        action = job.action
        return NewJob(
            job_code=job.code,
            config_id=job.config_id,
            asset_id=job.asset_id,
            platform_id=job.platform_id,
            job_type=job.job_type,
            status=job.status,
            source_version=action.source_version,
            target_version=action.target_version,
            completed_at=job.completed_at,
            error_message=job.error,
            created_at=now,
            run_id=self.run_id,
            remote_key=job.key,
            previous_key=job.previous_key,
            expected_checksum=job.expected_checksum,
            metadata_hash=action.metadata_hash,
            transform_hash=action.transform_hash,
            eligible_at=job.eligible_at,
            git_commit=self.provenance.commit,
            git_dirty=self.provenance.dirty,
            rendition_id=action.rendition_id,
            source_checksum=action.checksum,
            expected_size=job.expected_size,
            queued=True if self.options.queue else None,
            priority=action.priority,
            work_spec=work_spec(job) if self.options.queue else None,
        )

    def record_schedules(self, con: Connection, ran: list[Action], now: datetime) -> None:
        """A due scheduled rule that ran now has its clock reset; record when each
        scheduled rule runs next, for `reconcile status`."""
        ran_rules = {a.rule for a in ran}
        schedules = []
        for code, last_run in scheduled_runs(con).items():
            rule = self.manifests.rules.get(code)
            if rule is None or not rule.schedule_cron:
                continue
            if code in ran_rules and timing(rule, last_run, now).due:
                last_run = now
            upcoming = next_occurrence(rule.schedule_cron, last_run) if last_run else None
            schedules.append(Schedule(code, last_run, upcoming))
        record_schedules(con, schedules)


def start_events(jobs: list[Job], health: Health, queue: bool = False) -> list[EventRow]:
    """The health checks, and the jobs that do not run now (deferred, or failed: down, or
    queued for a worker)."""
    events = platform_health.events(health)
    for job in jobs:
        if queue and job.status == JobStatus.PENDING:
            message = f"queued for a worker: {job.job_type} on {job.action.platform}"
            events.append(
                EventRow(EventType.QUEUED, EventStatus.SUCCESS, message, None, job.id, job.pa_id)
            )
        elif job.status == JobStatus.DEFERRED:
            events.append(
                EventRow(
                    EventType.DEFERRED,
                    EventStatus.DEFERRED,
                    job.error or "deferred",
                    {"eligible_at": f"{job.eligible_at:%Y-%m-%dT%H:%M:%SZ}"},
                    job.id,
                    job.pa_id,
                )
            )
        elif job.status == JobStatus.FAILED:
            events.append(
                EventRow(
                    EventType.UPLOAD_START,
                    EventStatus.FAILED,
                    job.error or "failed",
                    None,
                    job.id,
                    job.pa_id,
                )
            )
    return events
