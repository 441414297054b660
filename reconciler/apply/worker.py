"""The worker: runs an apply's admitted jobs on a thread pool, each with its retries, and turns
every job into an :class:`~reconciler.apply.job.Outcome` for the recorder.

Called by :class:`reconciler.apply.run.Run`. Failures follow the driver's error types: a
:class:`TemporaryError` is retried with exponential backoff and full jitter (honouring its
``retry_after``), each retry logged; a :class:`PermanentError` fails the job at once; a
:class:`Deferred` makes it wait for the time the platform names; a stop (``--grace``) cancels
a transfer still in flight. The transfers themselves are in :mod:`.transfer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from reconciler.apply import transfer
from reconciler.apply.conflicts import Refused
from reconciler.apply.job import UPLOADS, ApplyOptions, Job, Observer, Outcome
from reconciler.apply.recorder import Recorder
from reconciler.apply.renditions import Transformer
from reconciler.drivers.base import Cancelled, Deferred, Driver, PermanentError, TemporaryError
from reconciler.errors import StateError
from reconciler.model import EventStatus, EventType, JobStatus, JobType, ManifestSet, SyncStatus
from reconciler.observe.masters import opened_master
from reconciler.redact import redact
from reconciler.store.db import utcnow

PROGRESS_EVENT_MIN_BYTES = 1024 * 1024
# per job type: the event that starts it, the verb of its message, the event that fails it
COURSE: dict[str, tuple[EventType, str, EventType]] = {
    JobType.DELETE: (EventType.DELETE_START, "deleting from", EventType.DELETE),
    JobType.METADATA: (EventType.METADATA_START, "updating metadata on", EventType.METADATA_UPDATE),
}
UPLOAD_COURSE = (EventType.UPLOAD_START, "uploading to", EventType.UPLOAD_COMPLETE)


class Worker:
    """Runs the jobs of one apply run; holds the retry policy and the stop clock."""

    def __init__(
        self,
        manifests: ManifestSet,
        options: ApplyOptions,
        recorder: Recorder,
        observer: Observer,
        transformer: Transformer,
        driver: Callable[[str], Driver],
    ) -> None:
        self.manifests = manifests
        self.options = options
        self.recorder = recorder
        self.observer = observer
        self.driver = driver
        self.tools = transfer.Tools(manifests, recorder, transformer, self.progress)
        self.stopping_since: float | None = None

    def run(self, jobs: list[Job], finish: Callable[[], None]) -> None:
        """Run the pending jobs, ``parallel`` at a time; then the recorder's last flush and
        ``finish`` (what the drivers could not write)."""
        todo = [j for j in jobs if j.status == JobStatus.PENDING]
        self.observer.run_started(jobs)
        self.recorder.start()
        try:
            with ThreadPoolExecutor(max_workers=max(1, self.options.parallel)) as pool:
                list(pool.map(self.run_job, todo))
        finally:
            try:
                self.recorder.stop()
                finish()
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
            job.status, job.error = JobStatus.DEFERRED, "the run was stopping before it started"
            rec.job(job)
            rec.event(job.event(EventType.DEFERRED, EventStatus.DEFERRED, job.error), job)
            return
        job.status, job.started_at = JobStatus.PROCESSING, utcnow()
        rec.job(job)
        if job.job_type in UPLOADS:
            rec.placement(job.pa_id, job.placement(SyncStatus.SYNCING))
        start, verb, _ = COURSE.get(job.job_type, UPLOAD_COURSE)
        message = f"{verb} {job.action.platform}"
        rec.event(job.event(start, EventStatus.SUCCESS, message), job)
        self.observer.job_started(job)
        rec.record(job, self.work(job))
        self.observer.job_finished(job)

    def work(self, job: Job) -> Outcome:
        """Every attempt of one job, and how it ended."""
        try:
            return self._attempts(job)
        except Cancelled:
            return self._failed(job, "interrupted by shutdown; the next run sends it again")
        except Deferred as exc:
            return self._deferred(job, exc)
        except TemporaryError as exc:
            return self._failed(job, f"gave up after {self.options.max_attempts} attempts: {exc}")
        except Refused as exc:
            return self._failed(job, str(exc), exc)
        except PermanentError as exc:
            return self._failed(job, str(exc))
        except Exception as exc:  # a driver bug must not kill the run
            return self._failed(job, redact(f"unexpected {type(exc).__name__}: {exc}"))

    def _attempts(self, job: Job) -> Outcome:
        """An upload opens its master once, safely, for all of its attempts; whatever it
        sends is read from that descriptor."""
        retrying = Retrying(
            stop=stop_after_attempt(self.options.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TemporaryError),
            before_sleep=lambda state: self._retrying(job, state),
            reraise=True,
        )
        driver = self.driver(job.action.platform)
        if job.job_type == JobType.DELETE:
            return retrying(transfer.delete, self.tools, driver, job)
        if job.job_type == JobType.METADATA:
            return retrying(transfer.metadata, self.tools, driver, job)
        assert job.action.path is not None
        with opened_master(job.action.path, str(self.manifests.media_root)) as master:
            return retrying(transfer.upload, self.tools, driver, job, master)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TemporaryError) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.options.backoff_max)
        backoff = wait_random_exponential(
            multiplier=self.options.backoff_base, max=self.options.backoff_max
        )
        return float(backoff(state))

    def _retrying(self, job: Job, state: RetryCallState) -> None:
        job.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        self.recorder.job(job)
        message = f"attempt {state.attempt_number} failed ({exc}); retrying in {wait:.1f} s"
        details = {"attempt": state.attempt_number, "wait_seconds": round(wait, 3)}
        event = job.event(EventType.RETRY, EventStatus.RETRYING, message, details)
        self.recorder.event(event, job)

    def _deferred(self, job: Job, exc: Deferred) -> Outcome:
        """The platform takes no more work until a known time: the job waits for it."""
        eligible = {"eligible_at": f"{exc.until:%Y-%m-%dT%H:%M:%SZ}"}
        return Outcome(
            JobStatus.DEFERRED,
            redact(str(exc)),
            eligible_at=exc.until,
            placement=job.placement(SyncStatus.PENDING) if job.job_type in UPLOADS else None,
            events=(job.event(EventType.DEFERRED, EventStatus.DEFERRED, str(exc), eligible),),
        )

    def _failed(self, job: Job, message: str, refused: Refused | None = None) -> Outcome:
        """A job that failed; a refusal brings the conflicts it found (and the copy's state
        when it is not an upload's)."""
        _, _, kind = COURSE.get(job.job_type, UPLOAD_COURSE)
        placement = refused.placement if refused is not None else None
        if job.job_type in UPLOADS:
            placement = job.placement(SyncStatus.FAILED)
        found = (refused.events, refused.conflicts) if refused is not None else ((), ())
        return Outcome(
            JobStatus.FAILED,
            redact(message),
            placement=placement,
            events=(*found[0], job.event(kind, EventStatus.FAILED, message)),
            conflicts=found[1],
        )

    def progress(self, job: Job, sent: int) -> None:
        """A transfer's progress: the job's percentage, an event at each quarter of a large
        file; after a stop and its grace, :class:`Cancelled`."""
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
                event = job.event(
                    EventType.UPLOAD_PROGRESS, EventStatus.SUCCESS,
                    f"upload at {step * 25}%", {"bytes": sent, "of": total},
                )  # fmt: skip
                self.recorder.event(event, job)
            if total >= PROGRESS_EVENT_MIN_BYTES:  # a small file's row is written when it ends
                self.recorder.job(job)
        self.observer.job_progress(job, sent)
