"""Plan: desired placements x recorded state -> one action per (asset, platform).

:func:`diff` is the heart of the reconciler and is pure: it reads the desired tables that
:mod:`reconciler.plan.desired` made and the recorded tables of the state file, in one DuckDB
connection, and returns actions; it touches no file and no platform. It is set-based: rule
matching, priority resolution, constraints and the comparison with the recorded state are
joins, never a Python loop over pairs.

:func:`make_plan` wraps it for the CLI: observe the master files (hash cache first), plan
against a read-only view of the state file (or an empty one when there is none), and check
the pruning guards. A dry run calls it and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import duckdb

from reconciler.cache import Cache
from reconciler.errors import ReconcilerError
from reconciler.gcpause import gc_paused
from reconciler.model import ManifestSet, Platform
from reconciler.observe.sources import CacheEntry, Observed, cacheable, observe
from reconciler.plan.desired import BYTES_PER_MB, Desired, DesiredAsset, load_desired
from reconciler.plan.schedule import waiting_reason
from reconciler.store import hash_cache
from reconciler.store.db import Connection, OutdatedSchema, StateStore, utcnow
from reconciler.store.migrations import migrate
from reconciler.transforms.recipe import Recipe

PLAN_FORMAT_VERSION = 2  # 2: actions carry their rendition
ACTIONS = ("create", "update", "update-metadata", "delete", "noop", "blocked", "held", "orphan")
CHANGES = frozenset({"create", "update", "update-metadata", "delete"})
MAX_DELETE_SHARE = 0.10
MAX_DELETE_CAP = 50


class PlanError(ReconcilerError):
    """The plan cannot be made or would be unsafe to carry out."""


@dataclass(slots=True)  # not frozen: frozen __init__ is 8x slower per object
class Action:
    """What to do about one (asset, platform) placement, and why."""

    action: str
    asset: str
    platform: str
    rule: str | None
    reason: str
    source_version: int | None  # version of the master this action brings
    target_version: int | None  # version the platform holds now, per the recorded state
    size_bytes: int | None
    checksum: str | None
    mime_type: str | None = None
    file: str | None = None  # as declared, relative to the media root
    path: str | None = None  # absolute path of the master
    priority: int | None = None
    platform_asset_id: int | None = None  # the recorded copy, when there is one
    metadata_hash: str | None = None
    transform_hash: str | None = None
    transform_rules: dict[str, Any] = field(default_factory=dict)
    waiting: str | None = None  # why a change does not run now (schedule, auto_sync false)
    scheduled_for: str | None = None  # when a scheduled change runs (ISO 8601, UTC)
    rendition_id: str | None = None  # the rendition the platform gets; None: the master
    transforms: str | None = None  # what makes that rendition, in words
    rendition_suffix: str | None = None  # the uploaded object's suffix, when it differs
    # why a blocked placement is blocked, as a code beside the sentence: unreadable,
    # shared-file, disabled, format or size
    blocked_by: str | None = None

    @property
    def is_change(self) -> bool:
        return self.action in CHANGES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    actions: list[Action]
    state_path: str
    state_exists: bool
    state_fingerprint: str
    manifests_dir: str
    media_root: str
    created_at: str
    prune: bool = False
    notes: list[str] = field(default_factory=list)
    cached_renditions: list[str] = field(default_factory=list)  # of the plan's rendition ids
    observed: Observed | None = field(default=None, repr=False)  # not serialized
    rule: str | None = None  # the plan was narrowed to (and runs now) this rule
    # where each platform sends bytes (a hash of its driver settings), so that a saved plan
    # is never applied to a destination nobody reviewed
    destinations: dict[str, str] = field(default_factory=dict)
    platform: str | None = None  # the plan was narrowed to this platform

    @property
    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.is_change]

    def summary(self) -> dict[str, int]:
        counts = Counter(a.action for a in self.actions)
        return {kind: counts.get(kind, 0) for kind in ACTIONS}

    @property
    def waiting(self) -> list[Action]:
        return [a for a in self.actions if a.is_change and a.waiting is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": PLAN_FORMAT_VERSION,
            "created_at": self.created_at,
            "manifests": self.manifests_dir,
            "media_root": self.media_root,
            "state": self.state_path,
            "state_exists": self.state_exists,
            "state_fingerprint": self.state_fingerprint,
            "prune": self.prune,
            "rule": self.rule,
            "destinations": self.destinations,
            "platform": self.platform,
            "notes": self.notes,
            "cached_renditions": self.cached_renditions,
            "summary": self.summary(),
            "changes": len(self.changes),
            "waiting": len(self.waiting),
            "actions": [a.to_dict() for a in self.actions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("format_version") != PLAN_FORMAT_VERSION:
            raise PlanError(
                f"this plan has format_version {data.get('format_version')!r}; this reconcile "
                f"reads format_version {PLAN_FORMAT_VERSION}: make the plan again"
            )
        names = set(Action.__dataclass_fields__)
        return cls(
            actions=[Action(**{k: v for k, v in a.items() if k in names}) for a in data["actions"]],
            state_path=data["state"],
            state_exists=data["state_exists"],
            state_fingerprint=data["state_fingerprint"],
            manifests_dir=data["manifests"],
            media_root=data["media_root"],
            created_at=data["created_at"],
            cached_renditions=list(data.get("cached_renditions", [])),
            prune=data.get("prune", False) is True,
            notes=list(data.get("notes", [])),
            rule=_code(data.get("rule"), "rule"),
            platform=_code(data.get("platform"), "platform"),
            destinations={str(k): str(v) for k, v in dict(data.get("destinations") or {}).items()},
        )


def _code(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise PlanError(f"the plan's {what} is not a code; make the plan again")


@dataclass(frozen=True)
class PlanOptions:
    prune: bool = False  # prune every rule's orphans, not only rules with prune: true
    max_delete: int | None = None  # per platform; default 10 % of its placements, at most 50
    force: bool = False  # skip the pruning guards
    rule: str | None = None  # a rule named explicitly runs now, schedule or auto_sync aside


# -- the diff ---------------------------------------------------------------------------------

# Every (asset, rule) pair with the reason it matches or not (a view: never materialized
# for a whole library); explain reads it as it is.
RULE_MATCHES_SQL = """
CREATE OR REPLACE TEMP VIEW rule_matches AS
SELECT a.code AS asset, r.code AS rule, r.platform AS platform, r.priority AS priority,
       a.status = 'active' AS asset_active,
       r.is_active AS rule_active,
       r.categories IS NULL OR list_contains(r.categories, a.category) AS category_ok,
       r.types IS NULL OR list_contains(r.types, a.asset_type) AS type_ok,
       NOT r.has_include OR EXISTS (
           SELECT 1 FROM d_rule_patterns p
           WHERE p.rule = r.code AND p.kind = 'include' AND a.code GLOB p.pattern) AS included,
       EXISTS (
           SELECT 1 FROM d_rule_patterns p
           WHERE p.rule = r.code AND p.kind = 'exclude' AND a.code GLOB p.pattern) AS excluded
