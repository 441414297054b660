"""The use cases: validate, plan, reconcile, apply a saved plan, verify, explain, resolve, and
the state's own: migrate it, grant read-only access to it.

This is the layer every front end calls: the CLI (:mod:`reconciler.cli`) parses its options,
calls one function here, renders the result and picks the exit code; ``reconcile watch``
(:mod:`reconciler.watch`) calls :func:`reconcile` in its loop; queue workers are in
:mod:`reconciler.queueing`. Each takes plain data (a :class:`Workspace`: which files; an
:class:`Options`: how) and returns a result object. Nothing here imports click or prints: what
a caller shows while a run is under way reaches it through the apply's Observer and a
:class:`Listener` passed in.

Loading the manifests is a step of its own (:func:`load`), so that each caller decides what to
do with their problems: the CLI prints them and stops, the watcher logs them and keeps the last
good manifests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from reconciler.apply.refresh import refresh
from reconciler.apply.renditions import default_folder as default_renditions
from reconciler.apply.renditions import tool_files
from reconciler.apply.run import ApplyOptions, ApplyResult, Observer, apply_plan, narrow, recover
from reconciler.apply.run import queued_now as queued_copies
from reconciler.apply.verify import VerifyResult
from reconciler.apply.verify import verify as verify_copies
from reconciler.cache import Cache
from reconciler.errors import ExitCode, UsageError
from reconciler.manifests.quoting import suggest
from reconciler.manifests.validate import ValidationResult, validate_tree
from reconciler.model import ManifestSet
from reconciler.plan import reuse
from reconciler.plan.actions import Plan, Refresh
from reconciler.plan.explain import Explanation
from reconciler.plan.explain import explain as explain_asset
from reconciler.plan.planner import PlanOptions, check_guards, make_plan
from reconciler.plan.planner import reused_plan as reused
from reconciler.plan.reuse import World
from reconciler.plan.saved import checked, made_for, read_saved_plan
from reconciler.queueing import needs_queue
from reconciler.store import records
from reconciler.store.db import DEFAULT_STATE, Location, Store, open_state
from reconciler.store.embedded import DuckDBState
from reconciler.store.migrate import Migrated
from reconciler.store.migrate import migrate_state as copy_state
from reconciler.store.readonly import grant_readonly as grant
from reconciler.transforms.renditions import DEFAULT_MAX_BYTES, RenditionCache


@dataclass(frozen=True)
class Workspace:
    """The files a use case works on: manifests, media root, state file, rendition cache."""

    manifests: Path = Path("manifests")
    media_root: Path | None = None  # None: the manifests folder
    state: Location = DEFAULT_STATE  # a DuckDB file, or a PostgreSQL server and schema
    lock_timeout: float = 30.0  # seconds to keep retrying while another process holds it
    renditions: Path | None = None  # the rendition cache; None: renditions/ by the state file
    command: str = "reconcile"  # who holds the run lock, as `reconcile state info` says

    @cached_property
    def store(self) -> Store:
        """The state file (opened only when a use case reads or writes it)."""
        return open_state(self.state, lock_timeout=self.lock_timeout, command=self.command)

    @property
    def rendition_folder(self) -> Path:
        return self.renditions or default_renditions(self.store.home / "state")

    def tool_files(self) -> list[Path]:
        """This tool's own files, never masters even inside the media root."""
        if not isinstance(self.state, Path):  # a PostgreSQL state has no files here
            return [self.rendition_folder]
        return tool_files(self.state, self.renditions)


@dataclass(frozen=True)
class Options:
    """How to plan and apply: the flags of ``reconcile``, ``reconcile plan`` and ``apply``."""

    prune: bool = False  # delete copies this tool made that are no longer desired
    max_delete: int | None = None  # most deletes per platform; None: the default guard
    force: bool = False  # skip the pruning guards
    rule: str | None = None  # only this rule's placements (and run them now)
    platform: str | None = None  # only this platform's placements
    parallel: int = 4  # transfers at once
    renditions_max_bytes: int = DEFAULT_MAX_BYTES
    verify: bool = False  # after applying, check the recorded copies (watch's full cycles)
    refresh: Refresh = Refresh.MASTERS  # what a plan reads: none, the masters, also platforms
    stop: threading.Event | None = field(default=None, compare=False)  # set to stop a run
    queue: bool = False  # write the jobs for `reconcile worker` processes, run none

    def planning(self) -> PlanOptions:
        return PlanOptions(
            prune=self.prune,
            max_delete=self.max_delete,
            force=self.force,
            rule=self.rule,
            refresh=self.refresh,
        )

    def applying(self, where: Workspace) -> ApplyOptions:
        return ApplyOptions(
            parallel=self.parallel,
            rule=self.rule,
            platform=self.platform,
            stop=self.stop,
            renditions=where.renditions,
            renditions_max_bytes=self.renditions_max_bytes,
            queue=self.queue,
        )

    @property
    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()


