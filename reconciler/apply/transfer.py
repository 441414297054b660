"""One job's transfer: what an upload, a delete or a metadata update does on the platform.

Called by :mod:`.worker` for each job, inside its retry loop, with the job's driver; each
function returns the job's :class:`~reconciler.apply.job.Outcome` when it succeeds and raises
the driver's error types when not. What happens during an attempt (transform and progress
events, a checksum mismatch that is retried) is reported to the recorder as it happens. The
upload course follows "trust the bytes, not the plan":

1. an update first checks that the copy on the platform is still the one recorded
   (otherwise a ``remote_modified`` conflict, unless the rule says ``source_wins``);
2. the master was opened once for the job (:mod:`reconciler.observe.masters`); its rendition
   is made from that descriptor or found in the cache, and what will be sent (the master or
   the rendition) is a :class:`~reconciler.observe.payload.Payload` with the checksum it must
   have;
3. what the job is about to write (its sha256 and size) is recorded before the first byte,
   so recovery after a kill can recognise its own upload;
4. a create first looks at the key: identical bytes already there are adopted (job_type
   ``adopt``, nothing sent), other bytes are a ``foreign_object`` conflict and left alone;
5. the driver sends the payload, hashing it as it reads, and commits nothing that is not the
   expected bytes; the copy is recorded with the checksum of what landed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.apply.conflicts import (
    Refused,
    changed_outside,
    check_untouched,
    foreign,
    mismatch,
    replaced_meanwhile,
)
from reconciler.apply.job import CHANGED, Job, Outcome
from reconciler.apply.recorder import Recorder
from reconciler.apply.renditions import Transformer, rendition_for
from reconciler.drivers.base import Driver, PermanentError, TemporaryError, Uploaded
from reconciler.model import (
    ConflictType,
    EventStatus,
    EventType,
    JobStatus,
    JobType,
    ManifestSet,
    SyncStatus,
)
from reconciler.observe.masters import Opened
from reconciler.observe.payload import (
    NotLanded,
    Payload,
    ReplacedMeanwhile,
    SourceChanged,
    stable_copy,
)
from reconciler.plan.desired import asset_metadata
from reconciler.store.db import utcnow
from reconciler.store.placements import PlacementRecord
from reconciler.store.records import EventRow

INTENT_PATIENCE = 2.0  # seconds to wait for a busy state file before the first byte
SOURCE_WINS = "source_wins"


@dataclass(frozen=True)
class Tools:
    """What a transfer works with besides its job and driver; one per run."""

    manifests: ManifestSet
    recorder: Recorder
    transformer: Transformer
    progress: Callable[[Job, int], None]  # bytes sent so far; raises Cancelled on a stop
    _claims: dict[tuple[str, str], str] = field(default_factory=dict)  # imports of the run
    _claims_lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self, platform: str, remote_id: str, asset: str) -> bool:
        """Take ``remote_id`` on ``platform`` as ``asset``'s copy for this run; False when
        another asset's import of this run took it first."""
        with self._claims_lock:
            return self._claims.setdefault((platform, remote_id), asset) == asset

    def report(self, job: Job) -> Callable[[EventRow], None]:
        """Where ``job``'s events go as they happen."""
        return lambda event: self.recorder.event(event, job)


def delete(tools: Tools, driver: Driver, job: Job) -> Outcome:
    """A prune: the copy goes only if it is still the one this tool recorded."""
    if job.on_conflict != SOURCE_WINS:
        check_untouched(driver, job)
    driver.delete(job.key)
    message = f"deleted {job.key} from {job.action.platform}"
    return Outcome(
        JobStatus.COMPLETED,
        placement=job.placement(SyncStatus.DELETED),
        events=(job.event(EventType.DELETE, EventStatus.SUCCESS, message),),
    )


def metadata(tools: Tools, driver: Driver, job: Job) -> Outcome:
    """New metadata for a copy whose bytes stay: only if they are still the recorded ones
    (a metadata update must not vouch for an object someone replaced)."""
    if job.on_conflict == SOURCE_WINS and changed_outside(driver, job):
        raise Refused(
            "the copy on the platform was changed outside reconcile; the rule says "
            "source_wins, so the next run sends the master again",
            placement=job.placement(SyncStatus.OUTDATED),
        )
    check_untouched(driver, job)
    driver.update_metadata(job.key, asset_fields(tools, job))
    message = f"updated the metadata on {job.action.platform}"
    return Outcome(
        JobStatus.COMPLETED,
        placement=synced(job, job.previous_remote_checksum),
        events=(job.event(EventType.METADATA_UPDATE, EventStatus.SUCCESS, message),),
    )


