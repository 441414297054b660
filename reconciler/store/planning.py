"""The SQL of planning: the desired tables, the joins of the diff, and the recorded state a
plan reads. The planner (:mod:`reconciler.plan`) runs no SQL itself; it calls these.

Called by :mod:`reconciler.plan.desired` (:func:`write_desired`), :mod:`reconciler.plan.planner`
(:func:`planning_connection`, :func:`place`, :func:`placement_rows`, :func:`orphan_rows`,
:func:`state_fingerprint`, :func:`last_runs`, :func:`resync_requested`,
:func:`cached_hashes`) and :mod:`reconciler.plan.explain` (:func:`rule_match_rows`,
:func:`recorded_placements`).

Planning is set-based: rule matching, priority resolution, constraints and the comparison
with the recorded state are joins over four temporary desired tables (``d_assets``,
``d_rules``, ``d_rule_patterns``, ``d_platforms``) and the state file's tables, never a
Python loop over pairs. Nothing here writes the state file.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from reconciler.observe.sources import CacheEntry
from reconciler.store import hash_cache
from reconciler.store.copying import planning_snapshot
from reconciler.store.db import Connection, OutdatedSchema, PgStore, StateStore, Store, temp_table
from reconciler.store.migrations import migrate

PLANNING_MEMORY = "100MB"  # DuckDB takes what it may; a bound keeps a large plan modest (it
# spills beyond it: 100,000 placements fit, and 200MB made the plan peak at 430 MB, not 385)
BATCH_ROWS = 20_000  # rows fetched at once: never all the rows as Python tuples at once

Row = tuple[Any, ...]

# -- the desired tables -----------------------------------------------------------------------

# Only what the planner's SQL reads; the rest is joined back in Python. The rows handed to
# write_desired hold their values in the order of these columns.
ASSET_COLUMNS = [
    ("code", "VARCHAR"),
    ("asset_type", "VARCHAR"),
    ("category", "VARCHAR"),
    ("status", "VARCHAR"),
    ("file", "VARCHAR"),
    ("mime", "VARCHAR"),
    ("size_bytes", "BIGINT"),
    ("checksum", "VARCHAR"),
    ("metadata_hash", "VARCHAR"),
    ("recorded_code", "VARCHAR"),  # its code in the state: an earlier one, for a moved asset
]
RULE_COLUMNS = [
    ("code", "VARCHAR"),
    ("platform", "VARCHAR"),
    ("categories", "VARCHAR[]"),
    ("types", "VARCHAR[]"),
    ("sync_mode", "VARCHAR"),
    ("has_include", "BOOLEAN"),
    ("priority", "INTEGER"),
    ("is_active", "BOOLEAN"),
    ("auto_sync", "BOOLEAN"),
    ("schedule_cron", "VARCHAR"),
    ("transform_hash", "VARCHAR"),
    ("prune", "BOOLEAN"),
    ("rank_key", "BIGINT"),  # higher wins: priority first, then the earlier code
]
PATTERN_COLUMNS = [("rule", "VARCHAR"), ("kind", "VARCHAR"), ("pattern", "VARCHAR")]
PLATFORM_COLUMNS = [
    ("code", "VARCHAR"),
    ("name", "VARCHAR"),
    ("sync_enabled", "BOOLEAN"),
    ("formats", "VARCHAR[]"),
    ("max_bytes", "BIGINT"),
    ("max_file_size_mb", "DOUBLE"),
    ("driver", "VARCHAR"),
]


def write_desired(
    con: Connection,
    assets: Sequence[Row],
    rules: Sequence[Row],
    patterns: Sequence[Row],
    platforms: Sequence[Row],
) -> None:
    """(Re)create the four desired tables in ``con``, each in one statement."""
    temp_table(con, "d_assets", ASSET_COLUMNS, assets)
    temp_table(con, "d_rules", RULE_COLUMNS, rules)
    temp_table(con, "d_rule_patterns", PATTERN_COLUMNS, patterns)
    temp_table(con, "d_platforms", PLATFORM_COLUMNS, platforms)


# -- the diff's joins -------------------------------------------------------------------------

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
       r.transform_hash, coalesce(s.owner, w.asset) AS file_owner, a.recorded_code,
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
PLACEMENT_ROWS_SQL = """
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
       nullif(pa.rendition_id, '') AS recorded_rendition,
       d.recorded_code, pa.remote_key, coalesce(pa.managed, FALSE) AS managed
