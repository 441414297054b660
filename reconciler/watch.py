"""`reconcile watch`: keep the platforms in sync continuously.

A watchdog observer watches the manifests folder and the media root. Events only mark the
desired state dirty; after ``debounce`` seconds of quiet, one *cycle* runs. Cycles are
level-triggered: each validates every manifest, plans the whole desired state against the
recorded state, and applies, exactly like ``reconcile`` does, so a missed event costs only a
delay. Every ``interval`` seconds a full cycle also runs verify, to catch drift on the
platforms; a cycle also runs when a rule's schedule comes due.

A broken edit is safe: when validation fails, its problems are logged with file and line and
the last good manifests stay in force (nothing from the broken revision is applied, nothing is
pruned because a file broke or vanished); the next valid save is picked up by itself.

The run lock is held only during a cycle, so other commands (verify, conflicts resolve, a
manual reconcile) can run between cycles; readers never wait for it. :meth:`Watcher.stop`
(SIGINT, SIGTERM) stops it: jobs not yet started are deferred, a transfer in flight gets a
few seconds to finish and is otherwise interrupted and recorded, and the lock is released.

Started by :mod:`reconciler.cli.watch`. A cycle is the very use case ``reconcile`` runs
(:func:`reconciler.ops.reconcile`: lock, recover, plan, apply); what is particular to the
watcher is only the loop, the fallback to the last good manifests, and the log.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from reconciler import ops
from reconciler.apply.run import ApplyResult, Job, NullObserver
from reconciler.cache import Cache, default_folder
from reconciler.errors import ReconcilerError
from reconciler.model import JobStatus, ManifestSet
from reconciler.ops import Workspace
from reconciler.plan.actions import Plan
from reconciler.redact import redact
from reconciler.store.db import utcnow
from reconciler.transforms.renditions import DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class WatchOptions:
    debounce: float = 1.0  # seconds of quiet before a cycle
    interval: float = 300.0  # seconds between full cycles (with verify)
    parallel: int = 4
    log_format: str = "text"  # or json
    renditions_max_bytes: int = DEFAULT_MAX_BYTES
    queue: bool = False  # each cycle queues its jobs for `reconcile worker` processes


class Log:
    """One line per event: `TIME LEVEL event: message key=value` or one JSON object."""

    def __init__(self, echo: Callable[[str], None], fmt: str = "text") -> None:
        self.echo = echo
        self.fmt = fmt
        self.lock = threading.Lock()

    def __call__(self, event: str, message: str, level: str = "info", **fields: Any) -> None:
        now = f"{utcnow():%Y-%m-%dT%H:%M:%SZ}"
        if self.fmt == "json":
            line = json.dumps(
                {"time": now, "level": level, "event": event, "message": message, **fields},
                ensure_ascii=False,
                default=str,
            )
        else:
            extra = "".join(f" {k}={v}" for k, v in fields.items() if v is not None)
            line = f"{now} {level:<5} {event}: {message}{extra}"
        with self.lock:
            self.echo(redact(line))  # the one way out of a daemon: no credential in a log


class LogObserver(NullObserver):
    """Apply's progress as log lines: one per finished job."""

    def __init__(self, log: Log) -> None:
        self.log = log

    def job_finished(self, job: Job) -> None:
        a = job.action
        self.log(
            "job",
            f"{job.status} {job.job_type} {a.asset} -> {a.platform}",
            "info" if job.status == JobStatus.COMPLETED else "error",
            job=job.code,
            asset=a.asset,
            platform=a.platform,
            status=job.status,
            error=job.error,
        )


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [str(event.src_path)] + (
            [str(event.dest_path)] if getattr(event, "dest_path", "") else []
        )
        if all(self.watcher.ignored(p) for p in paths):
            return
        self.watcher.touched()


