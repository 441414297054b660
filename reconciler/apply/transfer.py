"""One job's transfer: what an upload, a delete or a metadata update does on the platform.

Called by :class:`reconciler.apply.run.Run` for each job, inside its retry loop; events,
placements and conflicts go to the run's recorder. The upload course follows "trust the
bytes, not the plan":

1. an update first checks that the copy on the platform is still the one recorded
   (otherwise a ``remote_modified`` conflict, unless the rule says ``source_wins``);
2. the master was opened once for the job (:mod:`reconciler.observe.masters`); its rendition is made
   from that descriptor or found in the cache, and what will be sent (the master or the
   rendition) is a :class:`~reconciler.observe.payload.Payload` with the checksum it must have;
3. what the job is about to write (its sha256 and size) is recorded before the first byte,
   so recovery after a kill can recognise its own upload;
4. a create first looks at the key: identical bytes already there are adopted (job_type
   ``adopt``, nothing sent), other bytes are a ``foreign_object`` conflict and left alone;
5. the driver sends the payload, hashing it as it reads, and commits nothing that is not the
   expected bytes; the copy is recorded with the checksum of what landed.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconciler.apply.recorder import PlacementRecord
from reconciler.drivers.base import Driver, PermanentError, TemporaryError
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
from reconciler.transforms import TransformError
from reconciler.transforms.renditions import Rendition

if TYPE_CHECKING:
    from reconciler.apply.run import Job, Run

CHANGED = (
    "the master file changed after it was planned; nothing was kept, and the next run "
    "will sync the new version"
)
INTENT_PATIENCE = 2.0  # seconds to wait for a busy state file before the first byte


class Transfer:
    """The transfers of one run; stateless between jobs."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.recorder = run.recorder

    # -- the three kinds of job ----------------------------------------------------------
    def delete(self, job: Job) -> None:
        """A prune: the copy goes only if it is still the one this tool recorded."""
        action, driver = job.action, self.run.driver(job.action.platform)
        if job.on_conflict != "source_wins":
            self._check_untouched(job, driver)
        driver.delete(job.key)
        self.recorder.placement(
            job.pa_id, PlacementRecord(action.asset, action.platform, action.rule, "deleted")
        )
        self._event(job, "delete", "success", f"deleted {job.key} from {action.platform}")

    def metadata(self, job: Job) -> None:
        """New metadata for a copy whose bytes stay: only if they are still the recorded ones
        (a metadata update must not vouch for an object someone replaced)."""
        action, driver = job.action, self.run.driver(job.action.platform)
        if job.on_conflict == "source_wins" and self._changed_outside(job, driver):
            self.recorder.placement(
                job.pa_id, PlacementRecord(action.asset, action.platform, action.rule, "outdated")
            )
            raise PermanentError(
                "the copy on the platform was changed outside reconcile; the rule says "
                "source_wins, so the next run sends the master again"
            )
        self._check_untouched(job, driver)
        driver.update_metadata(job.key, self._metadata(job))
        self.recorder.placement(job.pa_id, self.synced(job, job.previous_remote_checksum))
        self._event(job, "metadata_update", "success", f"updated the metadata on {action.platform}")

    def upload(self, job: Job, master: Opened) -> None:
        """Send the master (or its rendition) read from ``master``, the job's one open
        descriptor of its master file."""
        action, driver = job.action, self.run.driver(job.action.platform)
        assert action.checksum is not None
        if job.job_type == "update" and job.on_conflict != "source_wins":
            self._check_untouched(job, driver)
        metadata = self._metadata(job)
        planned = master.payload(action.checksum)
        opened: Opened | None = None
        with ExitStack() as stack:
            payload = planned
            if action.rendition_id:
                rendition = self._rendition(job, planned)
                metadata["mime_type"] = rendition.mime
                if not rendition.passthrough:
                    opened = self.run.transformer.open(rendition)
                    stack.callback(opened.close)
                    payload = opened.payload(rendition.sha256)
                    payload.kind = "rendition"
                    payload.details["rendition"] = rendition.id
            self._intend(job, payload)
            # a key this tool holds no copy at (a create, or an update whose copy moves, as
            # x.pdf to x.pdf.enc): what is there is looked at first; after an attempt of its
            # own, what is at the key is this job's
            new_key = job.job_type == "initial" or job.previous_key is not None
            if new_key and not job.sent and self._adopted(job, driver, payload):
                if job.previous_key:
                    driver.delete(job.previous_key)
                return
            if driver.needs_verified_copy:  # it replaces in place: send a checked copy
                try:
                    payload = stack.enter_context(stable_copy(payload, self._scratch()))
                except SourceChanged:
                    raise self._changed(job, payload) from None
            if job.replaces is not None and not job.sent:  # (a retry: it may be our own)
                payload.details["replaces"] = job.replaces  # still there when replaced
            job.sent = True
            job.total_bytes = payload.size
            uploaded = self._send(job, driver, payload, metadata)
            if uploaded.remote_checksum != payload.expected:  # a driver that did not check
                self._mismatch(job, uploaded.remote_checksum, payload.expected)
                raise NotLanded(
                    f"checksum mismatch after upload (expected {payload.expected[:12]}..., "
                    f"the platform has {uploaded.remote_checksum[:12]}...)",
                    uploaded.remote_checksum,
                )
        self._event(
            job, "upload_complete", "success", f"uploaded {job.key} to {action.platform}",
            {"bytes": payload.size},
        )  # fmt: skip
        self._event(
            job, "verification", "success", "checksum verified",
            {"sha256": uploaded.remote_checksum, "bytes": payload.size},
        )  # fmt: skip
        if job.mismatched:  # a retry fixed what the conflict recorded
            self.recorder.resolve_retried(job.pa_id, "checksum_mismatch")
        if job.previous_key:
            driver.delete(job.previous_key)
        record = self.synced(
            job,
            uploaded.remote_checksum,
            uploaded.platform_asset_id,
            uploaded.url,
            action.rendition_id or "",
        )
        self.recorder.placement(job.pa_id, record, uploaded.details)

    # -- steps ---------------------------------------------------------------------------
    def _scratch(self) -> Path:
        """Where private copies for sending go: beside the renditions (the same disk as the
        state; a folder left by a killed run is swept with the renditions' work folders)."""
        return self.run.transformer.cache.private_folder() / "tmp"

    def _metadata(self, job: Job) -> dict[str, Any]:
        action = job.action
        declared = self.run.manifests.assets.get(action.asset)
        described = asset_metadata(declared) if declared is not None else {}
        return {"code": action.asset, "mime_type": action.mime_type, **described}

    def _intend(self, job: Job, payload: Payload) -> None:
        """Record what the job is about to write before its first byte; a busy state file
        delays this a little, never the transfer (recovery can also find a rendition's
        checksum in the rendition cache by the job's rendition id)."""
        if (job.expected_checksum, job.expected_size) == (payload.expected, payload.size):
            return
        job.expected_checksum, job.expected_size = payload.expected, payload.size
        self.recorder.job(job)
        self.recorder.flush_now(INTENT_PATIENCE)

    def _send(self, job: Job, driver: Driver, payload: Payload, metadata: dict[str, Any]) -> Any:
        try:
            return driver.upload(
                payload, job.key, metadata, lambda sent: self.run.progress(job, sent)
            )
        except SourceChanged:
            raise self._changed(job, payload) from None
        except ReplacedMeanwhile as exc:
            kind = "foreign_object" if job.replaces == "absent" else "remote_modified"
            self.recorder.conflict(job.pa_id, kind, job.previous_remote_checksum, None, str(exc))
            self._event(job, "conflict_detected", "failed", str(exc))
            raise
        except NotLanded as exc:
            if payload.digest_now() != payload.expected:  # the descriptor's bytes moved
                raise self._changed(job, payload) from None
            self._mismatch(job, exc.found, payload.expected)
            raise

    def _changed(self, job: Job, payload: Payload) -> Exception:
        if payload.kind == "rendition":  # the cache file was damaged: make it again
            self.run.transformer.cache.remove(str(payload.details.get("rendition")))
            return TemporaryError(
                "the cached rendition changed while it was sent; it is made again"
            )
        return PermanentError(CHANGED)

    def _adopted(self, job: Job, driver: Driver, payload: Payload) -> bool:
        """Before a create: nothing at the key (go on), the very bytes to be sent (adopted:
        recorded, nothing sent), or an object this tool did not make (a foreign_object
        conflict, left alone, unless the rule says source_wins or a person chose to
        replace exactly that object)."""
        remote = driver.stat(job.key, size=payload.size)
        if remote is None:
            job.replaces = "absent"  # and still nothing there when the copy is put in place
            return False
        action = job.action
        if remote.checksum == payload.expected:
            job.job_type = "adopt"
            self._event(
                job, "adopted", "success",
                f"{job.key} on {action.platform} already holds exactly these bytes; adopted "
                "without sending them", {"sha256": remote.checksum},
            )  # fmt: skip
            self._event(
                job, "verification", "success", "checksum verified", {"sha256": remote.checksum}
            )
            record = self.synced(job, remote.checksum, job.key, None, action.rendition_id or "")
            self.recorder.placement(job.pa_id, record, {"adopted": True})
            return True
        if job.on_conflict == "source_wins":
            return False
        if remote.checksum is None and remote.size is not None:  # sizes differ: which is it?
            remote = driver.stat(job.key) or remote
        if (
            job.previous_remote_checksum is not None
            and remote.checksum == job.previous_remote_checksum  # resolved: use the source
        ):
            return False
        found = remote.checksum or "unknown content"
        self.recorder.conflict(
            job.pa_id, "foreign_object", payload.expected, remote.checksum,
            f"an object this tool did not make is at {job.key}; not overwritten",
        )  # fmt: skip
        self._event(
            job, "conflict_detected", "failed",
            f"an object this tool did not make is already at {job.key}; it was left as it is",
            {"expected": payload.expected, "found": found},
        )  # fmt: skip
        raise PermanentError(
            f"an object this tool did not make is already at {job.key} on {action.platform} "
            "(other bytes than the copy would have); it was left alone: resolve the conflict "
            "(reconcile conflicts) or set on_conflict: source_wins"
        )

    def _rendition(self, job: Job, master: Payload) -> Rendition:
        """Make (or find) the job's rendition from the open master, with its transform
        events. A transform that fails fails the job: nothing is uploaded."""
        action, transformer = job.action, self.run.transformer
        try:
            recipe = transformer.recipe(action)
        except TransformError as exc:
            raise PermanentError(str(exc)) from None
        self._event(
            job, "transform_start", "success",
            f"making the rendition for {action.platform}: {recipe.describe()}",
            {"rendition": action.rendition_id},
        )  # fmt: skip
        started = time.monotonic()
        try:
            rendition = transformer.rendition(action, recipe, master)
        except (TransformError, SourceChanged) as exc:
            seconds = round(time.monotonic() - started, 3)
            changed = isinstance(exc, SourceChanged)
            message = CHANGED if changed else str(exc)
            self._event(job, "transform_complete", "failed", message, {"seconds": seconds})
            raise PermanentError(message if changed else f"the transform failed: {exc}") from None
        if rendition.key_created is not None:
            self._event(
                job, "key_created", "success",
                f"generated a new encryption key in {rendition.key_created}; back it up: "
                "the encrypted copies cannot be decrypted without it",
            )  # fmt: skip
        done = "found in the cache" if rendition.cached else f"made in {rendition.seconds:.2f} s"
        what = "the master itself" if rendition.passthrough else f"{rendition.size:,} bytes"
        self._event(
            job, "transform_complete", "success", f"rendition {rendition.id[:12]} {done}: {what}",
            {
                "rendition": rendition.id, "cached": rendition.cached,
                "seconds": round(rendition.seconds, 3), "bytes": rendition.size,
                "sha256": rendition.sha256, "passthrough": rendition.passthrough,
            },
        )  # fmt: skip
        return rendition

    def synced(
        self,
        job: Job,
        remote_checksum: str | None,
        platform_asset_id: str | None = None,
        url: str | None = None,
        rendition_id: str | None = None,  # None: as recorded (a metadata update)
    ) -> PlacementRecord:
        a = job.action
        now = utcnow()
        return PlacementRecord(
            asset=a.asset,
            platform=a.platform,
            rule=a.rule,
            sync_status="synced",
            synced_version=a.source_version,
            local_checksum=a.checksum,
            remote_checksum=remote_checksum,
            platform_asset_id=platform_asset_id,
            platform_url=url,
            remote_key=job.key,
            metadata_hash=a.metadata_hash,
            transform_hash=a.transform_hash,
            managed=job.job_type != "adopt",  # only what this tool wrote may be pruned
            synced_at=now,
            verified_at=now,
            rendition_id=rendition_id,
        )

    def _changed_outside(self, job: Job, driver: Driver) -> bool:
        if not job.previous_remote_checksum:
            return False
        remote = driver.stat(job.previous_key or job.key)
        return remote is not None and not self._ours(job, remote.checksum)

    @staticmethod
    def _ours(job: Job, checksum: str | None) -> bool:
        """The bytes recorded for the copy, or the ones its last job set out to write (a run
        killed after they landed, whose recovery could not look)."""
        return checksum is not None and checksum in (
            job.previous_remote_checksum,
            job.intended_checksum,
        )

    def _check_untouched(self, job: Job, driver: Driver) -> None:
        """Before replacing, deleting or re-describing a copy, make sure nobody changed it
        outside reconcile."""
        if not job.previous_remote_checksum:
            return
        remote = driver.stat(job.previous_key or job.key)
        if (
            remote is not None
            and self._ours(job, remote.checksum)
            and not job.previous_key
            and not job.sent  # after an attempt of its own, what is at the key is this job's
        ):
            job.replaces = remote.details.get("identity")  # checked again before the rename
        if remote is not None and not self._ours(job, remote.checksum):
            self.recorder.conflict(
                job.pa_id, "remote_modified", job.previous_remote_checksum, remote.checksum,
                "changed on the platform outside reconcile; not overwritten",
            )  # fmt: skip
            self._event(
                job, "conflict_detected", "failed",
                "the copy on the platform was changed outside reconcile; it was left as it is",
                {"expected": job.previous_remote_checksum, "found": remote.checksum},
            )  # fmt: skip
            raise PermanentError(
                "the copy on the platform was changed outside reconcile; "
                "resolve the conflict (reconcile conflicts) or set "
                "on_conflict: source_wins"
            )

    def _mismatch(self, job: Job, landed: str | None, expected: str) -> None:
        """The platform holds other bytes than the ones read and sent: a conflict, retried."""
        a = job.action
        job.mismatched = True
        self.recorder.conflict(
            job.pa_id, "checksum_mismatch", expected, landed,
            "the platform holds other bytes than were sent",
        )  # fmt: skip
        self.recorder.placement(job.pa_id, PlacementRecord(a.asset, a.platform, a.rule, "failed"))
        found = {"expected": expected, "found": landed}
        self._event(job, "verification", "failed", "checksum mismatch after upload", found)
        self._event(job, "conflict_detected", "failed", "checksum_mismatch recorded", found)

    def _event(
        self, job: Job, kind: str, status: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        self.recorder.event(self.run.event(job, kind, status, message, details), job)