class Listener:
    """What a run tells its caller between its steps, before the apply's own progress (which
    goes to its Observer). Subclass and override what you show; these do nothing."""

    def recovered(self, notes: list[str]) -> None:
        """Recovery closed what an interrupted run left open; one note per job."""

    def planned(self, plan: Plan) -> None:
        """The plan about to be carried out (for a saved plan: the one checked against it)."""


@dataclass
class Reconciled:
    """What one reconcile did: the plan it carried out, the run, and a verify when asked."""

    plan: Plan
    applied: ApplyResult
    verified: VerifyResult | None = None

    @property
    def exit_code(self) -> ExitCode:
        return self.applied.exit_code


@dataclass(frozen=True)
class SavedPlan:
    """A plan file as read: the plan, and a note when it was made for other paths that lead to
    the same files."""

    plan: Plan
    moved: str | None = None


# -- the use cases ------------------------------------------------------------------------------


def validate(
    manifests: Path, media_root: Path | None = None, read_media: bool = True
) -> ValidationResult:
    """Check every manifest; every problem is returned, none raised. Writes nothing.
    ``read_media=False``: media files are named (inside the media root) but not looked at,
    for a CI runner that has the manifests and not the media."""
    return validate_tree(manifests, media_root, display_root=str(manifests), read_media=read_media)


def load(where: Workspace, cache: Cache | None = None, read_media: bool = True) -> ValidationResult:
    """Validate the manifests for a use case that goes on with them: the tool's own files
    (state, rendition cache) are never taken for masters. ``read_media=False``: for a plan
    of Refresh.NONE, which looks at no master."""
    return validate_tree(
        where.manifests,
        where.media_root,
        display_root=str(where.manifests),
        cache=cache,
        private=where.tool_files(),
        read_media=read_media,
    )


def check_narrowing(manifest_set: ManifestSet, rule: str | None, platform: str | None) -> None:
    """--rule and --platform must name what the manifests declare: a typo would narrow a run
    to nothing and exit 0, with nothing synced."""
    check_narrowing_codes(manifest_set.rules, manifest_set.platforms, rule, platform)


def check_narrowing_codes(
    rules: Collection[str], platforms: Collection[str], rule: str | None, platform: str | None
) -> None:
    """:func:`check_narrowing` against the codes of the rules and platforms declared."""
    for option, code, known in (
        ("--rule", rule, rules),
        ("--platform", platform, platforms),
    ):
        if code is not None and code not in known:
            names = ", ".join(sorted(known)) or "none"
            raise UsageError(
                f"{option} {code}: the manifests declare no such code{suggest(code, known)}; "
                f"they declare {names}"
            )


def look(
    where: Workspace, options: Options | None = None, cache: Cache | None = None
) -> World | None:
    """What a plan of ``where`` would be made from, as it is now (taken before the manifests
    are read): the key to the last plan of an unchanged world. None without a cache folder
    (``--no-cache``), where no plan is kept or reused and walking the tree would be waste, for
    a plan of the masters as recorded (``--no-refresh``), which is never kept or reused, and
    for a PostgreSQL state, which changes without a file to show it."""
    refresh = (options or Options()).refresh
    if cache is None or cache.folder is None or refresh == Refresh.NONE:
        return None
    if not isinstance(where.state, Path):
        return None
    # the cache folder is not left out: validation does not leave it out (a file in it may be
    # a master), so a cache inside the media root makes every plan a new one
    prune = (options or Options()).prune
    return reuse.look(where.manifests, where.media_root, where.state, where.tool_files(), prune)


def reused_plan(
    world: World | None,
    where: Workspace,
    options: Options | None = None,
    cache: Cache | None = None,
) -> Plan | None:
    """The plan of a world that has not changed since the last plan of it (none without a
    cache): what :func:`plan` would answer, without planning. Strictly read-only."""
    options = options or Options()
    found = (
        reused(cache, world, options.planning())
        if cache is not None and world is not None
        else None
    )
    if found is None:
        return None
    made, recalled = found
    check_narrowing_codes(recalled.rules, recalled.platforms, options.rule, options.platform)
    return _narrowed(made, where, options)


def plan(
    manifest_set: ManifestSet,
    where: Workspace,
    options: Options | None = None,
    cache: Cache | None = None,
    world: World | None = None,
) -> Plan:
    """What would change, narrowed to --rule / --platform. Strictly read-only (with
    ``options.refresh`` the platforms are read too, never written). ``world``
    (from :func:`look`, before the manifests were read): keep the plan for the next plan
    of the same unchanged world."""
    options = options or Options()
    check_narrowing(manifest_set, options.rule, options.platform)
    made = make_plan(manifest_set, where.store, options.planning(), cache, world)
    narrowed = _narrowed(made, where, options)
    if options.refresh == Refresh.PLATFORMS:
        refresh(narrowed, manifest_set, RenditionCache(where.rendition_folder))
    return narrowed


