"""The transfers that adopt what is already out there: an import and a move send no media.

Called by :mod:`.worker` for the jobs of ``import`` and ``moved`` actions, inside its retry
loop, with the job's driver; each returns the job's
:class:`~reconciler.apply.job.Outcome` and raises the driver's error types when it fails.

* :func:`take_over` (an Import): the object the platform knows by the Import's id must be
  there; where the platform gives a checksum (a folder, S3, a REST API with sha256) or a size
  (the video platforms), it must match what this placement would send (the master, or the
  rendition its rule makes, made from the master's one descriptor). A match is recorded as
  synced without sending a byte; a mismatch is recorded as outdated with the reason, so the
  next reconcile updates that object. An imported copy is never pruned.
* :func:`move` (a renamed asset, or a master that moved): on folders and buckets, whose keys
  are the master's path, the object is moved on the platform itself (a rename, a server-side
  copy) once it is checked to be the recorded copy, never replacing an object at the new key;
  the moved object is then checked again. Elsewhere only the record changes.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import replace

from reconciler.apply.conflicts import Refused, check_untouched
from reconciler.apply.job import ConflictRow, Job, Outcome, holds
from reconciler.apply.transfer import Tools, asset_fields, sendable, synced
from reconciler.drivers.base import Driver, Found, PermanentError
from reconciler.model import ConflictType, EventStatus, EventType, JobStatus, SyncStatus
from reconciler.observe.masters import Opened
from reconciler.store.placements import PlacementRecord


def take_over(tools: Tools, driver: Driver, job: Job, master: Opened) -> Outcome:
    """Check the imported object against what the placement would send; record it."""
    action = job.action
    assert action.import_id is not None
    found = driver.find(action.import_id)
    if found is None:
        raise PermanentError(
            f"the Import names {action.import_id!r}, which is not on {action.platform}; "
            "nothing was recorded"
        )
    recorded_id = driver.recorded_id(found)
    names = {found.remote_id, recorded_id} | ({found.key} if found.key else set())
    if names & job.taken or not tools.claim(action.platform, recorded_id, action.asset):
        raise PermanentError(
            f"the object {found.remote_id} on {action.platform} is already another asset's "
            "copy; one object is one asset's copy, so it was not taken over"
        )
    with ExitStack() as stack:
        payload, _ = sendable(tools, job, master, stack)
        expected, size = payload.expected, payload.size
    job.key = found.key or job.key
    matches = holds(found.checksum, found.size, expected, size) is True  # None: unverifiable
    if found.checksum is not None:
        how = f"sha256 {_short(found.checksum)}"
    elif found.size is not None:
        how = f"{found.size} bytes (the platform gives no checksum)"
    else:  # nothing vouches for its bytes: never recorded as synced
        how = "the platform tells neither its checksum nor its size"
    details = {"id": found.remote_id, "sha256": found.checksum, "size": found.size}
    if matches:
        message = (
            f"took over {found.remote_id} on {action.platform} as the copy of {action.asset} "
            f"without sending it: {how}"
        )
        record = synced(job, found.checksum, recorded_id, found.url, action.rendition_id or "")
        event = job.event(EventType.IMPORTED, EventStatus.SUCCESS, message, details)
        return Outcome(JobStatus.COMPLETED, placement=record, events=(event,))
    if found.checksum is None and found.size is None:
        why = f"cannot be checked against {action.asset}'s bytes ({how})"
    else:
        expected_of = (
            f"sha256 {_short(expected)}" if found.checksum is not None else f"{size} bytes"
        )
        why = f"holds other bytes than {action.asset}'s ({how}, expected {expected_of})"
    reason = (
        f"the imported object {found.remote_id} on {action.platform} {why}; it is recorded as "
        "outdated, and the next reconcile updates it"
    )
    event = job.event(EventType.IMPORTED, EventStatus.FAILED, reason, details)
    return Outcome(
        JobStatus.FAILED,
        message=reason,
        placement=_outdated(job, found, recorded_id),
        events=(event,),
    )


def _outdated(job: Job, found: Found, recorded_id: str) -> PlacementRecord:
    """An imported object with other bytes: taken over (so it is updated where it is, never
    duplicated), but not in sync."""
    a = job.action
    return PlacementRecord(
        asset=a.asset,
        platform=a.platform,
        rule=a.rule,
        sync_status=SyncStatus.OUTDATED,
        synced_version=a.source_version,
        local_checksum=found.checksum or "unknown",  # not the master's: an update is due
        remote_checksum=found.checksum,
        platform_asset_id=recorded_id,
        platform_url=found.url,
        remote_key=job.key,
        metadata_hash=None,
        transform_hash=a.transform_hash,
        managed=False,
    )


def move(tools: Tools, driver: Driver, job: Job) -> Outcome:
    """Move the recorded copy to its new key on a folder or bucket, or only re-record it."""
    action = job.action
    old = job.previous_key
    if old is None or not driver.keys_are_paths:
        if action.metadata_changed:
            driver.update_metadata(old or job.key, asset_fields(tools, job))
        where = f"; it is recorded at {job.key} now" if old else ""
        message = f"the copy on {action.platform} now belongs to {action.asset}{where}"
        return _moved(job, job.previous_remote_checksum, None, None, message)
    check_untouched(driver, job)  # the object at the old key is still the recorded copy
    there = driver.find(job.key)
    if there is None:
        if driver.find(old) is None:
            raise _gone(job, old)
        driver.move(old, job.key)
        there = driver.find(job.key)
    elif there.checksum != job.previous_remote_checksum:
        raise _foreign(job, there)
    elif driver.find(old) is not None:  # a run stopped between the copy and the delete
        driver.delete(old)
    if there is None or there.checksum != job.previous_remote_checksum:
        raise PermanentError(
            f"after moving {old} to {job.key} on {action.platform}, the new key does not hold "
            "the recorded bytes; nothing was recorded"
        )
    if action.metadata_changed:
        driver.update_metadata(job.key, asset_fields(tools, job))
    message = f"moved {old} to {job.key} on {action.platform} without sending it again"
    return _moved(job, there.checksum, driver.recorded_id(there), there.url, message)


def _moved(
    job: Job, checksum: str | None, remote_id: str | None, url: str | None, message: str
) -> Outcome:
    """The copy recorded under its new code and key (None: as recorded)."""
    a = job.action
    record = replace(
        synced(job, checksum, remote_id, url, None),
        managed=None,  # whose the copy is does not change with its name
        metadata_hash=a.metadata_hash,
    )
    details = {"from": a.moved_from or a.asset, "to": a.asset, "key": job.key}
    if job.previous_key:
        details["previous_key"] = job.previous_key
    event = job.event(EventType.MOVED, EventStatus.SUCCESS, message, details)
    return Outcome(JobStatus.COMPLETED, placement=record, events=(event,))


def _gone(job: Job, old: str) -> Refused:
    message = f"the copy at {old} is not on {job.action.platform} any more; it was not moved"
    conflict = ConflictRow(
        job.pa_id, ConflictType.REMOTE_DELETED, job.previous_remote_checksum, None, message
    )
    event = job.event(EventType.CONFLICT_DETECTED, EventStatus.FAILED, message)
    return Refused(message, (conflict,), (event,))


def _foreign(job: Job, there: Found) -> Refused:
    message = (
        f"an object this tool did not make is already at {job.key} on {job.action.platform}; "
        "the copy was not moved onto it"
    )
    conflict = ConflictRow(
        job.pa_id, ConflictType.FOREIGN_OBJECT, job.previous_remote_checksum, there.checksum,
        message,
    )  # fmt: skip
    event = job.event(EventType.CONFLICT_DETECTED, EventStatus.FAILED, message)
    return Refused(message, (conflict,), (event,))


def _short(checksum: str) -> str:
    return checksum[:12] + "..."
