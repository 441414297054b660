"""Conflict detection: before a job replaces, deletes or re-describes a copy, is the copy on
the platform still the one this tool recorded (or set out to write)?

Called by :mod:`.transfer` with the job's driver. A copy someone changed outside reconcile,
an object this tool did not make at a new key, or an object replaced during the upload is a
:class:`Refused` error: a :class:`PermanentError` that carries the conflict and its event,
which the worker puts into the job's :class:`~reconciler.apply.job.Outcome`. A checksum
mismatch after an upload is retried, so it is reported at once (:func:`mismatch`).
"""

from __future__ import annotations

from reconciler.apply.job import ConflictRow, Job
from reconciler.apply.recorder import Recorder
from reconciler.drivers.base import Driver, PermanentError, RemoteObject
from reconciler.model import ConflictType, EventStatus, EventType, SyncStatus
from reconciler.observe.payload import Payload, ReplacedMeanwhile
from reconciler.store.placements import PlacementRecord
from reconciler.store.records import EventRow


class Refused(PermanentError):
    """The job leaves the copy alone: a conflict was found (and, for a metadata update that
    the rule lets the source win, the copy is marked outdated)."""

    def __init__(
        self,
        message: str,
        conflicts: tuple[ConflictRow, ...] = (),
        events: tuple[EventRow, ...] = (),
        placement: PlacementRecord | None = None,
    ) -> None:
        super().__init__(message)
        self.conflicts = conflicts
        self.events = events
        self.placement = placement


def ours(job: Job, checksum: str | None) -> bool:
    """The bytes recorded for the copy, or the ones its last job set out to write (a run
    killed after they landed, whose recovery could not look)."""
    return checksum is not None and checksum in (
        job.previous_remote_checksum,
        job.intended_checksum,
    )


def changed_outside(driver: Driver, job: Job) -> bool:
    """The recorded copy is on the platform with bytes this tool did not write."""
    if not job.previous_remote_checksum:
        return False
    remote = driver.stat(job.previous_key or job.key)
    return remote is not None and not ours(job, remote.checksum)


def check_untouched(driver: Driver, job: Job) -> None:
    """Before replacing, deleting or re-describing a copy, make sure nobody changed it
    outside reconcile (else :class:`Refused`, a ``remote_modified`` conflict)."""
    if not job.previous_remote_checksum:
        return
    remote = driver.stat(job.previous_key or job.key)
    if (
        remote is not None
        and ours(job, remote.checksum)
        and not job.previous_key
        and not job.sent  # after an attempt of its own, what is at the key is this job's
    ):
        job.replaces = remote.details.get("identity")  # checked again before the rename
    if remote is not None and not ours(job, remote.checksum):
        conflict = ConflictRow(
            job.pa_id, ConflictType.REMOTE_MODIFIED, job.previous_remote_checksum,
            remote.checksum, "changed on the platform outside reconcile; not overwritten",
        )  # fmt: skip
        event = job.event(
            EventType.CONFLICT_DETECTED, EventStatus.FAILED,
            "the copy on the platform was changed outside reconcile; it was left as it is",
            {"expected": job.previous_remote_checksum, "found": remote.checksum},
        )  # fmt: skip
        raise Refused(
            "the copy on the platform was changed outside reconcile; "
            "resolve the conflict (reconcile conflicts) or set "
            "on_conflict: source_wins",
            (conflict,),
            (event,),
        )


def foreign(driver: Driver, job: Job, payload: Payload, remote: RemoteObject) -> Refused | None:
    """Before a create, other bytes than the payload's are at the key: None when they are
    the ones recorded for the copy (a resolved conflict: the source is used), else the
    ``foreign_object`` refusal to raise."""
    if remote.checksum is None and remote.size is not None:  # sizes differ: which is it?
        remote = driver.stat(job.key) or remote
    if (
        job.previous_remote_checksum is not None
        and remote.checksum == job.previous_remote_checksum  # resolved: use the source
    ):
        return None
    found = remote.checksum or "unknown content"
    conflict = ConflictRow(
        job.pa_id, ConflictType.FOREIGN_OBJECT, payload.expected, remote.checksum,
        f"an object this tool did not make is at {job.key}; not overwritten",
    )  # fmt: skip
    event = job.event(
        EventType.CONFLICT_DETECTED, EventStatus.FAILED,
        f"an object this tool did not make is already at {job.key}; it was left as it is",
        {"expected": payload.expected, "found": found},
    )  # fmt: skip
    return Refused(
        f"an object this tool did not make is already at {job.key} on {job.action.platform} "
        "(other bytes than the copy would have); it was left alone: resolve the conflict "
        "(reconcile conflicts) or set on_conflict: source_wins",
        (conflict,),
        (event,),
    )


def replaced_meanwhile(job: Job, exc: ReplacedMeanwhile) -> Refused:
    """The object the upload was to replace changed during the transfer: nothing was
    committed over it."""
    kind = ConflictType.FOREIGN_OBJECT if job.replaces == "absent" else ConflictType.REMOTE_MODIFIED
    conflict = ConflictRow(job.pa_id, kind, job.previous_remote_checksum, None, str(exc))
    event = job.event(EventType.CONFLICT_DETECTED, EventStatus.FAILED, str(exc))
    return Refused(str(exc), (conflict,), (event,))


def mismatch(recorder: Recorder, job: Job, landed: str | None, expected: str) -> None:
    """The platform holds other bytes than the ones read and sent: a conflict, reported now
    since the job is retried."""
    job.mismatched = True
    recorder.conflict(
        ConflictRow(
            job.pa_id, ConflictType.CHECKSUM_MISMATCH, expected, landed,
            "the platform holds other bytes than were sent",
        )
    )  # fmt: skip
    recorder.placement(job.pa_id, job.placement(SyncStatus.FAILED))
    found = {"expected": expected, "found": landed}
    for kind, message in (
        (EventType.VERIFICATION, "checksum mismatch after upload"),
        (EventType.CONFLICT_DETECTED, "checksum_mismatch recorded"),
    ):
        recorder.event(job.event(kind, EventStatus.FAILED, message, found), job)