FROM d_assets a CROSS JOIN d_rules r
"""

# The winning rule of every desired (asset, platform), with the constraint that blocks it.
PLACEMENTS_SQL = """
CREATE OR REPLACE TEMP TABLE d_placements AS
WITH winners AS (  -- an aggregate, not a window: no sort of every (asset, rule) pair
    SELECT m.asset, m.platform, arg_max(m.rule, r.rank_key) AS rule
    FROM rule_matches m JOIN d_rules r ON r.code = m.rule
    WHERE asset_active AND rule_active AND category_ok AND type_ok AND included
      AND NOT excluded
    GROUP BY m.asset, m.platform
), shared AS (  -- files that more than one asset sends to one platform: the first code wins
    SELECT w.platform, a.file, min(w.asset) AS owner
    FROM winners w JOIN d_assets a ON a.code = w.asset
    GROUP BY w.platform, a.file HAVING count(*) > 1
)
SELECT w.asset, w.platform, w.rule, r.priority, a.checksum, a.metadata_hash,
       r.transform_hash, coalesce(s.owner, w.asset) AS file_owner,
       CASE WHEN a.checksum IS NULL THEN 'unreadable'
            WHEN s.owner IS NOT NULL AND s.owner <> w.asset THEN 'shared-file'
            WHEN NOT p.sync_enabled THEN 'disabled'
            WHEN p.formats IS NOT NULL AND NOT list_contains(p.formats, a.mime) THEN 'format'
            WHEN p.max_bytes IS NOT NULL AND a.size_bytes > p.max_bytes THEN 'size'
       END AS blocked
