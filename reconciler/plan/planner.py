"""Making a plan: observe the masters, load the desired state, read the recorded state, diff,
mark what waits for a schedule, and check the pruning guards. Reads state, writes nothing.

:func:`make_plan` is what ``reconcile`` (plan, dry run, apply) and ``reconcile watch`` call;
a dry run calls it and writes nothing. It plans against a read-only view of the state file
(or an empty one when there is none) that :mod:`reconciler.store.planning` opens and queries;
the actions come from the pure :func:`reconciler.plan.diff.diff`. :func:`check_guards` is
also called on its own, for a saved plan checked against a fresh one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from reconciler.cache import Cache
from reconciler.gcpause import gc_paused
from reconciler.model import ActionKind, ManifestSet
from reconciler.observe.sources import Observed, cacheable, observe
from reconciler.plan import against
from reconciler.plan.actions import Action, Plan, PlanError, Refresh
from reconciler.plan.desired import Desired, load_desired
from reconciler.plan.diff import diff
from reconciler.plan.moves import codes, resolve, unrecorded_imports
from reconciler.plan.reuse import Diffed, Recalled, Setting, World, recall, remember, setting
from reconciler.plan.schedule import Scheduled, waiting_reason
from reconciler.store import planning
from reconciler.store.db import Connection, Store, utcnow
from reconciler.store.observations import recorded_observations
from reconciler.store.pg import is_url

MAX_DELETE_SHARE = 0.10
MAX_DELETE_CAP = 50
RESYNC_REASON = "a re-sync was asked for (a conflict resolved with --use source)"


@dataclass(frozen=True)
class PlanOptions:
    prune: bool = False  # prune every rule's orphans, not only rules with prune: true
    max_delete: int | None = None  # per platform; default 10 % of its placements, at most 50
    force: bool = False  # skip the pruning guards
    rule: str | None = None  # a rule named explicitly runs now, schedule or auto_sync aside
    refresh: Refresh = Refresh.MASTERS  # Refresh.NONE: the masters as recorded, none read


def recorded_diff(con: Connection, desired: Desired, prune_all: bool = False) -> list[Action]:
    """The diff of the desired tables already in ``con`` against its recorded tables."""
    planning.place(con)
    return diff(planning.placement_rows(con), planning.orphan_rows(con), desired, prune_all)


@gc_paused
def make_plan(
    manifests: ManifestSet,
    store: Store,
    options: PlanOptions | None = None,
    cache: Cache | None = None,
    world: World | None = None,
) -> Plan:
    """Observe the master files and plan every placement. Reads state, writes nothing.
    ``world``: what the inputs looked like before the manifests were read; the plan is then
    kept in ``cache`` for the next plan of the same unchanged world."""
    options = options or PlanOptions()
    diffed = diff_state(manifests, store, options, cache)
    where = setting(manifests, store.name)
    if world is not None and cache is not None and manifests.warnings == 0:
        remember(cache, world, diffed, manifests, where)
    return finish(diffed, manifests.rules, where, options)


def reused_plan(cache: Cache, world: World, options: PlanOptions) -> tuple[Plan, Recalled] | None:
    """The last plan of ``world``, kept because nothing it was made from changed since
    (:mod:`reconciler.plan.reuse`), with the schedules and guards of now; None: plan again."""
    recalled = recall(cache, world)
    if recalled is None:
        return None
    return finish(recalled.diffed, recalled.rules, recalled.setting, options), recalled


def diff_state(
    manifests: ManifestSet, store: Store, options: PlanOptions, cache: Cache | None
) -> Diffed:
    """Observe the masters (hash what the caches do not know; with Refresh.NONE take what
    the state recorded of them), load the desired state and diff it against the recorded
    one."""
    blind = options.refresh == Refresh.NONE
    observed = Observed() if blind else _observe(manifests, store, cache)
    oldest = None
    with planning.planning_connection(store) as (con, exists):
        recorded = recorded_observations(con, masters=blind)
        renames = resolve(manifests.moves, planning.recorded_codes(con, codes(manifests.moves)))
        if blind:
            observed, oldest = against.recorded_masters(
                manifests, recorded.masters, renames.recorded
            )
        desired = load_desired(con, manifests, observed.files, renames.recorded)
        actions = recorded_diff(con, desired, prune_all=options.prune)
        notes = renames.notes
        if blind:
            notes += against.blind_notes(manifests, against.settle_unobserved(actions))
        if manifests.imports:
            placed = {(a.asset, a.platform) for a in actions}
            imports = [(i.code, i.asset, i.platform) for i in manifests.imports.values()]
            notes += unrecorded_imports(imports, placed)
            notes += [
                f"Import {manifests.imports[(a.asset, a.platform)].code}: {a.asset} on "
                f"{a.platform} has a copy this tool sent; the object it names "
                f"({a.import_id}) is not taken over"
                for a in actions
                if a.import_id is not None and a.action != ActionKind.IMPORT
            ]
        return Diffed(
            actions,
            exists,
            planning.state_fingerprint(con),
            planning.last_runs(con),
            planning.resync_requested(con),
            observed,
            notes,
            against.describe(store, con, exists, recorded.last_apply),
            options.refresh,
            against.iso(oldest) if blind else None,
        )


def _observe(manifests: ManifestSet, store: Store, cache: Cache | None) -> Observed:
    """Every master's sha256: hashed unless a hash cache vouches for it."""
    known = cache.hashes(manifests.media_root) if cache is not None else {}
    observed = observe(
        (a.path for a in manifests.assets.values()),
        known,
        str(manifests.media_root),
        more=lambda paths: planning.cached_hashes(store, paths),
    )
    del known  # 100,000 cache entries need not outlive the observation
    if cache is not None and observed.hashed_files:
        cache.save_hashes(manifests.media_root, cacheable(observed))
    return observed