class _CycleSteps(ops.Listener):
    """Logs what recovery closed, and notes when the next scheduled change comes due."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def recovered(self, notes: list[str]) -> None:
        for note in notes:
            self.watcher.log("recovered", note)

    def planned(self, plan: Plan) -> None:
        waiting = [a.scheduled_for for a in plan.waiting if a.scheduled_for]
        self.watcher.next_due = (
            datetime.strptime(min(waiting), "%Y-%m-%dT%H:%M:%SZ") if waiting else None
        )


class Watcher:
    """The loop of `reconcile watch`, started by :mod:`reconciler.cli.watch`: one
    :func:`reconciler.ops.reconcile` per cycle, a cycle on change, on schedule and on
    interval."""

    def __init__(self, where: Workspace, options: WatchOptions, log: Log) -> None:
        self.where = where
        self.manifests_dir = Path(where.manifests)
        self.media_root = Path(where.media_root or self.manifests_dir)
        self.options = options
        self.log = log
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.pending = False
        self.last_event = 0.0
        self.good: ManifestSet | None = None
        self.good_since: datetime | None = None
        self.next_due: datetime | None = None
        self.skip: list[str] = [str(where.state)]
        self.cache = Cache(default_folder())

    # -- events -------------------------------------------------------------------------------
    def ignored(self, path: str) -> bool:
        name = os.path.basename(path)
        if name.startswith((".", "#")) or name.endswith(("~", ".swp", ".tmp", ".part")):
            return True
        return any(
            path == s or path.startswith(s.rstrip(os.sep) + os.sep) or path.startswith(s + ".")
            for s in self.skip
        )

    def touched(self) -> None:
        self.last_event = time.monotonic()
        self.pending = True
        self.wake.set()

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()

    # -- the loop -----------------------------------------------------------------------------
    def _watched(self) -> list[Path]:
        """The manifests folder, and the media root unless it lies inside it."""
        watched = [self.manifests_dir.resolve()]
        root = self.media_root.resolve()
        if not any(root == w or w in root.parents for w in watched):
            watched.append(root)
        return watched

    def run(self) -> int:
        observer = Observer()
        handler = _Handler(self)
        watched = self._watched()
        for folder in watched:
            observer.schedule(handler, str(folder), recursive=True)
        observer.start()
        self.log(
            "watch",
            f"watching {', '.join(str(w) for w in watched)}",
            debounce=self.options.debounce,
            interval=self.options.interval,
        )
        try:
            self._loop()
        finally:
            observer.stop()
            observer.join(timeout=5)
            self.log("watch", "stopped")
        return 0

    def _loop(self) -> None:
        """Cycle at start, then on change (after the debounce), on interval and on schedule,
        until stopped."""
        next_full = time.monotonic() + self.options.interval
        self.cycle("start", full=False)
        while not self.stop_event.is_set():
            now = time.monotonic()
            deadlines = [next_full]
            if self.pending:
                deadlines.append(self.last_event + self.options.debounce)
            if self.next_due is not None:
                until_due = (self.next_due - utcnow()).total_seconds()
                deadlines.append(now + max(until_due, 0.0))
            self.wake.wait(max(0.0, min(deadlines) - now))
            self.wake.clear()
            if self.stop_event.is_set():
                break
            now = time.monotonic()
            if self.pending and now - self.last_event >= self.options.debounce:
                self.pending = False
                self.cycle("change")
            elif now >= next_full:
                next_full = now + self.options.interval
                self.cycle("interval", full=True)
            elif self.next_due is not None and utcnow() >= self.next_due:
                self.cycle("schedule")

    def cycle(self, reason: str, full: bool = False) -> ApplyResult | None:
        """Validate, plan and apply once (and verify, when ``full``); never raises."""
        started = time.monotonic()
        try:
            manifests = self._desired()
            if manifests is None:
                return None
            options = ops.Options(
                parallel=self.options.parallel,
                renditions_max_bytes=self.options.renditions_max_bytes,
                verify=full,
                stop=self.stop_event,
                queue=self.options.queue,
            )
            done = ops.reconcile(
                manifests, self.where, options, LogObserver(self.log), _CycleSteps(self), self.cache
            )
            for conflict in done.verified.conflicts if done.verified else []:
                self.log(
                    "conflict",
                    f"{conflict['conflict_type']}: {conflict['asset']} on {conflict['platform']}",
                    "warn",
                    **conflict,
                )
            self._log_cycle(reason, done.applied, time.monotonic() - started)
            return done.applied
        except ReconcilerError as exc:
            self.log("error", str(exc), "error", reason=reason)
        except Exception as exc:  # a daemon logs and goes on
            self.log(
                "error",
                f"unexpected {type(exc).__name__}: {exc}",
                "error",
                reason=reason,
                trace=traceback.format_exc(limit=5),
            )
        return None

    def _log_cycle(self, reason: str, result: ApplyResult, took: float) -> None:
        counts = result.counts()
        self.log(
            "cycle",
            f"{reason}: {counts['completed']} completed, {counts['failed']} "
            f"failed, {counts['deferred']} deferred, {len(result.waiting)} waiting, "
            f"{len(result.held)} held",
            "info" if not counts["failed"] else "warn",
            reason=reason,
            seconds=round(took, 3),
            next_scheduled=f"{self.next_due:%Y-%m-%dT%H:%M:%SZ}" if self.next_due else None,
            **counts,
        )

    def _desired(self) -> ManifestSet | None:
        """The manifests to reconcile: the current ones when valid, else the last good."""
        result = ops.load(self.where, self.cache)
        if result.manifest_set is not None:
            self.good, self.good_since = result.manifest_set, utcnow()
            self.skip = [str(self.where.state)] + [
                str(p.target) for p in self.good.platforms.values() if p.target is not None
            ]
            return self.good
        for problem in result.errors:
            self.log(
                "invalid",
                problem.format(),
                "error",
                file=problem.file,
                line=problem.line,
                column=problem.column,
                field=problem.field,
            )
        if self.good is None:
            self.log(
                "invalid", "no valid manifests yet: nothing applied; waiting for a fix", "error"
            )
            return None
        self.log(
            "invalid",
            f"keeping the last good manifests (from {self.good_since:%H:%M:%S}"
            " UTC); nothing from the broken revision is applied",
            "warn",
        )
        return self.good
