"""Use cases of the job queue: `reconcile worker` (claim and run queued jobs) and `reconcile
workers` (the fleet), over a shared PostgreSQL state. `reconcile --queue` itself is
:func:`reconciler.ops.reconcile` with ``Options.queue``: it plans and admits as always, and
writes the jobs for workers instead of running them.

A worker holds a lease of its own (``run_lease`` row ``worker:ID``; heartbeat, TTL,
fencing token), not the run lock, so that any number of workers and one planner work side by
side. Each write a worker makes is fenced by that lease: a worker whose lease was taken over
while it was stopped or cut off writes nothing more, and cancels its transfer in flight at
the next block. It runs each job through the same worker and transfer code as a local apply
(:mod:`reconciler.apply.worker`), takes back the jobs of lost workers after checking what
landed (:func:`reconciler.apply.recovery.reclaim_jobs`), and, told to stop (SIGTERM), claims
nothing more, gives its transfers in flight a few seconds, and hands back what is unfinished.

Called by the CLI (:mod:`reconciler.cli.queue`); results in, results out, no printing.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.apply import health as platform_health
from reconciler.apply.job import ApplyOptions, Job, NullObserver, Observer
from reconciler.apply.queue import Feed, Filters
from reconciler.apply.recovery import reclaim_jobs
from reconciler.apply.run import Run
from reconciler.errors import ExitCode, StateError, UsageError
from reconciler.model import JobStatus, ManifestSet
from reconciler.store.db import Location, PgStore, utcnow
from reconciler.store.fleet import WorkerRow
from reconciler.store.fleet import workers as fleet_rows
from reconciler.store.migrations import latest_version
from reconciler.store.pg import PgLocation
from reconciler.store.placements import record_health
from reconciler.store.queue import WORKER_LEASE, Claimed, fail, hand_back, register
from reconciler.store.records import EventRow, insert_events
from reconciler.transforms.renditions import DEFAULT_MAX_BYTES

STOP_GRACE = 5.0  # seconds a transfer in flight may take after SIGTERM (all done within 10 s)
LOOK_SECONDS = 2.0  # how often a worker looks whether its manifests changed
FLUSH_PATIENCE = 5.0  # seconds an idle worker waits to write its reports before it looks


def needs_queue(state: Location) -> PgLocation:
    """The PostgreSQL state the queue lives in; a one-line usage error for a DuckDB file."""
    if not isinstance(state, PgLocation):
        raise UsageError(
            "the job queue lives in a shared PostgreSQL state (--state postgresql://...); "
            "with a DuckDB file, `reconcile` runs its jobs itself"
        )
    return state


@dataclass(frozen=True)
class WorkerOptions:
    """The flags of `reconcile worker`."""

    concurrency: int = 4  # jobs at once in this process
    platform: str | None = None  # only this platform's jobs
    rule: str | None = None  # only this rule's jobs
    exit_when_idle: bool = False  # exit once the queue holds nothing to do
    stop: threading.Event = field(default_factory=threading.Event, compare=False)
    renditions: Path | None = None  # the rendition cache: shared by the workers of a host
    renditions_max_bytes: int = DEFAULT_MAX_BYTES
    grace: float = STOP_GRACE


@dataclass
class Worked:
    """What one worker did, as `reconcile worker` reports it when it ends."""

    worker_id: str
    counts: Counter[str] = field(default_factory=Counter)  # finished jobs by JobStatus
    reclaimed: list[str] = field(default_factory=list)  # notes on lost workers' jobs
    handed_back: int = 0
    unrunnable: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        failed = self.counts[JobStatus.FAILED] or self.unrunnable
        return ExitCode.PARTIAL if failed else ExitCode.OK


class _Counting(NullObserver):
    """Passes a run's reports on, counting how its jobs end."""

    def __init__(self, inner: Observer, counts: Counter[str]) -> None:
        self.inner = inner
        self.counts = counts

    def job_started(self, job: Job) -> None:
        self.inner.job_started(job)

    def job_progress(self, job: Job, sent: int) -> None:
        self.inner.job_progress(job, sent)

    def job_finished(self, job: Job) -> None:
        self.counts[str(job.status)] += 1
        self.inner.job_finished(job)

    def event(self, event: EventRow, job: Job | None) -> None:
        self.inner.event(event, job)

    def run_finished(self) -> None:
        self.inner.run_finished()


