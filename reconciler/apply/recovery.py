"""Recovery: close the jobs an interrupted run (a crash, a ``kill -9``) left pending or
processing, by what the platform really holds.

Called first by every apply (:meth:`reconciler.apply.run.Run.recover`), under the run lock. Each
stale job recorded, before its first byte, what it was about to write: the sha256 of the
master, or its rendition id, and once the rendition was made its sha256 and size. When the
rendition's sha256 did not reach the state file (it is written as soon as the file is free),
the rendition cache still knows it by the id. A job whose object is on the platform with
exactly that checksum is completed (the run had finished the transfer); any other is failed
and planned again. Partial uploads on those platforms are then removed (a local part file,
the multipart uploads this tool recorded on S3), and what the drivers could not write is
written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from reconciler.drivers.base import Driver
from reconciler.model import EventStatus, EventType, JobStatus, JobType, ManifestSet, SyncStatus
from reconciler.provenance import Provenance
from reconciler.redact import redact
from reconciler.store.db import Store, utcnow
from reconciler.store.jobs import (
    JobState,
    StaleJob,
    close_jobs,
    jobs_to_check,
    stale_jobs,
    uploading_platforms,
)
from reconciler.store.placements import PlacementRecord, record_placements
from reconciler.store.queue import live_workers, requeue, take_lost
from reconciler.store.records import EventRow, insert_events
from reconciler.transforms.renditions import STALE_WORK_SECONDS, RenditionCache

INTERRUPTED = "interrupted: the run doing it stopped before it finished"


@dataclass
class Closing:
    """What recovery writes, gathered before one write transaction."""

    jobs: list[JobState] = field(default_factory=list)
    placements: list[PlacementRecord] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    requeued: list[int] = field(default_factory=list)  # queued jobs that go back to pending


def recover_jobs(
    manifests: ManifestSet,
    store: Store,
    driver: Callable[[str], Driver],
    cache: RenditionCache,
    provenance: Provenance,
    finish: Callable[[], None],
) -> list[str]:
    """Close every stale job; returns one note per job and per cleanup. ``finish`` writes
    what the drivers could not."""
    with store.reading() as con:
        if con is None:
            cache.sweep_work(0)
            return []
        stale = stale_jobs(con)
        aborting = uploading_platforms(con)
        workers = live_workers(con)
    # under the run lock, every work file is a dead run's; not a live worker's
    cache.sweep_work(STALE_WORK_SECONDS if workers else 0)
    if not stale and not aborting:
        return []
    now = utcnow()
    closing = Closing()
    # partial uploads first: what stat then finds is only what really landed (and a multipart
    # upload a failed cleanup left recorded is tried again, whatever jobs are stale)
    platforms = sorted(({job.platform for job in stale} | aborting) & set(manifests.platforms))
    if not workers:  # their part files and multipart uploads are in flight, not left over
        closing.notes += _clean_up(driver, platforms, closing.events)
    for job in stale:
        _close(job, manifests, driver, cache, now, closing)
    with store.writing() as con:
        close_jobs(con, closing.jobs)
        record_placements(con, closing.placements)
        insert_events(con, closing.events, provenance)
    finish()
    return closing.notes


def _landed(
    job: StaleJob, manifests: ManifestSet, driver: Callable[[str], Driver], expected: str | None
) -> tuple[bool, str]:
    """Whether the job's work is on the platform, and the reason to record when not (a
    platform that cannot be asked counts as holding nothing)."""
    if job.platform not in manifests.platforms or not job.remote_key:
        return False, INTERRUPTED
    reason = INTERRUPTED
    asked = True
    try:
        remote = driver(job.platform).stat(job.remote_key)
    except Exception as exc:  # recovery must go on
        remote, asked = None, False
        reason = redact(f"{reason}; checking the platform failed: {exc}")
    if job.job_type == JobType.DELETE:  # gone, as far as a platform that answered says
        return asked and remote is None, reason
    if job.job_type in (JobType.INITIAL, JobType.UPDATE):
        landed = expected is not None and remote is not None and remote.checksum == expected
        return landed, reason
    return False, reason


def _close(
    job: StaleJob,
    manifests: ManifestSet,
    driver: Callable[[str], Driver],
    cache: RenditionCache,
    now: datetime,
    closing: Closing,
    lost_worker: str | None = None,
) -> None:
    """Close one stale job as completed (its work landed) or failed; a queued job taken from
    ``lost_worker`` whose work had not landed goes back to the queue instead."""
    expected = job.expected_checksum
    if expected is None and job.rendition_id:  # made, but not recorded before the kill
        known = cache.expected(job.rendition_id)
        expected = known[0] if known else None
    landed, reason = _landed(job, manifests, driver, expected)
    if landed:
        done = _closed(job, JobStatus.COMPLETED, now, progress=100.0, expected=expected)
        closing.jobs.append(done)
        closing.placements.append(_landed_copy(job, expected, now))
        message = f"job {job.code} had finished on the platform before the run stopped"
        if lost_worker is not None:
            message = (
                f"job {job.code} had finished on the platform before worker {lost_worker} was lost"
            )
        if job.job_type == JobType.UPDATE:  # what the finished upload replaced goes, as it would
            closing.notes += _remove_replaced(driver, job)
    elif lost_worker is not None:
        closing.requeued.append(job.id)
        if job.job_type in (JobType.INITIAL, JobType.UPDATE):
            closing.placements.append(
                PlacementRecord(job.asset, job.platform, job.rule, SyncStatus.PENDING)
            )
        message = (
            f"job {job.code} of worker {lost_worker}, which stopped renewing its lease, went "
            "back to the queue: its work had not landed"
        )
    else:
        closing.jobs.append(_closed(job, JobStatus.FAILED, now, error=reason))
        if job.job_type in (JobType.INITIAL, JobType.UPDATE):
            closing.placements.append(
                PlacementRecord(job.asset, job.platform, job.rule, SyncStatus.FAILED)
            )
        message = f"job {job.code} was {reason}; it will be planned again"
    details: dict[str, object] = {"job": job.code, "landed": landed}
    if lost_worker is not None:
        details["lost_worker"] = lost_worker
    closing.events.append(
        EventRow(
            EventType.RECOVERED if lost_worker is None else EventType.RECLAIMED,
            EventStatus.SUCCESS if landed or lost_worker else EventStatus.FAILED,
            message,
            details,
            job_id=job.id,
        )
    )
    closing.notes.append(message)


def _closed(
    job: StaleJob,
    status: JobStatus,
    now: datetime,
    progress: float | None = None,
    error: str | None = None,
    expected: str | None = None,
) -> JobState:
    """The job's row as recovery closes it; what it leaves NULL stays as recorded."""
    return JobState(
        id=job.id,
        status=status,
        progress_percent=progress,
        started_at=None,
        completed_at=now,
        error_message=error,
        retry_count=None,
        eligible_at=None,
        expected_checksum=expected,
        expected_size=None,
        job_type=None,
    )


