"""Queued jobs as workers see them: what `reconcile --queue` writes for a job, the job a
worker rebuilds from its row, and the feed that claims them one at a time.

Admission (:mod:`.admission`) writes :func:`work_spec` beside each queued job. A worker
(:mod:`reconciler.queueing`) claims rows through :class:`Feed`, which turns each into a
:class:`~reconciler.apply.job.Job` for the same :class:`~reconciler.apply.worker.Worker` a
local run uses. The row is not trusted further than the state is: the master's path and
name come from the worker's own manifests and media root (a spec naming ``/etc/passwd``
names nothing the worker reads), the rendition recipe is checked against them as in any
run, and the transfer sends nothing that is not the planned checksum.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from reconciler.apply.job import Job
from reconciler.model import ManifestSet
from reconciler.plan.actions import Action
from reconciler.store.db import Store, utcnow
from reconciler.store.placements import recorded_objects
from reconciler.store.queue import (
    Claimed,
    Deferral,
    claim,
    deferral_events,
    drained,
    unclaim,
)

SPEC_VERSION = 1
POLL_SECONDS = 0.5  # how often an idle worker looks for new jobs


def work_spec(job: Job) -> str:
    """What a worker needs of a queued job beyond its row's columns, as JSON."""
    return json.dumps(
        {
            "version": SPEC_VERSION,
            "action": job.action.to_dict(),
            "pa_id": job.pa_id,
            "previous_remote_checksum": job.previous_remote_checksum,
            "intended_checksum": job.intended_checksum,
            "on_conflict": job.on_conflict,
            "keeps_owner": job.keeps_owner,
        },
        sort_keys=True,
        default=str,
    )


class Unrunnable(ValueError):
    """A queued job this worker cannot run: its row is not what `reconcile --queue` writes,
    or it names an asset or platform the worker's manifests do not declare (``undeclared``:
    perhaps not yet, since the worker read them)."""

    def __init__(self, message: str, undeclared: bool = False) -> None:
        super().__init__(message)
        self.undeclared = undeclared


def job_of(row: Claimed, manifests: ManifestSet) -> Job:
    """The job a claimed row describes, its master resolved through ``manifests``; anything
    else about the row that is not as `reconcile --queue` writes it is :class:`Unrunnable`."""
    try:
        return _job_of(row, manifests)
    except Unrunnable:
        raise
    except Exception as exc:  # a value of a wrong type anywhere in the row
        problem = f"job {row.job_code} is not a queued job this worker reads ({exc!r})"
        raise Unrunnable(problem) from None


