"""Apply: carry out a plan's changes through the platform drivers, and record every step.

Called by the CLI (`reconcile`, `reconcile apply PLAN.json`) and by watch, which import the
public names from here: :func:`apply_plan`, :func:`recover`, :func:`narrow`,
:class:`ApplyOptions`, :class:`ApplyResult`, :class:`Job`, :class:`Observer` and
:class:`NullObserver`. One run, under the state file's run lock, goes through the stages in
their modules:

1. **recover** (:mod:`.recovery`): jobs an interrupted run left pending or processing are
   checked against the platform and closed either way; partial uploads are removed;
2. **admit** (:mod:`.admission`): record the manifests' objects, health-check each platform,
   spend each platform's hourly rate budget and create one job per change, all in one
   transaction;
3. **work** (:mod:`.worker`, :mod:`.transfer`): the jobs run on a thread pool (``--parallel``)
   with their retries; each ends with an :class:`~reconciler.apply.job.Outcome`;
4. **record** (:mod:`.recorder`): reports and outcomes are written in batches, each one short
   transaction; a last flush, and an :class:`ApplyResult` that maps to the exit code.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from reconciler.apply.admission import Admission, runs_now
from reconciler.apply.job import ApplyOptions, Job, NullObserver, Observer
from reconciler.apply.recorder import Recorder
from reconciler.apply.recovery import recover_jobs
from reconciler.apply.renditions import Transformer
from reconciler.apply.renditions import default_folder as default_renditions
from reconciler.apply.worker import Worker
from reconciler.drivers import driver_for
from reconciler.drivers.base import Driver
from reconciler.errors import ExitCode
from reconciler.model import ActionKind, JobStatus, ManifestSet
from reconciler.plan.actions import Action, Plan
from reconciler.provenance import of as provenance_of
from reconciler.store.db import Store, utcnow
from reconciler.store.placements import open_conflict_count
from reconciler.store.queue import queued_placements
from reconciler.store.sessions import StoredSessions

__all__ = [
    "ApplyOptions",
    "ApplyResult",
    "Job",
    "NullObserver",
    "Observer",
    "Run",
    "apply_plan",
    "narrow",
    "recover",
]


@dataclass
class ApplyResult:
    run_id: str
    jobs: list[Job] = field(default_factory=list)
    blocked: list[Action] = field(default_factory=list)
    held: list[Action] = field(default_factory=list)
    waiting: list[Action] = field(default_factory=list)  # scheduled, or auto_sync false
    recovered: list[str] = field(default_factory=list)
    open_conflicts: int = 0
    queued: bool = False  # --queue: the jobs were written for workers, none was run
    with_workers: list[Action] = field(default_factory=list)  # a queued job has their copy

    def counts(self) -> dict[str, int]:
        counts = Counter(j.status for j in self.jobs)
        finished = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.DEFERRED)
        return {str(s): counts.get(s, 0) for s in finished}

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.PARTIAL if self.undone() else ExitCode.OK

    def undone(self) -> list[str]:
        """What the run left undone, for exit code 3 and the line that explains it: failed,
        deferred and blocked work, and open conflicts."""
        c = self.counts()
        parts = [f"{c[k]} {k}" for k in (JobStatus.FAILED, JobStatus.DEFERRED) if c[k]]
        blocked = [a for a in self.blocked if a.blocked_by != "disabled"]  # on purpose: not
        if blocked:  # work left undone; a master or a format that keeps a copy out is
            parts.append(f"{len(blocked)} blocked")
        if self.open_conflicts:
            parts.append(f"{self.open_conflicts} open conflicts")
        return parts


def narrow(actions: list[Action], options: ApplyOptions) -> list[Action]:
    """The actions of --rule and --platform (all, without them)."""
    return [
        a
        for a in actions
        if (options.rule is None or a.rule == options.rule)
        and (options.platform is None or a.platform == options.platform)
    ]


class Run:
    """One apply run: its id, the drivers it made, its recorder and renditions; the stages
    get what they need of it."""

    def __init__(
        self,
        manifests: ManifestSet,
        store: Store,
        options: ApplyOptions,
        observer: Observer | None = None,
    ) -> None:
        self.manifests = manifests
        self.store = store
        self.options = options
        self.observer = observer or NullObserver()
        # 48 random bits: runs of one second (tests, a fast watch loop) do not share job codes
        # (16 bits collided in a full test run: a unique-key error at admission)
        self.run_id = f"R{utcnow():%Y%m%dT%H%M%S}-{secrets.token_hex(6)}"
        self.drivers: dict[str, Driver] = {}
        self.provenance = provenance_of(manifests.manifests_dir)
        self.recorder = Recorder(store, self.observer, self.provenance)
        self.transformer = Transformer(
            manifests,
            options.renditions or default_renditions(store.home / "state"),
            options.renditions_max_bytes,
        )

    def driver(self, platform: str) -> Driver:
        """The platform's driver, made once per run."""
        if platform not in self.drivers:
            self.drivers[platform] = driver_for(
                self.manifests.platforms[platform], StoredSessions(self.store)
            )
        return self.drivers[platform]

    def finish_drivers(self) -> None:
        """Write what drivers could not write while the state file was busy."""
        for driver in self.drivers.values():
            driver.finish()

    def recover(self) -> list[str]:
        """Close the jobs an interrupted run left open, checking what actually landed."""
        return recover_jobs(
            self.manifests,
            self.store,
            self.driver,
            self.transformer.cache,
            self.provenance,
            self.finish_drivers,
        )

    def start(
        self, plan: Plan, actions: list[Action], busy: frozenset[tuple[str, str]] = frozenset()
    ) -> tuple[list[Job], list[Action]]:
        """Admit the changes that run now: their jobs, recorded; and the changes whose copy
        a queued job not done yet is about."""
        admission = Admission(
            self.manifests,
            self.store,
            self.options,
            self.run_id,
            self.provenance,
            self.driver,
            self.transformer.cache,
        )
        return admission.admit(plan, actions, busy)

    def worker(self) -> Worker:
        return Worker(
            self.manifests,
            self.options,
            self.recorder,
            self.observer,
            self.transformer,
            self.driver,
        )

    def run(self, jobs: list[Job]) -> None:
        """Run the admitted jobs and record how each ended."""
        self.worker().run(jobs, self.finish_drivers)

    def run_feed(self, feed: Iterator[Job]) -> None:
        """Run the jobs a queue worker claims, as they come, and record how each ended."""
        self.worker().run_feed(feed, self.finish_drivers)