def _landed_copy(job: StaleJob, expected: str | None, now: datetime) -> PlacementRecord:
    if job.job_type == JobType.DELETE:
        return PlacementRecord(job.asset, job.platform, job.rule, SyncStatus.DELETED)
    # a job that had a new key (a create, a copy that moved) may have found these bytes
    # there and adopted them rather than sent them: whose they are cannot be told, so the
    # copy is never pruned until this tool writes it again
    ours: bool | None = job.job_type == JobType.UPDATE and not job.previous_key
    if job.imported:  # an imported object stays the team's
        ours = None
    return PlacementRecord(
        job.asset, job.platform, job.rule, SyncStatus.SYNCED, job.source_version,
        job.source_checksum or expected, expected, job.remote_key, None, job.remote_key,
        job.metadata_hash, job.transform_hash, ours, now, now, job.rendition_id or "",
    )  # fmt: skip


def _clean_up(
    driver: Callable[[str], Driver], platforms: list[str], events: list[EventRow]
) -> list[str]:
    """Remove the partial uploads an interrupted run left on these platforms."""
    notes = []
    for platform in platforms:
        try:
            removed = driver(platform).cleanup()
        except Exception as exc:
            notes.append(redact(f"cleaning up {platform} failed: {exc}"))
            continue
        if removed:
            message = f"removed {removed} partial uploads from {platform}"
            events.append(EventRow(EventType.CLEANUP, EventStatus.SUCCESS, message))
            notes.append(message)
    return notes


def _remove_replaced(driver: Callable[[str], Driver], job: StaleJob) -> list[str]:
    """An update killed after its new copy landed, before the old one went: the old key
    (a copy that moved, such as x.mp4 to x.mp4.enc) or the platform's previous object at the
    same key (a YouTube video) is removed now; a failure is a note, never lost silently."""
    platform, key, previous_key = job.platform, job.remote_key or "", job.previous_key
    target = driver(platform)
    try:
        if previous_key and previous_key != key:
            target.delete(previous_key)
            return [f"removed {previous_key} from {platform}, which the finished update replaced"]
        if target.replaced(key, job.previous_platform_id):
            return [f"removed the object {key} on {platform} replaced by the finished update"]
    except Exception as exc:
        return [redact(f"could not remove what the finished update replaced on {platform}: {exc}")]
    return []


def reclaim_jobs(
    manifests: ManifestSet,
    store: Store,
    driver: Callable[[str], Driver],
    cache: RenditionCache,
    provenance: Provenance,
    worker: str,
) -> list[str]:
    """Take back the queued jobs of workers that stopped renewing their lease, as ``worker``:
    each is checked on its platform as recovery checks a stale job, and is completed when its
    work had landed, else put back in the queue for any worker. Partial uploads are not
    swept here: other workers' are in flight on the same platforms (a resumable session is
    resumed by whichever worker claims the job next). One note per job."""
    now = utcnow()
    with store.writing() as con:
        taken = take_lost(con, worker, now)
        stale = jobs_to_check(con, list(taken))
    if not stale:
        return []
    closing = Closing()
    for job in stale:
        _close(job, manifests, driver, cache, now, closing, lost_worker=taken[job.id])
    by_id = {job.id: job for job in stale}
    with store.writing() as con:
        close_jobs(con, closing.jobs)
        for job_id in requeue(con, closing.requeued):  # a job that keeps losing its workers
            job = by_id[job_id]
            message = f"job {job.code} failed: it lost every worker that ran it"
            closing.events.append(EventRow(EventType.RECLAIMED, EventStatus.FAILED, message,
                                           {"job": job.code}, job_id=job_id))  # fmt: skip
            closing.placements = [
                p for p in closing.placements if (p.asset, p.platform) != (job.asset, job.platform)
            ] + [PlacementRecord(job.asset, job.platform, job.rule, SyncStatus.FAILED)]
            closing.notes.append(message)
        record_placements(con, closing.placements)
        insert_events(con, closing.events, provenance)
    return closing.notes