def new_worker_id() -> str:
    """host:pid:nonce; the nonce tells apart two workers that got the same pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class ManifestWatch:
    """Whether the files of a manifests folder changed since the last look (their names,
    sizes and modification times), looked at no more than every :data:`LOOK_SECONDS`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen = self._signature()
        self.looked = time.monotonic()

    def _signature(self) -> list[tuple[str, int, int]]:
        found = []
        for top, _dirs, files in os.walk(self.folder):
            for name in files:
                try:
                    st = os.stat(os.path.join(top, name))
                except OSError:
                    continue
                found.append((os.path.join(top, name), st.st_size, st.st_mtime_ns))
        return sorted(found)

    def changed(self) -> bool:
        if time.monotonic() - self.looked < LOOK_SECONDS:
            return False
        self.looked = time.monotonic()
        now = self._signature()
        if now == self.seen:
            return False
        self.seen = now
        return True


def work(
    manifests: ManifestSet,
    state: Location,
    lock_timeout: float,
    options: WorkerOptions,
    observer: Observer | None = None,
    reload: Callable[[], ManifestSet | None] | None = None,
) -> Worked:
    """Claim and run queued jobs until told to stop (or, with ``exit_when_idle``, until
    the queue has nothing left to do). With ``reload`` (which gives the manifests read
    afresh, or None when they are invalid now: the last good ones stay), a worker whose
    manifests changed, or that claims a job for an asset they do not declare yet (a new
    file an AssetSet found), finishes its jobs in flight and goes on with fresh ones."""
    location = needs_queue(state)
    worker_id = new_worker_id()
    store = PgStore(location, lock_timeout, "reconcile worker", lease=WORKER_LEASE + worker_id)
    worked = Worked(worker_id)
    version = store.schema_version() or 0
    if version < latest_version():  # migrating is the run lock's, not any worker's, to do
        raise StateError(
            f"{store.label} has schema version {version}; a worker needs version "
            f"{latest_version()}, which `reconcile --queue` (under the run lock) migrates it to"
        )
    with store.session():
        with store.writing() as con:
            register(con, worker_id, socket.gethostname(), os.getpid(), utcnow(),
                     options.concurrency, options.platform, options.rule)  # fmt: skip
        watching = ManifestWatch(Path(manifests.manifests_dir)) if reload else None
        retried: set[int] = set()
        try:
            while True:
                feed = _feed(manifests, store, worker_id, options, worked, observer, retried,
                             watching.changed if watching else lambda: False)  # fmt: skip
                if not feed.reloading or options.stop.is_set() or reload is None:
                    break
                fresh = reload()
                if fresh is not None:
                    manifests = fresh
        finally:
            if store.lock.lost_error() is None:
                with store.writing() as con:
                    worked.handed_back = len(hand_back(con, worker_id, utcnow()))
    return worked


def _feed(
    manifests: ManifestSet,
    store: PgStore,
    worker_id: str,
    options: WorkerOptions,
    worked: Worked,
    observer: Observer | None,
    retried: set[int],
    changed: Callable[[], bool],
) -> Feed:
    """Run the queue with these manifests until the feed ends; the feed, which says why."""
    applying = ApplyOptions(
        parallel=options.concurrency,
        rule=options.rule,
        platform=options.platform,
        stop=options.stop,
        grace=options.grace,
        renditions=options.renditions,
        renditions_max_bytes=options.renditions_max_bytes,
    )
    run = Run(manifests, store, applying, _Counting(observer or NullObserver(), worked.counts))
    # the platforms this worker serves, checked as an apply checks them (`reconcile status`
    # shows the worker's view; a platform that is down fails its jobs' attempts as it would)
    serves = [p for p in manifests.platforms if options.platform in (None, p)]
    health = platform_health.check(run.driver, serves)
    with store.writing() as con:
        record_health(con, {p: status for p, (status, _) in health.items()}, utcnow())
        insert_events(con, platform_health.events(health), run.provenance)

    def reclaim() -> None:
        worked.reclaimed += reclaim_jobs(
            manifests, store, run.driver, run.transformer.cache, run.provenance, worker_id
        )

    def unrunnable(row: Claimed, why: str) -> None:
        worked.unrunnable.append(why)
        with store.writing() as con:
            fail(con, row.id, why, utcnow())

    filters = Filters(options.platform, options.rule)
    feed = Feed(
        store, worker_id, manifests, filters, options.stop, options.exit_when_idle, reclaim,
        store.lock.ttl / 2, unrunnable, changed, retried,
        lambda: run.recorder.flush_now(FLUSH_PATIENCE),
    )  # fmt: skip
    run.run_feed(feed)
    run.transformer.finish()  # the cache within its bound (renditions others hold stay)
    return feed


def fleet(state: Location, lock_timeout: float) -> list[WorkerRow]:
    """Every worker that ever started on the state: live, lost or stopped."""
    location = needs_queue(state)
    store = PgStore(location, lock_timeout, "reconcile workers")
    with store.reading() as con:
        return [] if con is None else fleet_rows(con)