def apply_plan(
    manifests: ManifestSet,
    store: Store,
    plan: Plan,
    options: ApplyOptions | None = None,
    observer: Observer | None = None,
    recovered: list[str] | None = None,
    busy: frozenset[tuple[str, str]] = frozenset(),
) -> ApplyResult:
    """Carry out the plan's changes (narrowed by --rule / --platform). Hold the run lock.
    ``busy``: the copies that had a queued job not done when the plan began."""
    options = options or ApplyOptions()
    run = Run(manifests, store, options, observer)
    actions = narrow(plan.actions, options)
    jobs, with_workers = run.start(plan, actions, busy)
    if not options.queue:
        run.run(jobs)
        run.transformer.finish()
    with store.reading() as con:
        open_conflicts = open_conflict_count(con)
    return ApplyResult(
        run_id=run.run_id,
        jobs=jobs,
        blocked=[a for a in actions if a.action == ActionKind.BLOCKED],
        held=[a for a in actions if a.action == ActionKind.HELD],
        waiting=[a for a in actions if a.is_change and not runs_now(a, options)],
        recovered=recovered or [],
        open_conflicts=open_conflicts,
        queued=options.queue,
        with_workers=with_workers,
    )


def queued_now(store: Store) -> frozenset[tuple[str, str]]:
    """The copies with a queued job not done yet, read before a plan begins."""
    with store.reading() as con:
        return frozenset() if con is None else frozenset(queued_placements(con))


def recover(manifests: ManifestSet, store: Store) -> list[str]:
    """Close the jobs an interrupted run left open. Hold the run lock."""
    return Run(manifests, store, ApplyOptions()).recover()