def _job_of(row: Claimed, manifests: ManifestSet) -> Job:
    try:
        spec = json.loads(row.work_spec or "")
        if not isinstance(spec, dict) or spec.get("version") != SPEC_VERSION:
            raise ValueError("not a work spec of this version")
        action = Action.from_dict(dict(spec["action"]))
    except (ValueError, TypeError, KeyError) as exc:
        problem = f"job {row.job_code} is not a queued job this worker reads ({exc})"
        raise Unrunnable(problem) from None
    if action is None:
        raise Unrunnable(f"job {row.job_code} is of a kind this worker does not know")
    if not all(isinstance(v, str) for v in (action.asset, action.platform, row.job_type)):
        raise Unrunnable(f"job {row.job_code} is not a queued job this worker reads")
    if action.platform not in manifests.platforms:
        raise Unrunnable(
            f"job {row.job_code} is for platform {action.platform}, which this worker's "
            "manifests do not declare",
            undeclared=True,
        )
    declared = manifests.assets.get(action.asset)
    if declared is not None:  # never the path the row says: the worker's own
        action.path, action.file = declared.path, declared.file
    else:
        action.path = None
    if action.path is None and row.job_type not in ("delete", "metadata", "move"):
        raise Unrunnable(
            f"job {row.job_code} sends asset {action.asset}, which this worker's manifests "
            "do not declare",
            undeclared=True,
        )
    return Job(
        id=int(row.id),
        code=row.job_code,
        action=action,
        job_type=row.job_type,
        key=row.remote_key or "",
        previous_key=row.previous_key,
        previous_remote_checksum=_text(spec.get("previous_remote_checksum")),
        platform_id=int(row.platform_id),
        asset_id=int(row.asset_id),
        config_id=int(row.config_id),
        pa_id=int(spec.get("pa_id") or 0),
        on_conflict=str(spec.get("on_conflict") or "manual"),
        retries=int(row.retry_count or 0),
        intended_checksum=_text(spec.get("intended_checksum")),
        expected_checksum=row.expected_checksum,
        expected_size=row.expected_size,
        keeps_owner=spec.get("keeps_owner") is True,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass
class Filters:
    """Which queued jobs a worker takes: only a platform's, only a rule's."""

    platform: str | None = None
    rule: str | None = None


class Feed:
    """The jobs a worker runs, claimed one at a time as its threads become free.

    Iterating waits for claimable work, polling every :data:`POLL_SECONDS`; it ends when
    the worker is told to stop, or, with ``exit_when_idle``, once the queue holds nothing
    that is pending, being worked on, or eligible. Every ``reclaim_every`` seconds it first
    lets ``reclaim`` take back the jobs of lost workers. A row that cannot be run is
    reported to ``unrunnable`` (which fails it) and skipped.

    It also ends, with ``reloading`` set, when the worker's manifests changed (``changed``)
    or a claimed job names an asset or platform they do not declare: the job is put back
    (its id joins ``retried``, so that it fails if the fresh manifests lack it too), and
    the worker reads its manifests again once its jobs in flight are done.
    """

    def __init__(
        self,
        store: Store,
        worker_id: str,
        manifests: ManifestSet,
        filters: Filters,
        stop: threading.Event,
        exit_when_idle: bool,
        reclaim: Callable[[], None],
        reclaim_every: float,
        unrunnable: Callable[[Claimed, str], None],
        changed: Callable[[], bool] = lambda: False,
        retried: set[int] | None = None,
        settle: Callable[[], object] = lambda: None,
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        self.manifests = manifests
        self.filters = filters
        self.stop = stop
        self.exit_when_idle = exit_when_idle
        self.reclaim = reclaim
        self.reclaim_every = reclaim_every
        self.unrunnable = unrunnable
        self.changed = changed
        self.settle = settle  # writes what this worker has done, before it asks if all is
        self.retried = retried if retried is not None else set()
        self._reclaimed_at = float("-inf")
        self.reloading = False

    def __iter__(self) -> Iterator[Job]:
        return self

    def __next__(self) -> Job:
        while not self.stop.is_set() and not self.reloading:
            if self.changed():
                self.reloading = True
                break
            if time.monotonic() - self._reclaimed_at >= self.reclaim_every:
                self._reclaimed_at = time.monotonic()
                self.reclaim()
            job = self._claim()
            if job is not None:
                return job
            if self.reloading:
                break
            if self.exit_when_idle:
                self.settle()  # its own finished jobs must not read as in progress
            if self.exit_when_idle and self._idle():
                break
            self.stop.wait(POLL_SECONDS)
        raise StopIteration

    def _claim(self) -> Job | None:
        while True:
            deferred: list[Deferral] = []
            with self.store.writing() as con:
                row = claim(
                    con, self.worker_id, utcnow(), self.filters.platform, self.filters.rule,
                    deferred,
                )  # fmt: skip
            if deferred:  # the claim locked only rows; the events take the ids' lock
                with self.store.writing() as con:
                    deferral_events(con, deferred)
            if row is None:
                return None
            try:
                job = job_of(row, self.manifests)
            except Unrunnable as exc:
                if exc.undeclared and row.id not in self.retried:
                    self.retried.add(row.id)
                    with self.store.writing() as con:
                        unclaim(con, row.id)
                    self.reloading = True
                    return None
                self.unrunnable(row, str(exc))
                continue
            if job.job_type == "import":
                job.taken = self._taken(job.action.platform)
            return job

    def _taken(self, platform: str) -> frozenset[str]:
        """An import's: the platform's keys and ids that other copies hold already."""
        with self.store.reading() as con:
            if con is None:
                return frozenset()
            return frozenset(set().union(*recorded_objects(con, platform)))

    def _idle(self) -> bool:
        """Nothing left for any worker now: no queued job pending, eligible or being worked
        on (a job in flight elsewhere may still come back, if its worker is lost)."""
        with self.store.reading() as con:
            return con is None or drained(con, utcnow(), self.filters.platform, self.filters.rule)