FROM winners w
JOIN d_assets a ON a.code = w.asset
JOIN d_rules r ON r.code = w.rule
JOIN d_platforms p ON p.code = w.platform
LEFT JOIN shared s ON s.platform = w.platform AND s.file = a.file
"""

# One narrow row per desired placement: the details of assets and rules are joined in Python
# from the Desired lookups, so 100,000 assets x 4 platforms do not drag wide rows out of DuckDB.
DESIRED_ACTIONS_SQL = """
SELECT d.asset, d.platform, d.rule, d.priority, d.blocked, d.file_owner,
       pa.id AS pa_id, pa.sync_status, pa.synced_version,
       pa.local_checksum IS NOT DISTINCT FROM d.checksum AS same_content,
       coalesce(oc.n, 0) AS open_conflicts,
       CASE WHEN sa.id IS NULL OR sa.checksum IS NULL THEN 1
            WHEN sa.checksum = d.checksum THEN sa.version
            ELSE sa.version + 1 END AS source_version,
       CASE WHEN d.blocked IS NOT NULL THEN 'blocked'
            WHEN coalesce(oc.n, 0) > 0 THEN 'held'
            WHEN pa.id IS NULL OR pa.sync_status = 'deleted' OR pa.synced_version IS NULL
                 OR pa.local_checksum IS NULL THEN 'create'
            WHEN pa.local_checksum <> d.checksum OR pa.sync_status <> 'synced' THEN 'update'
            WHEN pa.metadata_hash IS DISTINCT FROM d.metadata_hash THEN 'update-metadata'
            ELSE 'noop' END AS action,  -- a changed rendition turns it into an update, in Python
       nullif(pa.rendition_id, '') AS recorded_rendition
FROM d_placements d
LEFT JOIN sync_platforms sp ON sp.platform_code = d.platform
LEFT JOIN source_assets sa ON sa.asset_code = d.asset
LEFT JOIN (SELECT source_asset_id, platform_id, max(id) AS id FROM platform_assets
           GROUP BY source_asset_id, platform_id) latest  -- the newest copy of each pair
       ON latest.source_asset_id = sa.id AND latest.platform_id = sp.id
LEFT JOIN platform_assets pa ON pa.id = latest.id
LEFT JOIN (SELECT platform_asset_id, count(*) AS n FROM sync_conflicts
           WHERE resolution = 'pending' GROUP BY platform_asset_id) oc
       ON oc.platform_asset_id = pa.id
ORDER BY d.priority DESC, d.platform, d.asset
"""

ORPHANS_SQL = """
SELECT sa.asset_code, sp.platform_code, pa.id, pa.rule_code, coalesce(pa.managed, FALSE),
       pa.synced_version, sa.version, sa.file_size_bytes, pa.local_checksum, sa.file_path,
       sa.mime_type, dp.code IS NOT NULL AS platform_declared,
       coalesce(r.prune, FALSE) AS rule_prunes, r.priority
FROM platform_assets pa
JOIN source_assets sa ON sa.id = pa.source_asset_id
JOIN sync_platforms sp ON sp.id = pa.platform_id
LEFT JOIN d_platforms dp ON dp.code = sp.platform_code
LEFT JOIN d_rules r ON r.code = pa.rule_code
WHERE coalesce(pa.sync_status, '') <> 'deleted'
  AND NOT EXISTS (SELECT 1 FROM d_placements d
                  WHERE d.asset = sa.asset_code AND d.platform = sp.platform_code)
