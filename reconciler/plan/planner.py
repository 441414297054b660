"""Making a plan: observe the masters, load the desired state, read the recorded state, diff,
mark what waits for a schedule, and check the pruning guards. Reads state, writes nothing.

:func:`make_plan` is what ``reconcile`` (plan, dry run, apply) and ``reconcile watch`` call;
a dry run calls it and writes nothing. It plans against a read-only view of the state file
(or an empty one when there is none) that :mod:`reconciler.store.planning` opens and queries;
the actions come from the pure :func:`reconciler.plan.diff.diff`. :func:`check_guards` is
also called on its own, for a saved plan checked against a fresh one.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime

from reconciler.cache import Cache
from reconciler.gcpause import gc_paused
from reconciler.model import ActionKind, ManifestSet, Platform
from reconciler.observe.sources import cacheable, observe
from reconciler.plan.actions import Action, Plan, PlanError
from reconciler.plan.desired import Desired, load_desired
from reconciler.plan.diff import diff
from reconciler.plan.schedule import waiting_reason
from reconciler.store import planning
from reconciler.store.db import Connection, StateStore, utcnow

MAX_DELETE_SHARE = 0.10
MAX_DELETE_CAP = 50
RESYNC_REASON = "a re-sync was asked for (a conflict resolved with --use source)"


@dataclass(frozen=True)
class PlanOptions:
    prune: bool = False  # prune every rule's orphans, not only rules with prune: true
    max_delete: int | None = None  # per platform; default 10 % of its placements, at most 50
    force: bool = False  # skip the pruning guards
    rule: str | None = None  # a rule named explicitly runs now, schedule or auto_sync aside


def recorded_diff(con: Connection, desired: Desired, prune_all: bool = False) -> list[Action]:
    """The diff of the desired tables already in ``con`` against its recorded tables."""
    planning.place(con)
    return diff(planning.placement_rows(con), planning.orphan_rows(con), desired, prune_all)


@gc_paused
def make_plan(
    manifests: ManifestSet,
    store: StateStore,
    options: PlanOptions | None = None,
    cache: Cache | None = None,
) -> Plan:
    """Observe the master files and plan every placement. Reads state, writes nothing."""
    options = options or PlanOptions()
    known = cache.hashes(manifests.media_root) if cache is not None else {}
    known.update(planning.cached_hashes(store))
    observed = observe(
        (a.path for a in manifests.assets.values()), known, str(manifests.media_root)
    )
    del known  # 100,000 cache entries need not outlive the observation
    if cache is not None and observed.hashed_files:
        cache.save_hashes(manifests.media_root, cacheable(observed))
    with planning.planning_connection(store) as (con, exists):
        desired = load_desired(con, manifests, observed.files)
        actions = recorded_diff(con, desired, prune_all=options.prune)
        fingerprint = planning.state_fingerprint(con)
        last_runs = planning.last_runs(con)
        requested = planning.resync_requested(con)
    actions = with_schedules(actions, manifests, last_runs, utcnow(), options.rule, requested)
    plan = Plan(
        actions=actions,
        state_path=str(store.path),
        state_exists=exists,
        state_fingerprint=fingerprint,
        manifests_dir=str(manifests.manifests_dir),
        media_root=str(manifests.media_root),
        created_at=utcnow().strftime("%Y-%m-%dT%H:%M:%SZ"),
        prune=options.prune,
        observed=observed,
        destinations={code: destination(p) for code, p in manifests.platforms.items()},
    )
    if not exists:
        plan.notes.append(f"no state file at {store.path}: planned against empty recorded state")
    check_guards(plan, options)
    return plan


def destination(platform: Platform) -> str:
    """A fingerprint of where a platform sends bytes and how it authenticates: its driver,
    target, endpoint, credential reference and driver settings."""
    settings = {
        "driver": platform.driver,
        "target": str(platform.target) if platform.target is not None else None,
        "api_endpoint": platform.api_endpoint,
        "auth_type": platform.auth_type,
        "auth": [platform.auth.env, platform.auth.file] if platform.auth else None,
        "settings": dict(platform.driver_config),
    }
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def with_schedules(
    actions: list[Action],
    manifests: ManifestSet,
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
            rule = manifests.rules.get(action.rule or "")
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