FROM d_placements d
LEFT JOIN sync_platforms sp ON sp.platform_code = d.platform
LEFT JOIN source_assets sa ON sa.asset_code = d.recorded_code
LEFT JOIN (SELECT source_asset_id, platform_id, max(id) AS id FROM platform_assets
           GROUP BY source_asset_id, platform_id) latest  -- the newest copy of each pair
       ON latest.source_asset_id = sa.id AND latest.platform_id = sp.id
LEFT JOIN platform_assets pa ON pa.id = latest.id
LEFT JOIN (SELECT platform_asset_id, count(*) AS n FROM sync_conflicts
           WHERE resolution = 'pending' GROUP BY platform_asset_id) oc
       ON oc.platform_asset_id = pa.id
ORDER BY d.priority DESC, d.platform, d.asset
"""

# The recorded copies that no desired placement wants any more (a moved asset's under its
# new code).
ORPHAN_ROWS_SQL = """
SELECT coalesce(mv.code, sa.asset_code), sp.platform_code, pa.id, pa.rule_code,
       coalesce(pa.managed, FALSE),
       pa.synced_version, sa.version, sa.file_size_bytes, pa.local_checksum, sa.file_path,
       sa.mime_type, dp.code IS NOT NULL AS platform_declared,
       coalesce(r.prune, FALSE) AS rule_prunes, r.priority, pa.remote_key
FROM platform_assets pa
JOIN source_assets sa ON sa.id = pa.source_asset_id
JOIN sync_platforms sp ON sp.id = pa.platform_id
LEFT JOIN d_platforms dp ON dp.code = sp.platform_code
LEFT JOIN d_rules r ON r.code = pa.rule_code
LEFT JOIN d_assets mv ON mv.recorded_code = sa.asset_code AND mv.code <> mv.recorded_code
WHERE coalesce(pa.sync_status, '') <> 'deleted'
  AND NOT EXISTS (SELECT 1 FROM d_placements d
                  WHERE d.recorded_code = sa.asset_code AND d.platform = sp.platform_code)