"""


def diff(con: Connection, desired: Desired, prune_all: bool = False) -> list[Action]:
    """Desired tables + recorded tables -> actions, highest rule priority first."""
    con.execute(RULE_MATCHES_SQL)
    con.execute(PLACEMENTS_SQL)
    cursor = con.execute(DESIRED_ACTIONS_SQL)
    actions: list[Action] = []
    while rows := cursor.fetchmany(20_000):  # never all the rows as Python tuples at once
        actions += [_desired_action(row, desired) for row in rows]
    _block_shared_keys(actions)
    orphans = con.execute(ORPHANS_SQL).fetchall()
    if orphans:
        actions += [_orphan_action(row, prune_all) for row in orphans]
        actions.sort(
            key=lambda a: (-(a.priority if a.priority is not None else -1), a.platform, a.asset)
        )
    return actions


_HELD = "open conflict{s} on this copy; resolve with `reconcile conflicts resolve`"


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


def remote_key(action: Action) -> str:
    """Where a placement lives on its platform: the master's path under the media root, so
    that a platform mirrors the library's layout, with a rendition's own suffix (.mp4, .enc)
    when it has one."""
    key = action.file or action.asset
    if action.rendition_suffix:  # a rendition of another type says so
        stem = PurePosixPath(key)
        key = str(stem.with_suffix("")) + action.rendition_suffix if stem.suffix else key
    return key


def _block_shared_keys(actions: list[Action]) -> None:
    """Two placements whose copies would have the same key on one platform (report.pdf
    encrypted is report.pdf.enc, which may be another master's name): the one that already
    has a copy, else the first asset code, keeps the key; the other is blocked, never a
    conflict of the tool with its own copy."""
    by_key: dict[tuple[str, str], list[Action]] = {}
    for action in actions:
        if action.action != "blocked":
            by_key.setdefault((action.platform, remote_key(action)), []).append(action)
    for (_platform, key), sharing in by_key.items():
        if len(sharing) < 2:
            continue
        sharing.sort(key=lambda a: (a.platform_asset_id is None, a.asset))
        owner = sharing[0]
        for other in sharing[1:]:
            other.action, other.blocked_by = "blocked", "shared-key"
            other.reason = (
                f"asset {owner.asset} already sends a copy to the same key ({key}) on this "
                "platform; a platform holds one object per key"
            )


def _desired_action(row: tuple[Any, ...], desired: Desired) -> Action:
    (
        asset_code,
        platform,
        rule_code,
        priority,
        blocked,
        file_owner,
        pa_id,
        status,
        synced_version,
        same_content,
        open_conflicts,
        source_version,
        kind,
        recorded_rendition,
    ) = row
    asset = desired.assets[asset_code]
    rule = desired.rules[rule_code]
    book = desired.recipes
    recipe = (
        book.recipe(rule_code, platform, asset.mime, asset.source.asset_type)
        if book and rule.transform_rules
        else None
    )
    rendition = recipe.rendition_id(asset.checksum) if recipe and asset.checksum else None
    if kind in ("noop", "update-metadata") and rendition != recorded_rendition:
        kind = "update"
        reason = (
            "the rendition changed: new transform rules or transform code"
            if rendition and recorded_rendition
            else "transform rules now apply"
            if rendition
            else "transform rules no longer apply: the master itself goes up"
        )
    elif kind == "noop":
        reason = "in sync"
    elif kind == "create":
        reason = (
            "not on the platform yet"
            if pa_id is None or status == "deleted"
            else (f"the last sync did not complete (status {status})")
        )
    elif kind == "update":
        reason = "the master's content changed" if not same_content else (f"the copy is {status}")
    elif kind == "update-metadata":
        reason = "metadata or transform rules changed; the content did not"
    elif kind == "held":
        reason = f"{open_conflicts} " + _HELD.format(s="s" if open_conflicts > 1 else "")
    else:
        reason = _blocked_reason(blocked, asset, desired, platform, file_owner)
    # positional: 300,000 actions are built here on a large library
    return Action(
        kind,
        asset_code,
        platform,
        rule_code,
        reason,
        source_version,
        synced_version,
        asset.size_bytes,
        asset.checksum,
        asset.mime,
        asset.file,
        asset.path,
        priority,
        pa_id,
        asset.metadata_hash,
        rule.transform_hash,
        rule.transform_rules,
        None,
        None,
        rendition,
        recipe.description if recipe is not None else None,
        _suffix(recipe, asset.file),
        blocked if kind == "blocked" else None,
    )


def _suffix(recipe: Recipe | None, file: str) -> str | None:
    if recipe is None:
        return None
    master = posixpath.splitext(file)[1]  # a string op: this runs once per placement
    suffix = recipe.suffix(master)
    return suffix if suffix != master else None


def _blocked_reason(
    why: str, asset: DesiredAsset, desired: Desired, platform: str, owner: str
) -> str:
    if why == "unreadable":
        return f"cannot read the master file: {asset.observe_error}"
    if why == "shared-file":
        return (
            f"asset {owner} already sends the same file ({asset.file}) to this platform; "
            "a platform holds one copy per file"
        )
    if why == "disabled":
        return "the platform has sync_enabled: false"
    if why == "format":
        accepted = ", ".join(desired.formats.get(platform) or [])
        return f"{asset.mime} is not in the platform's supported_formats ({accepted})"
    size_mb = (asset.size_bytes or 0) / BYTES_PER_MB
    return (
        f"the file is {size_mb:,.1f} MB, over the platform's max_file_size_mb "
        f"{desired.max_file_size_mb.get(platform) or 0:g}"
    )


def _orphan_action(row: tuple[Any, ...], prune_all: bool) -> Action:
    (
        asset,
        platform,
        pa_id,
        rule,
        managed,
        synced_version,
        version,
        size,
        checksum,
        file,
        mime,
        platform_declared,
        rule_prunes,
        priority,
    ) = row
    pruning = prune_all or rule_prunes
    if not platform_declared:
        kind, reason = "orphan", "the platform is no longer declared; left alone"
    elif pruning and managed:
        kind, reason = "delete", "no longer desired, and pruning is on"
    elif pruning:
        kind, reason = "orphan", "no longer desired, but not created by this tool: left alone"
    else:
        kind, reason = "orphan", "no longer desired; left alone (pruning is off)"
    return Action(
        action=kind,
        asset=asset,
        platform=platform,
        rule=rule,
        reason=reason,
        source_version=version,
        target_version=synced_version,
        size_bytes=size,
        checksum=checksum,
        mime_type=mime,
        file=file,
        priority=priority,
        platform_asset_id=pa_id,
    )


# What a plan depends on in the recorded state, per table: a tag and the columns.
FINGERPRINTED = {
    "source_assets": ("a", "asset_code", "checksum", "version", "metadata_hash", "status"),
    "platform_assets": (
        "p", "id", "source_asset_id", "platform_id", "sync_status", "synced_version",
        "local_checksum", "remote_checksum", "metadata_hash", "transform_hash",
        "resync_requested_at IS NOT NULL",
    ),
    "sync_conflicts": ("c", "id", "platform_asset_id", "resolution"),
    "sync_platforms": ("s", "id", "platform_code", "sync_enabled"),
}  # fmt: skip


def _fingerprint_sql() -> str:
    """A streaming, order-independent hash of every fingerprinted row.

    Each row is encoded without ambiguity (a JSON list: NULL is not '', and no separator can
    be forged by a value), with its table's tag and its key, so that two rows swapping values
    change both rows' hashes. The 128-bit MD5 of each encoding is summed exactly in two 64-bit
    lanes, XORed, and counted: constant memory whatever the row count (string_agg over every
    row could not spill), and a multiset hash, so duplicated rows count.
    """
    parts = []
    for table, (tag, *columns) in FINGERPRINTED.items():
        values = ", ".join([f"'{tag}'", *(f"({c})::VARCHAR" for c in columns)])
        parts.append(f"SELECT md5_number(to_json([{values}])) AS m FROM {table}")
    low = "(m & 18446744073709551615::UHUGEINT)::UBIGINT"
    return (
        "SELECT sha256(concat_ws(':', count(*), coalesce(sum((m >> 64)::UBIGINT), 0), "
        f"coalesce(sum({low}), 0), coalesce(bit_xor(m), 0))) FROM ("
        + " UNION ALL ".join(parts)
        + ")"
    )


FINGERPRINT_SQL = _fingerprint_sql()


def state_fingerprint(con: Connection) -> str:
    """A hash of the recorded state a plan depends on; apply refuses a plan whose differs."""
    row = con.execute(FINGERPRINT_SQL).fetchone()
    return str(row[0]) if row else ""


# -- making a plan ----------------------------------------------------------------------------


PLANNING_MEMORY = "200MB"  # DuckDB takes what it may; a bound keeps a large plan modest


@contextmanager
def planning_connection(store: StateStore) -> Iterator[tuple[Connection, bool]]:
    """A connection holding the recorded tables, never writing the state file.

    Yields (connection, whether a state file exists). Without a state file the tables are
    empty and in memory. A file with an older schema is migrated in a temporary copy. DuckDB's
    memory is bounded, and anything it spills goes to a private temporary folder, never beside
    the state file.
    """
    with (
        tempfile.TemporaryDirectory(prefix="reconcile-plan-") as scratch,
        _recorded(store, Path(scratch)) as (con, exists),
    ):
        con.execute("SET memory_limit = ?", [PLANNING_MEMORY])
        con.execute("SET temp_directory = ?", [str(Path(scratch) / "spill")])
        con.execute("SET preserve_insertion_order = false")
        yield con, exists


@contextmanager
def _recorded(store: StateStore, scratch: Path) -> Iterator[tuple[Connection, bool]]:
    if not store.exists():
        con = duckdb.connect()
        try:
            migrate(con, ":memory:")
            yield con, False
        finally:
            con.close()
        return
    try:
        with store.reading(allow_migrate=False) as con:
            assert con is not None
            yield con, True
        return
    except OutdatedSchema:
        pass
    copy = scratch / store.path.name
    shutil.copy2(store.path, copy)
    wal = store.path.with_name(store.path.name + ".wal")
    if wal.exists():
        shutil.copy2(wal, copy.with_name(copy.name + ".wal"))
    with StateStore(copy, lock_timeout=store.lock_timeout).reading() as con:
        assert con is not None
        yield con, True


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
    known.update(read_cache(store))
    observed = observe(
        (a.path for a in manifests.assets.values()), known, str(manifests.media_root)
    )
    del known  # 100,000 cache entries need not outlive the observation
    if cache is not None and observed.hashed_files:
        cache.save_hashes(manifests.media_root, cacheable(observed))
    with planning_connection(store) as (con, exists):
        desired = load_desired(con, manifests, observed.files)
        actions = diff(con, desired, prune_all=options.prune)
        fingerprint = state_fingerprint(con)
        last_runs = dict(
            con.execute("SELECT config_code, last_run_at FROM sync_configurations").fetchall()
        )
        requested = frozenset(
            pa_id
            for (pa_id,) in con.execute(
                "SELECT id FROM platform_assets WHERE resync_requested_at IS NOT NULL"
            ).fetchall()
        )
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


RESYNC_REASON = "a re-sync was asked for (a conflict resolved with --use source)"


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


def current_fingerprint(store: StateStore) -> str:
    """The fingerprint of the recorded state now (for checking a saved plan)."""
    with planning_connection(store) as (con, _exists):
        return state_fingerprint(con)


def check_guards(plan: Plan, options: PlanOptions) -> None:
    """Refuse deletes when the desired set is empty or a platform would lose too much."""
    deletes = [a for a in plan.actions if a.action == "delete"]
    if not deletes or options.force:
        return
    desired = [a for a in plan.actions if a.action not in ("delete", "orphan")]
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


def read_cache(store: StateStore) -> dict[str, CacheEntry]:
    """The hash cache, read in one short look; empty without a (current) state file."""
    if not store.exists():
        return {}
    try:
        with store.reading(allow_migrate=False) as con:
            return hash_cache.load(con)
    except OutdatedSchema:
        return {}  # a file from before the cache existed
