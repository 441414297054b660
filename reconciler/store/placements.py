"""The recorded copies (``platform_assets``) and the objects they belong to: the SQL of apply.

Called by :mod:`reconciler.apply` only: its recorder writes what transfers left on the
platforms (:func:`record_placements`, :func:`update_placements`), admission mirrors the
manifests' objects (:func:`upsert_objects`) and the platforms' health, verify reads the synced
copies and marks what it found. Every function takes an open connection and returns plain
values; none opens a transaction of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.model import ConflictType, Resolution, SyncStatus
from reconciler.redact import redact
from reconciler.store.bulk import insert_batched
from reconciler.store.db import Connection, upsert_rows
from reconciler.store.jobs import IMPORTED_SQL
from reconciler.store.records import retire_deleted

Row = Mapping[str, Any]  # one row, keyed by column name


@dataclass(frozen=True)
class PlacementRecord:
    """What one transfer (or deletion) left on a platform."""

    asset: str
    platform: str
    rule: str | None
    sync_status: str  # a SyncStatus: pending, syncing, synced, outdated, failed, deleted
    synced_version: int | None = None
    local_checksum: str | None = None
    remote_checksum: str | None = None
    platform_asset_id: str | None = None  # the platform's id for the copy
    platform_url: str | None = None
    remote_key: str | None = None
    metadata_hash: str | None = None
    transform_hash: str | None = None
    managed: bool | None = None  # None: as recorded; only a sync says whose the copy is
    synced_at: datetime | None = None
    verified_at: datetime | None = None
    rendition_id: str | None = None  # '' when the platform holds the master itself


PLACEMENT_COLUMNS = (
    "rule_code",
    "sync_status",
    "synced_version",
    "local_checksum",
    "remote_checksum",
    "platform_asset_id",
    "platform_url",
    "remote_key",
    "metadata_hash",
    "transform_hash",
    "managed",
    "last_synced_at",
    "last_verified_at",
    "rendition_id",
)
# a failed attempt keeps what the last good sync recorded
KEPT_WHEN_NULL = [c for c in PLACEMENT_COLUMNS if c not in ("rule_code", "sync_status")]


def _placement_values(r: PlacementRecord) -> tuple[Any, ...]:
    return (
        r.rule,
        r.sync_status,
        r.synced_version,
        r.local_checksum,
        r.remote_checksum,
        redact(r.platform_asset_id) if r.platform_asset_id else r.platform_asset_id,
        redact(r.platform_url) if r.platform_url else r.platform_url,  # a platform's link
        r.remote_key,
        r.metadata_hash,
        r.transform_hash,
        r.managed,
        r.synced_at,
        r.verified_at,
        r.rendition_id,
    )


def record_placements(
    con: Connection, records: list[PlacementRecord]
) -> dict[tuple[str, str], int]:
    """Write copies into platform_assets (one row per asset and platform); returns row ids."""
    if not records:
        return {}
    ids = object_ids(con)
    existing = {
        (sa, p): pa
        for pa, sa, p in con.execute(
            "SELECT max(id), source_asset_id, platform_id FROM platform_assets "
            "GROUP BY source_asset_id, platform_id"
        ).fetchall()
    }
    updates, inserts, keys = [], [], []
    for r in records:
        pair = (ids.assets[r.asset], ids.platforms[r.platform])
        if pair not in existing and r.sync_status == SyncStatus.DELETED:
            continue  # nothing recorded to delete (already moved to platform_assets_pruned)
        keys.append((r.asset, r.platform, pair))
        if pair in existing:
            updates.append((existing[pair], r))
        else:
            inserts.append((*pair, *_placement_values(r)))
    update_placements(con, updates)
    new_ids = insert_batched(
        con, "platform_assets", ("source_asset_id", "platform_id", *PLACEMENT_COLUMNS), inserts
    )
    existing.update({(row[0], row[1]): i for row, i in zip(inserts, new_ids, strict=True)})
    return {(asset, platform): existing[pair] for asset, platform, pair in keys}


def update_placements(con: Connection, rows: list[tuple[int, PlacementRecord]]) -> None:
    """Update copies whose platform_assets id is known (apply knows them all), in bulk.

    A copy recorded as deleted then leaves platform_assets for platform_assets_pruned (the
    seed's reports must not count it); a copy synced again needs no requested re-sync.
    """
    if not rows:
        return
    upsert_rows(
        con,
        "platform_assets",
        "id",
        ("id", *PLACEMENT_COLUMNS),
        [(pa_id, *_placement_values(r)) for pa_id, r in rows],
        KEPT_WHEN_NULL,
    )
    if any(r.sync_status == SyncStatus.SYNCED for _, r in rows):
        con.execute(
            "UPDATE platform_assets SET resync_requested_at = NULL "
            "WHERE resync_requested_at IS NOT NULL AND sync_status = 'synced'"
        )
    if any(r.sync_status == SyncStatus.DELETED for _, r in rows):
        retire_deleted(con)


def record_details(con: Connection, details: Mapping[int, str]) -> None:
    """What the platforms answered for their copies (JSON text, already redacted), by id."""
    if details:
        upsert_rows(con, "platform_assets", "id", ("id", "metadata"), list(details.items()))


@dataclass(frozen=True)
class Latest:
    """The newest platform_assets row of one asset on one platform."""

    id: int
    remote_key: str | None
    remote_checksum: str | None
    managed: bool = False  # made by this tool (else adopted or imported: it stays at its key)
    imported: bool = False  # an object an import took over: the team's, whatever updates it


def recorded_objects(con: Connection, platform: str) -> tuple[set[str], set[str]]:
    """The keys and the platform ids of every copy recorded on ``platform`` (discovery
    lists the objects no copy records)."""
    rows = con.execute(
        "SELECT pa.remote_key, pa.platform_asset_id FROM platform_assets pa "
        "JOIN sync_platforms sp ON sp.id = pa.platform_id WHERE sp.platform_code = ?",
        [platform],
    ).fetchall()
    return {k for k, _ in rows if k is not None}, {i for _, i in rows if i is not None}


LATEST_SQL = f"""
SELECT sa.asset_code, sp.platform_code, pa.id, pa.remote_key, pa.remote_checksum,
       coalesce(pa.managed, FALSE), {IMPORTED_SQL}
FROM platform_assets pa
JOIN (SELECT max(id) AS id FROM platform_assets
      GROUP BY source_asset_id, platform_id) newest ON newest.id = pa.id
JOIN source_assets sa ON sa.id = pa.source_asset_id
JOIN sync_platforms sp ON sp.id = pa.platform_id
"""  # a constant: IMPORTED_SQL is SQL text of this module's own, no value


def latest_placements(con: Connection) -> dict[tuple[str, str], Latest]:
    """The newest recorded copy of every (asset code, platform code)."""
    rows = con.execute(LATEST_SQL).fetchall()
    return {(asset, platform): Latest(*rest) for asset, platform, *rest in rows}


# -- the objects the copies belong to ---------------------------------------------------------


@dataclass(frozen=True)
class ObjectIds:
    """The row ids of the recorded assets, platforms and rules, by code."""

    assets: dict[str, int]
    platforms: dict[str, int]
    rules: dict[str, int]


def object_ids(con: Connection) -> ObjectIds:
    return ObjectIds(
        assets=dict(con.execute("SELECT asset_code, id FROM source_assets").fetchall()),
        platforms=dict(con.execute("SELECT platform_code, id FROM sync_platforms").fetchall()),
        rules=dict(con.execute("SELECT config_code, id FROM sync_configurations").fetchall()),
    )


def _upsert(con: Connection, table: str, key: str, rows: Sequence[Row]) -> dict[Any, int]:
    if not rows:
        return {}
    columns = tuple(rows[0])
    return upsert_rows(con, table, key, columns, [tuple(r[c] for c in columns) for r in rows])


def upsert_platforms(con: Connection, rows: Sequence[Row]) -> dict[str, int]:
    """Write sync_platforms rows (keyed by column name); their ids by platform code."""
    return _upsert(con, "sync_platforms", "platform_code", rows)


def upsert_rules(con: Connection, rows: Sequence[Row]) -> None:
    _upsert(con, "sync_configurations", "config_code", rows)


def recorded_assets(con: Connection) -> dict[str, tuple[str | None, int]]:
    """Every recorded asset's content checksum and version, by asset code."""
    rows = con.execute("SELECT asset_code, checksum, version FROM source_assets").fetchall()
    return {code: (checksum, version) for code, checksum, version in rows}


def upsert_assets(con: Connection, rows: Sequence[Row], outdate: bool = True) -> None:
    """Write source_assets rows; a copy whose master moved on to a new version is then
    outdated until it is updated (by :func:`outdate_moved_on`, at once unless ``outdate``
    is false: a caller writing its rows in batches calls it after the last)."""
    _upsert(con, "source_assets", "asset_code", rows)
    if outdate:
        outdate_moved_on(con)


def outdate_moved_on(con: Connection) -> None:
    """Mark outdated the synced copies whose master has a newer recorded version."""
    con.execute(
        "UPDATE platform_assets SET sync_status = 'outdated' FROM source_assets sa "
        "WHERE sa.id = platform_assets.source_asset_id AND platform_assets.sync_status = "
        "'synced' AND platform_assets.synced_version < sa.version"
    )


def rename_assets(con: Connection, renames: Mapping[str, str]) -> None:
    """Give recorded assets their new codes (by old code), keeping their ids, versions and
    history; a new code already recorded is left alone (the planner refuses that case)."""
    for old, new in sorted(renames.items()):
        # a retired row under the new code (its copies all pruned) keeps its history under
        # a code of its own, CODE#id
        con.execute(
            "UPDATE source_assets SET asset_code = left(asset_code, 38) || '#' || id::VARCHAR "
            "WHERE asset_code = ? AND NOT EXISTS "
            "(SELECT 1 FROM platform_assets pa WHERE pa.source_asset_id = source_assets.id)",
            [new],
        )
        con.execute(
            "UPDATE source_assets SET asset_code = ? WHERE asset_code = ? "
            "AND NOT EXISTS (SELECT 1 FROM source_assets WHERE asset_code = ?)",
            [new, old, new],
        )


def mark_undeclared(
    con: Connection,
    assets: Iterable[str],
    rules: Iterable[str],
    platforms: Iterable[str],
    now: datetime,
) -> None:
    """Objects no longer declared are marked (assets 'removed', rules inactive, platforms
    disabled), never deleted. The declared codes are an anti-join (a hash of them), not a
    list searched once per row: that was quadratic, 26 s at 100,000 assets."""
    con.execute(
        "UPDATE source_assets SET status = 'removed', updated_at = ? "
        "WHERE status <> 'removed' AND asset_code NOT IN (SELECT unnest(?::VARCHAR[]))",
        [now, list(assets)],
    )
    con.execute(
        "UPDATE sync_configurations SET is_active = FALSE "
        "WHERE is_active AND config_code NOT IN (SELECT unnest(?::VARCHAR[]))",
        [list(rules)],
    )
    con.execute(
        "UPDATE sync_platforms SET sync_enabled = FALSE "
        "WHERE sync_enabled AND platform_code NOT IN (SELECT unnest(?::VARCHAR[]))",
        [list(platforms)],
    )


def record_health(con: Connection, health: Mapping[str, str], now: datetime) -> None:
    """Each platform's health status (by code), checked at ``now``."""
    for platform, status in health.items():
        con.execute(
            "UPDATE sync_platforms SET health_status = ?, last_health_check = ? "
            "WHERE platform_code = ?",
            [status, now, platform],
        )


# -- conflicts on the copies ------------------------------------------------------------------


def resolve_retried(
    con: Connection, closed: Sequence[tuple[int, ConflictType]], now: datetime
) -> None:
    """Close the open conflicts (placement id, conflict type) that a retry fixed."""
    if not closed:
        return
    con.execute(
        "UPDATE sync_conflicts SET resolution = ?, "
        "resolved_by = 'reconcile', resolved_at = ? WHERE resolution = "
        "'pending' AND (platform_asset_id, conflict_type) IN "
        "(SELECT unnest(?::INTEGER[]), unnest(?::VARCHAR[]))",
        [Resolution.RESOLVED_BY_RETRY, now, [c[0] for c in closed], [c[1] for c in closed]],
    )


def open_conflict_count(con: Connection | None) -> int:
    """How many conflicts wait for a person (0 without a state file)."""
    if con is None:
        return 0
    row = con.execute("SELECT count(*) FROM sync_conflicts WHERE resolution = 'pending'").fetchone()
    return int(row[0]) if row else 0


# -- verify -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncedCopy:
    """A copy recorded as synced, with no open conflict: what verify checks."""

    id: int
    asset: str
    platform: str
    remote_key: str
    remote_checksum: str | None
    rule: str | None


SYNCED_SQL = """
SELECT pa.id, sa.asset_code, sp.platform_code, pa.remote_key, pa.remote_checksum,
       pa.rule_code
FROM platform_assets pa
JOIN source_assets sa ON sa.id = pa.source_asset_id
JOIN sync_platforms sp ON sp.id = pa.platform_id
WHERE pa.sync_status = 'synced' AND pa.remote_key IS NOT NULL
  AND ($platform IS NULL OR sp.platform_code = $platform)
  AND NOT EXISTS (SELECT 1 FROM sync_conflicts c
                  WHERE c.platform_asset_id = pa.id AND c.resolution = 'pending')
  AND NOT EXISTS (SELECT 1 FROM sync_jobs j  -- a queue worker may be changing it right now
                  WHERE j.queued AND j.status IN ('pending', 'processing', 'deferred')
                    AND j.asset_id = pa.source_asset_id AND j.platform_id = pa.platform_id)
ORDER BY sp.platform_code, sa.asset_code
"""


def synced_copies(con: Connection | None, platform: str | None = None) -> list[SyncedCopy]:
    """The synced copies (of one platform, or all) in platform and asset order; not those with
    a queued job not done yet (verify would find a worker's change half made)."""
    if con is None:
        return []
    return [SyncedCopy(*row) for row in con.execute(SYNCED_SQL, {"platform": platform}).fetchall()]


def mark_verified(con: Connection, ids: Sequence[int], now: datetime) -> None:
    upsert_rows(con, "platform_assets", "id", ("id", "last_verified_at"), [(i, now) for i in ids])


def mark_outdated(con: Connection, ids: Sequence[int]) -> None:
    """Copies the next apply re-syncs (a rule that says source_wins)."""
    rows = [(i, SyncStatus.OUTDATED) for i in ids]
    upsert_rows(con, "platform_assets", "id", ("id", "sync_status"), rows)