"""


def place(con: Connection) -> None:
    """Match rules to assets and pick each (asset, platform)'s winning rule (``d_placements``),
    over the desired tables :func:`write_desired` made."""
    con.execute(RULE_MATCHES_SQL)
    con.execute(PLACEMENTS_SQL)


def placement_rows(con: Connection) -> Iterator[Row]:
    """Every desired placement with what the state records of it, highest rule priority
    first, fetched lazily in batches (the query runs at the first ``next``). Each row holds:
    asset, platform, rule, priority, blocked, file_owner, pa_id, sync_status, synced_version,
    same_content, open_conflicts, source_version, action, recorded_rendition, recorded_code,
    recorded_key, managed."""
    cursor = con.execute(PLACEMENT_ROWS_SQL)
    while rows := cursor.fetchmany(BATCH_ROWS):
        yield from rows


def orphan_rows(con: Connection) -> Iterator[Row]:
    """The recorded copies no placement wants (lazily: the query runs at the first ``next``,
    so after the placements are read). Each row holds: asset, platform, pa_id, rule, managed,
    synced_version, version, size, checksum, file, mime, platform_declared, rule_prunes,
    priority, remote_key."""
    yield from con.execute(ORPHAN_ROWS_SQL).fetchall()


def recorded_codes(con: Connection, codes: Sequence[str]) -> set[str]:
    """Which of ``codes`` the state records as assets that hold copies (a retired code whose
    copies were all pruned holds none: a renamed asset may take it)."""
    if not codes:
        return set()
    rows = con.execute(
        "SELECT DISTINCT sa.asset_code FROM source_assets sa "
        "JOIN platform_assets pa ON pa.source_asset_id = sa.id "
        "WHERE sa.asset_code IN (SELECT unnest(?::VARCHAR[]))",  # a hash join, not a list scan
        [list(codes)],
    ).fetchall()
    return {code for (code,) in rows}


def rule_match_rows(con: Connection, asset: str) -> list[Row]:
    """The ``rule_matches`` of one asset, highest priority first: rule, platform, priority,
    asset_active, rule_active, category_ok, type_ok, included, excluded."""
    return con.execute(
        "SELECT rule, platform, priority, asset_active, rule_active, category_ok, type_ok, "
        "included, excluded FROM rule_matches WHERE asset = ? ORDER BY priority DESC, rule",
        [asset],
    ).fetchall()


# -- the recorded state a plan reads ----------------------------------------------------------


def recorded_placements(con: Connection, asset: str) -> dict[str, dict[str, Any]]:
    """What the state records of each copy of one asset, by platform (timestamps as ISO
    text), with the count of its open conflicts."""
    cursor = con.execute(
        "SELECT sp.platform_code, pa.id, pa.sync_status, pa.synced_version, pa.local_checksum, "
        "pa.remote_checksum, pa.platform_asset_id, pa.platform_url, pa.last_synced_at, "
        "pa.last_verified_at, pa.rule_code, coalesce(pa.managed, FALSE) AS managed, "
        "pa.rendition_id, "
        "(SELECT count(*) FROM sync_conflicts c WHERE c.platform_asset_id = pa.id "
        " AND c.resolution = 'pending') AS open_conflicts "
        "FROM platform_assets pa JOIN source_assets sa ON sa.id = pa.source_asset_id "
        "JOIN sync_platforms sp ON sp.id = pa.platform_id WHERE sa.asset_code = ? "
        "ORDER BY pa.id",
        [asset],
    )
    names = [d[0] for d in cursor.description]
    out = {}
    for row in cursor.fetchall():
        record = dict(zip(names, row, strict=True))
        out[record.pop("platform_code")] = {
            k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in record.items()
        }
    return out


def last_runs(con: Connection) -> dict[str, datetime | None]:
    """When each rule last ran, by rule code (its schedule counts from then)."""
    return dict(con.execute("SELECT config_code, last_run_at FROM sync_configurations").fetchall())


def resync_requested(con: Connection) -> frozenset[int]:
    """The copies (platform_assets ids) a person asked to re-sync."""
    rows = con.execute(
        "SELECT id FROM platform_assets WHERE resync_requested_at IS NOT NULL"
    ).fetchall()
    return frozenset(pa_id for (pa_id,) in rows)


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


def cached_hashes(store: Store, paths: Sequence[str] | None = None) -> dict[str, CacheEntry]:
    """The state file's hash cache (its entries for ``paths``, when given), read in one short
    look; empty without a (current) state file."""
    if not store.exists():
        return {}
    try:
        with store.reading(allow_migrate=False) as con:
            return hash_cache.load(con, paths)
    except OutdatedSchema:
        return {}  # a file from before the cache existed


# -- the planning connection ------------------------------------------------------------------


@contextmanager
def planning_connection(store: Store) -> Iterator[tuple[Connection, bool]]:
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
def _recorded(store: Store, scratch: Path) -> Iterator[tuple[Connection, bool]]:
    if isinstance(store, PgStore):
        with store.reading(allow_migrate=False) as recorded:
            if recorded is not None:
                with planning_snapshot(recorded) as memory:
                    yield memory, True
                return
    if isinstance(store, PgStore) or not store.exists():
        empty = duckdb.connect()
        try:
            migrate(empty, ":memory:")
            yield empty, False
        finally:
            empty.close()
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
    with StateStore(copy, lock_timeout=store.lock_timeout).reading() as migrated:
        assert migrated is not None
        yield migrated, True