def upload(tools: Tools, driver: Driver, job: Job, master: Opened) -> Outcome:
    """Send the master (or its rendition) read from ``master``, the job's one open
    descriptor of its master file."""
    action = job.action
    assert action.checksum is not None
    if job.job_type == JobType.UPDATE and job.on_conflict != SOURCE_WINS:
        check_untouched(driver, job)
    metadata = asset_fields(tools, job)
    with ExitStack() as stack:
        payload, mime = sendable(tools, job, master, stack)
        if mime is not None:
            metadata["mime_type"] = mime
        _intend(tools, job, payload)
        # a key this tool holds no copy at (a create, or an update whose copy moves, as
        # x.pdf to x.pdf.enc): what is there is looked at first; after an attempt of its
        # own, what is at the key is this job's
        fresh_key = job.job_type in (JobType.INITIAL, JobType.ADOPT) or job.previous_key
        if fresh_key and not job.sent:
            adopted = _adopt(tools, driver, job, payload)
            if adopted is not None:
                if job.previous_key:
                    driver.delete(job.previous_key)
                return adopted
            if job.job_type == JobType.ADOPT:  # planned with --refresh; gone since: sent
                job.job_type = JobType.INITIAL
        if driver.needs_verified_copy:  # it replaces in place: send a checked copy
            try:
                payload = stack.enter_context(stable_copy(payload, _scratch(tools)))
            except SourceChanged:
                raise _changed(tools, payload) from None
        if job.replaces is not None and not job.sent:  # (a retry: it may be our own)
            payload.details["replaces"] = job.replaces  # still there when replaced
        job.sent = True
        job.total_bytes = payload.size
        uploaded = _send(tools, driver, job, payload, metadata)
    return _landed(tools, driver, job, payload, uploaded)


def sendable(
    tools: Tools, job: Job, master: Opened, stack: ExitStack
) -> tuple[Payload, str | None]:
    """What the platform gets for the job, read from its master's descriptor: the master, or
    its rendition (made now, or found in the cache), with the rendition's MIME type; what it
    opens is closed by ``stack``."""
    action = job.action
    assert action.checksum is not None
    payload = master.payload(action.checksum)
    if not action.rendition_id:
        return payload, None
    rendition = rendition_for(tools.transformer, job, payload, tools.report(job))
    if not rendition.passthrough:
        opened = tools.transformer.open(rendition)
        stack.callback(opened.close)
        payload = opened.payload(rendition.sha256)
        payload.kind = "rendition"
        payload.details["rendition"] = rendition.id
    return payload, rendition.mime


def _landed(
    tools: Tools, driver: Driver, job: Job, payload: Payload, uploaded: Uploaded
) -> Outcome:
    """The upload's copy is the expected bytes: it is recorded, and what it replaced goes."""
    if uploaded.remote_checksum != payload.expected:  # a driver that did not check
        mismatch(tools.recorder, job, uploaded.remote_checksum, payload.expected)
        raise NotLanded(
            f"checksum mismatch after upload (expected {payload.expected[:12]}..., "
            f"the platform has {uploaded.remote_checksum[:12]}...)",
            uploaded.remote_checksum,
        )
    report = tools.report(job)
    report(job.event(
        EventType.UPLOAD_COMPLETE, EventStatus.SUCCESS,
        f"uploaded {job.key} to {job.action.platform}", {"bytes": payload.size},
    ))  # fmt: skip
    report(job.event(
        EventType.VERIFICATION, EventStatus.SUCCESS, "checksum verified",
        {"sha256": uploaded.remote_checksum, "bytes": payload.size},
    ))  # fmt: skip
    if job.previous_key:
        driver.delete(job.previous_key)
    record = synced(
        job,
        uploaded.remote_checksum,
        uploaded.platform_asset_id,
        uploaded.url,
        job.action.rendition_id or "",
    )
    return Outcome(
        JobStatus.COMPLETED,
        placement=record,
        details=uploaded.details,
        resolved=(ConflictType.CHECKSUM_MISMATCH,) if job.mismatched else (),
    )


def _scratch(tools: Tools) -> Path:
    """Where private copies for sending go: beside the renditions (the same disk as the
    state; a folder left by a killed run is swept with the renditions' work folders)."""
    return tools.transformer.cache.private_folder() / "tmp"