def _narrowed(made: Plan, where: Workspace, options: Options) -> Plan:
    made.actions = narrow(made.actions, options.applying(where))
    made.rule, made.platform = options.rule, options.platform
    wanted = {a.rendition_id for a in made.actions if a.rendition_id}
    if wanted:
        cached = RenditionCache(where.rendition_folder).cached_ids()
        made.cached_renditions = sorted(wanted & cached)
    return made


def reconcile(
    manifest_set: ManifestSet,
    where: Workspace,
    options: Options | None = None,
    observer: Observer | None = None,
    listener: Listener | None = None,
    cache: Cache | None = None,
) -> Reconciled:
    """Under the run lock: recover what an interrupted run left open, plan, apply (and verify,
    when ``options.verify``)."""
    options = options or Options()
    check_narrowing(manifest_set, options.rule, options.platform)
    applicable(options)
    _ = needs_queue(where.state) if options.queue else None

    def fresh(store: Store) -> Plan:
        return make_plan(manifest_set, store, options.planning(), cache)

    return locked_run(manifest_set, where, options, fresh, observer, listener)


def read_saved(plan_file: Path, where: Workspace) -> SavedPlan:
    """Read a plan file and check that it was made for these manifests, media root and state
    file (refused when it was not)."""
    saved = read_saved_plan(plan_file)
    return SavedPlan(saved, made_for(saved, where.manifests, where.media_root, where.store.name))


def apply_saved(
    saved: Plan,
    manifest_set: ManifestSet,
    where: Workspace,
    options: Options | None = None,
    observer: Observer | None = None,
    listener: Listener | None = None,
    cache: Cache | None = None,
) -> Reconciled:
    """Apply exactly a saved plan. It is a request, not an authority: what runs is planned
    again and compared with it (refused when any change differs), and what may run beyond
    the manifests is the applier's to say (``options.prune``, ``options.rule``), as are the
    pruning guards (``options.force``, ``options.max_delete``), never the file's."""
    options = options or Options()
    check_narrowing(manifest_set, options.rule, options.platform)
    applicable(options)

    def compared(store: Store) -> Plan:
        again = PlanOptions(prune=options.prune, force=True, rule=options.rule)
        fresh = make_plan(manifest_set, store, again, cache)
        fresh.actions = narrow(
            fresh.actions, ApplyOptions(rule=saved.rule, platform=saved.platform)
        )
        confirmed = checked(saved, fresh)
        check_guards(confirmed, PlanOptions(force=options.force, max_delete=options.max_delete))
        return confirmed

    return locked_run(manifest_set, where, options, compared, observer, listener)


def applicable(options: Options) -> None:
    """An apply sends bytes it has read: never a plan of the masters as recorded."""
    if options.refresh == Refresh.NONE:
        raise UsageError(
            "--no-refresh plans without reading the masters, and an apply must send bytes it "
            "has read: use it with --dry-run or `reconcile plan`; nothing was changed"
        )


def locked_run(
    manifest_set: ManifestSet,
    where: Workspace,
    options: Options,
    planner: Callable[[Store], Plan],
    observer: Observer | None,
    listener: Listener | None,
) -> Reconciled:
    """Lock, recover, plan (with ``planner``), apply, and verify when asked."""
    listener = listener or Listener()
    store = where.store
    with store.session():
        recovered = recover(manifest_set, store)
        listener.recovered(recovered)
        busy = queued_copies(store)  # before the plan reads the copies: see apply_plan
        planned = planner(store)
        listener.planned(planned)
        applied = apply_plan(
            manifest_set, store, planned, options.applying(where), observer, recovered, busy
        )
        verified = None
        if options.verify and not options.stopped:
            verified = verify_copies(manifest_set, store)
    return Reconciled(planned, applied, verified)


def verify(
    manifest_set: ManifestSet, where: Workspace, platform: str | None = None
) -> VerifyResult:
    """Check the recorded copies against what the platforms hold now; records conflicts,
    last_verified_at and each platform's health."""
    return verify_copies(manifest_set, where.store, platform)


def explain(
    manifest_set: ManifestSet, where: Workspace, asset: str, platform: str | None = None
) -> Explanation:
    """Why each placement of ``asset`` is planned as it is. Read-only."""
    return explain_asset(manifest_set, where.store, asset, platform, where.rendition_folder)


def resolve(
    where: Workspace, conflict_id: int, use: str, by: str, note: str | None = None
) -> records.Resolved:
    """Close an open conflict: record the decision, who made it and when, and log an event."""
    return DuckDBState(where.store).resolve_conflict(conflict_id, use, by, note)


def migrate_state(where: Workspace, target: Location, force: bool = False) -> Migrated:
    """Copy the state of ``where`` into ``target`` (a DuckDB file or a PostgreSQL schema), ids
    and history, in one transaction under both run locks; a target with rows needs ``force``."""
    into = open_state(target, lock_timeout=where.lock_timeout, command=where.command)
    return copy_state(where.store, into, force)


def grant_readonly(where: Workspace, role: str, run: bool = True) -> str:
    """Give ``role`` read-only access to a PostgreSQL state (or, ``run=False``, only write the
    statements); the SQL."""
    return grant(where.store, role, run)
