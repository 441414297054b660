"""The worker: runs an apply's admitted jobs on a thread pool, each with its retries, and turns
every job into an :class:`~reconciler.apply.job.Outcome` for the recorder.

Called by :class:`reconciler.apply.run.Run`. Failures follow the driver's error types: a
:class:`TemporaryError` is retried with exponential backoff and full jitter (honouring its
``retry_after``), each retry logged; a :class:`PermanentError` fails the job at once; a
:class:`Deferred` makes it wait for the time the platform names; a stop (``--grace``) cancels
a transfer still in flight. A run that lost its lease on a PostgreSQL state (stopped or cut
off past its TTL, and taken over) stops at once: no job starts, no attempt is retried, the
transfer in flight is cancelled at its next block, since nothing of it could be recorded and
another run now works on the same copies. The transfers themselves are in :mod:`.transfer`.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator

from reconciler.apply import adoption, transfer
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
    JobType.IMPORT: (EventType.IMPORTED, "importing from", EventType.IMPORTED),
    JobType.MOVE: (EventType.MOVED, "moving the copy on", EventType.MOVED),
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
        # a queue worker gives back what a stop keeps it from doing, for another worker;
        # a local run's unfinished job is failed (or deferred), and planned again
        self.hands_back = False

    def run(self, jobs: list[Job], finish: Callable[[], None]) -> None:
        """Run the pending jobs, ``parallel`` at a time; then the recorder's last flush and
        ``finish`` (what the drivers could not write)."""
        todo = [j for j in jobs if j.status == JobStatus.PENDING]
        self.observer.run_started(jobs)
        self._running(iter(todo), min(max(1, self.options.parallel), len(todo)), finish)

    def run_feed(self, feed: Iterator[Job], finish: Callable[[], None]) -> None:
        """Run jobs as ``feed`` gives them (a queue worker's claims), ``parallel`` at a time,
        until it ends; then as :meth:`run`."""
        self.hands_back = True
        self.observer.run_started([])
        self._running(feed, max(1, self.options.parallel), finish)

    def _running(self, jobs: Iterator[Job], count: int, finish: Callable[[], None]) -> None:
        self.recorder.start()
        try:
            self._run_all(jobs, count)
        finally:
            try:
                self.recorder.stop()
                finish()
            finally:
                self.observer.run_finished()
        if self.recorder.failure is not None:
            raise StateError(f"recording the run failed: {self.recorder.failure}")

    def _run_all(self, jobs: Iterator[Job], count: int) -> None:
        """Run ``jobs`` on ``count`` threads, each taking the next job as it becomes free.

        No future per job: 100,000 queued futures cost memory, and waking the waiting main
        thread at each one cost more CPU than a small file's copy. The first error (a failure
        of the recording, not of a job: those end as an Outcome) stops the threads taking more
        jobs, and is raised once the jobs in flight are done; so is an interrupt."""
        lock = threading.Lock()
        failures: list[BaseException] = []

        def take() -> Job | None:
            with lock:
                halted = (
                    failures
                    or self.recorder.failure is not None  # nothing more could be recorded
                    or self.recorder.lost_lease() is not None
                )
                return None if halted else next(jobs, None)

        def loop() -> None:
            while (job := take()) is not None:
                try:
                    self.run_job(job)
                except BaseException as exc:
                    with lock:
                        failures.append(exc)
                    return

        threads = [threading.Thread(target=loop, name=f"job-{n}") for n in range(count)]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                thread.join()
        except BaseException as exc:  # interrupted: no job starts after this one
            with lock:
                failures.insert(0, exc)
            for thread in threads:
                thread.join()
        if failures:
            raise failures[0]

    def stopping(self) -> bool:
        stop = self.options.stop
        if stop is None or not stop.is_set():
            return False
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        return True

    def run_job(self, job: Job) -> None:
        rec = self.recorder
        if self.stopping() and self.hands_back:
            rec.record(job, self._handed_back(job))
            return
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
            lost = self.recorder.lost_lease()
            if lost is not None:
                return self._failed(job, str(lost))
            if self.hands_back:
                return self._handed_back(job)
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
        driver = self.driver(job.action.platform)
        if job.job_type == JobType.DELETE:
            return self._retried(job, lambda: transfer.delete(self.tools, driver, job))
        if job.job_type == JobType.METADATA:
            return self._retried(job, lambda: transfer.metadata(self.tools, driver, job))
        if job.job_type == JobType.MOVE:
            return self._retried(job, lambda: adoption.move(self.tools, driver, job))
        assert job.action.path is not None
        with opened_master(job.action.path, str(self.manifests.media_root)) as master:
            if job.job_type == JobType.IMPORT:
                return self._retried(
                    job, lambda: adoption.take_over(self.tools, driver, job, master)
                )
            return self._retried(job, lambda: transfer.upload(self.tools, driver, job, master))

    def _retried(self, job: Job, attempt: Callable[[], Outcome]) -> Outcome:
        """``attempt`` until it succeeds, raises anything but a TemporaryError, or has been
        tried ``max_attempts`` times (then its last error is raised); each retry is logged
        and waits :meth:`_wait`. (A plain loop: a retrying object per job cost more than
        copying a small file.)"""
        number = 1
        while True:
            try:
                return attempt()
            except TemporaryError as exc:
                if self.recorder.lost_lease() is not None:  # (the state refusing its writes)
                    raise Cancelled(job.code) from None
                if number >= self.options.max_attempts:
                    raise
                wait = self._wait(exc, number)
                self._retrying(job, number, exc, wait)
            time.sleep(wait)
            number += 1

    def _wait(self, exc: TemporaryError, number: int) -> float:
        """Seconds before the retry that follows attempt ``number``: what the platform asked
        for (``retry_after``), else exponential backoff with full jitter (a random time up to
        ``backoff_base * 2 ** (number - 1)``); never more than ``backoff_max``."""
        cap = self.options.backoff_max
        if exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), cap)
        window = self.options.backoff_base * 2.0 ** min(number - 1, 64)
        return random.uniform(0, max(0.0, min(window, cap)))

    def _retrying(self, job: Job, number: int, exc: TemporaryError, wait: float) -> None:
        job.retries += 1
        self.recorder.job(job)
        message = f"attempt {number} failed ({exc}); retrying in {wait:.1f} s"
        details = {"attempt": number, "wait_seconds": round(wait, 3)}
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

    def _handed_back(self, job: Job) -> Outcome:
        """A queue worker stopped before the job was done: it goes back to the queue (the
        worker's last step clears its claim), its copy pending as before."""
        message = "the worker stopped before the job was done; it goes back to the queue"
        return Outcome(
            JobStatus.PENDING,
            message,
            placement=job.placement(SyncStatus.PENDING) if job.job_type in UPLOADS else None,
        )  # (its handed_back event is written with the claim's clearing)

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
        file; after a stop and its grace, or once the lease is lost, :class:`Cancelled`."""
        if (
            self.stopping()
            and self.stopping_since is not None
            and (time.monotonic() - self.stopping_since > self.options.grace)
        ) or self.recorder.lost_lease() is not None:
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