def asset_fields(tools: Tools, job: Job) -> dict[str, Any]:
    """What is sent to the platform besides the bytes (see ``asset_metadata``)."""
    action = job.action
    declared = tools.manifests.assets.get(action.asset)
    described = asset_metadata(declared) if declared is not None else {}
    return {"code": action.asset, "mime_type": action.mime_type, **described}


def _intend(tools: Tools, job: Job, payload: Payload) -> None:
    """Record what the job is about to write before its first byte; a busy state file
    delays this a little, never the transfer (recovery can also find a rendition's
    checksum in the rendition cache by the job's rendition id)."""
    if (job.expected_checksum, job.expected_size) == (payload.expected, payload.size):
        return
    job.expected_checksum, job.expected_size = payload.expected, payload.size
    tools.recorder.job(job)
    tools.recorder.flush_now(INTENT_PATIENCE)


def _send(
    tools: Tools, driver: Driver, job: Job, payload: Payload, metadata: dict[str, Any]
) -> Uploaded:
    try:
        return driver.upload(payload, job.key, metadata, lambda sent: tools.progress(job, sent))
    except SourceChanged:
        raise _changed(tools, payload) from None
    except ReplacedMeanwhile as exc:
        raise replaced_meanwhile(job, exc) from exc
    except NotLanded as exc:
        if payload.digest_now() != payload.expected:  # the descriptor's bytes moved
            raise _changed(tools, payload) from None
        mismatch(tools.recorder, job, exc.found, payload.expected)
        raise


def _changed(tools: Tools, payload: Payload) -> Exception:
    if payload.kind == "rendition":  # the cache file was damaged: make it again
        tools.transformer.cache.remove(str(payload.details.get("rendition")))
        return TemporaryError("the cached rendition changed while it was sent; it is made again")
    return PermanentError(CHANGED)


def _adopt(tools: Tools, driver: Driver, job: Job, payload: Payload) -> Outcome | None:
    """Before a create: nothing at the key (None: go on), the very bytes to be sent
    (adopted: the outcome records them, nothing sent), or an object this tool did not make
    (a foreign_object conflict, left alone, unless the rule says source_wins or a person
    chose to replace exactly that object)."""
    remote = driver.stat(job.key, size=payload.size)
    if remote is None:
        job.replaces = "absent"  # and still nothing there when the copy is put in place
        return None
    if remote.checksum == payload.expected:
        job.job_type = JobType.ADOPT
        report = tools.report(job)
        report(job.event(
            EventType.ADOPTED, EventStatus.SUCCESS,
            f"{job.key} on {job.action.platform} already holds exactly these bytes; adopted "
            "without sending them", {"sha256": remote.checksum},
        ))  # fmt: skip
        report(job.event(
            EventType.VERIFICATION, EventStatus.SUCCESS, "checksum verified",
            {"sha256": remote.checksum},
        ))  # fmt: skip
        record = synced(job, remote.checksum, job.key, None, job.action.rendition_id or "")
        return Outcome(JobStatus.COMPLETED, placement=record, details={"adopted": True})
    if job.on_conflict == SOURCE_WINS:
        return None
    refused = foreign(driver, job, payload, remote)
    if refused is not None:
        raise refused
    return None


def synced(
    job: Job,
    remote_checksum: str | None,
    platform_asset_id: str | None = None,
    url: str | None = None,
    rendition_id: str | None = None,  # None: as recorded (a metadata update)
) -> PlacementRecord:
    """The job's copy as a successful transfer leaves it."""
    a = job.action
    now = utcnow()
    return PlacementRecord(
        asset=a.asset,
        platform=a.platform,
        rule=a.rule,
        sync_status=SyncStatus.SYNCED,
        synced_version=a.source_version,
        local_checksum=a.checksum,
        remote_checksum=remote_checksum,
        platform_asset_id=platform_asset_id,
        platform_url=url,
        remote_key=job.key,
        metadata_hash=a.metadata_hash,
        transform_hash=a.transform_hash,
        # only what this tool wrote may be pruned or moved; an imported object stays the
        # team's whatever updates it gets (None: as recorded)
        managed=(
            False
            if job.job_type in (JobType.ADOPT, JobType.IMPORT)
            else None
            if job.keeps_owner
            else True
        ),
        synced_at=now,
        verified_at=now,
        rendition_id=rendition_id,
    )
