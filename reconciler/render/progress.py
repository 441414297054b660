"""How an apply run shows itself while it works.

Three observers of :class:`reconciler.apply.run.Run`, picked by the CLI:

* :class:`LiveProgress` on a terminal: an overall bar (jobs, bytes, rate, ETA) and one bar per
  transfer in flight, drawn by rich;
* :class:`PlainLines` in a pipe or a log: one line per finished job, nothing redrawn;
* :class:`JsonLines` for ``--output jsonl``: every event as one JSON object per line, with
  its ISO-8601 UTC ``time``.

Observers are called from worker threads; each guards its own state. They write through the
``echo`` function the CLI gives them (or a rich console), never print by themselves.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from reconciler.apply.run import Job, NullObserver
from reconciler.model import JobStatus, JobType
from reconciler.render.json import iso_utc
from reconciler.store.records import EventRow
from reconciler.units import human_size

Echo = Callable[[str], None]
UPLOADS = (JobType.INITIAL, JobType.UPDATE)  # the jobs that send bytes, and so show a size


def describe(job: Job) -> str:
    return f"{job.job_type:<8} {job.action.asset} -> {job.action.platform}"


class PlainLines(NullObserver):
    """`[3/15] completed initial  VID-A -> CDN (2.9 KiB)`, one line per job."""

    def __init__(self, echo: Echo) -> None:
        self.echo = echo
        self.total = 0
        self.done = 0
        self.lock = threading.Lock()

    def run_started(self, jobs: list[Job]) -> None:
        self.total = sum(1 for j in jobs if j.status == JobStatus.PENDING)
        waiting = [j for j in jobs if j.status != JobStatus.PENDING]
        for job in waiting:
            self.echo(f"[-] {job.status:<9} {describe(job)}: {job.error}")

    def job_finished(self, job: Job) -> None:
        with self.lock:
            self.done += 1
            size = (
                f" ({human_size(job.action.size_bytes)})"
                if job.job_type in UPLOADS and job.status == JobStatus.COMPLETED
                else ""
            )
            tail = f": {job.error}" if job.error and job.status != JobStatus.COMPLETED else ""
            count = f"{self.done}/{self.total}" if self.total else f"{self.done}"  # a worker's
            self.echo(f"[{count}] {job.status:<9} {describe(job)}{size}{tail}")


class JsonLines(NullObserver):
    """Every event as it happens, one JSON object per line."""

    def __init__(self, echo: Echo) -> None:
        self.echo = echo
        self.lock = threading.Lock()

    def event(self, event: EventRow, job: Job | None) -> None:
        line: dict[str, Any] = {
            "time": iso_utc(event.event_time),
            "event_type": event.event_type,
            "event_status": event.event_status,
            "message": event.message,
            "job": job.code if job else None,
            "asset": job.action.asset if job else None,
            "platform": job.action.platform if job else None,
            "details": event.details,
        }
        with self.lock:
            self.echo(json.dumps(line, ensure_ascii=False, default=str))


class LiveProgress(NullObserver):
    """An overall bar and a bar per transfer in flight, on a terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=False)
        self.progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.overall: TaskID | None = None
        self.tasks: dict[int, TaskID] = {}
        self.sent: dict[int, int] = {}
        self.lock = threading.Lock()

    def run_started(self, jobs: list[Job]) -> None:
        pending = [j for j in jobs if j.status == JobStatus.PENDING]
        total = sum(j.action.size_bytes or 0 for j in pending if j.job_type in UPLOADS)
        self.progress.start()
        self.overall = self.progress.add_task(f"{len(pending)} changes", total=total or None)
        for job in jobs:
            if job.status != JobStatus.PENDING:
                self.progress.console.print(f"{job.status}: {describe(job)}: {job.error}")

    def job_started(self, job: Job) -> None:
        with self.lock:
            self.sent[job.id] = 0
            if job.job_type in UPLOADS:
                self.tasks[job.id] = self.progress.add_task(
                    f"  {job.action.asset} -> {job.action.platform}",
                    total=job.action.size_bytes or None,
                )

    def job_progress(self, job: Job, sent: int) -> None:
        with self.lock:
            delta = sent - self.sent.get(job.id, 0)
            self.sent[job.id] = sent
            task = self.tasks.get(job.id)
            if task is not None:
                self.progress.update(task, completed=sent)
            if self.overall is not None and delta > 0:
                self.progress.advance(self.overall, delta)

    def job_finished(self, job: Job) -> None:
        with self.lock:
            task = self.tasks.pop(job.id, None)
            if task is not None:
                self.progress.remove_task(task)
            if job.status != JobStatus.COMPLETED:
                self.progress.console.print(
                    f"[red]{job.status}[/red]: {describe(job)}: {job.error}",
                    markup=True,
                    highlight=False,
                )

    def run_finished(self) -> None:
        self.progress.stop()