def finish(
    diffed: Diffed, rules: Mapping[str, Scheduled], setting: Setting, options: PlanOptions
) -> Plan:
    """The plan of a diff now: its changes marked with the schedules they wait for, and
    checked against the pruning guards."""
    now = utcnow()
    actions = with_schedules(
        diffed.actions, rules, diffed.last_runs, now, options.rule, diffed.requested
    )
    plan = Plan(
        actions=actions,
        state_path=setting.state_path,
        state_exists=diffed.state_exists,
        state_fingerprint=diffed.state_fingerprint,
        manifests_dir=setting.manifests_dir,
        media_root=setting.media_root,
        created_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        prune=options.prune,
        observed=diffed.observed,
        destinations=dict(setting.destinations),
        refresh=diffed.refresh,
        observed_at=diffed.observed_at,
        against=diffed.against,
    )
    plan.notes += diffed.notes
    if not diffed.state_exists:
        kind = "state in" if is_url(setting.state_path) else "state file at"
        plan.notes.append(f"no {kind} {setting.state_path}: planned against empty recorded state")
    check_guards(plan, options)
    return plan


def with_schedules(
    actions: list[Action],
    rules: Mapping[str, Scheduled],
    last_runs: dict[str, datetime | None],
    now: datetime,
    forced_rule: str | None,
    requested: frozenset[int] = frozenset(),
) -> list[Action]:
    """Mark the changes that wait for their rule's schedule, or for an explicit run.

    ``requested`` holds the copies (platform_assets ids) a person asked to re-sync, by
    resolving a conflict with ``--use source``: they do not wait for the schedule.
    """
    out = []
    for action in actions:
        if action.is_change:
            rule = rules.get(action.rule or "")
            asked = action.platform_asset_id in requested
            if asked:
                action = replace(action, reason=f"{action.reason}; {RESYNC_REASON}")
            why, when = waiting_reason(
                action.action,
                rule,
                last_runs.get(action.rule or ""),
                now,
                forced_rule,
                requested=asked,
            )
            if why is not None:
                action = replace(
                    action,
                    waiting=why,
                    scheduled_for=(f"{when:%Y-%m-%dT%H:%M:%SZ}" if when else None),
                )
        out.append(action)
    return out


def check_guards(plan: Plan, options: PlanOptions) -> None:
    """Refuse deletes when the desired set is empty or a platform would lose too much."""
    deletes = [a for a in plan.actions if a.action == ActionKind.DELETE]
    if not deletes or options.force:
        return
    desired = [a for a in plan.actions if a.action not in (ActionKind.DELETE, ActionKind.ORPHAN)]
    if not desired:
        raise PlanError(
            f"refusing to delete {len(deletes)} copies: nothing at all is desired (did the "
            "manifests lose their assets or rules?). Pass --force if that is really intended"
        )
    placements = Counter(a.platform for a in plan.actions if a.platform_asset_id is not None)
    for platform, count in sorted(Counter(a.platform for a in deletes).items()):
        allowed = options.max_delete
        if allowed is None:
            allowed = min(
                MAX_DELETE_CAP, max(1, math.ceil(MAX_DELETE_SHARE * placements[platform]))
            )
        if count > allowed:
            raise PlanError(
                f"refusing to delete {count} of {placements[platform]} copies on {platform} "
                f"(more than --max-delete {allowed}); pass --max-delete N or --force if that "
                "is really intended"
            )
