"""Recording desired objects and synced copies in the seed's tables.

Called by apply inside its short write transactions: :func:`record_objects` mirrors the
manifests into ``sync_platforms``, ``sync_configurations`` and ``source_assets`` (bumping an
asset's version when its content checksum changes, never for a metadata change), and
:func:`record_placements` writes what a transfer left on a platform into ``platform_assets``
(a copy recorded as deleted moves on to ``platform_assets_pruned``). All writes are bulk
statements.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.model import ManifestSet
from reconciler.observe.sources import Observation
from reconciler.plan.desired import BYTES_PER_MB, MetadataHasher, canonical_mime
from reconciler.redact import redact
from reconciler.store.db import Connection, insert_rows, upsert_rows, utcnow
from reconciler.store.records import retire_deleted


def _listing(values: tuple[str, ...] | None) -> str:
    """The seed's comma-separated form of a list, or 'all'."""
    return "all" if values is None else ",".join(values)


def record_objects(
    con: Connection, manifests: ManifestSet, observed: dict[str, Observation]
) -> None:
    """Mirror the manifests into the recorded tables; objects no longer declared are marked
    (assets 'removed', rules inactive, platforms disabled), never deleted."""
    now = utcnow()
    platform_ids = upsert_rows(
        con,
        "sync_platforms",
        "platform_code",
        (
            "platform_code",
            "platform_name",
            "platform_type",
            "api_endpoint",
            "auth_type",
            "supported_formats",
            "max_file_size_mb",
            "rate_limit_per_hour",
            "sync_enabled",
        ),
        [
            (
                p.code,
                p.platform_name,
                p.platform_type,
                p.api_endpoint,
                p.auth_type,
                _listing(p.supported_formats),
                math.ceil(p.max_file_size_mb) if p.max_file_size_mb is not None else None,
                p.rate_limit_per_hour,
                p.sync_enabled,
            )
            for p in manifests.platforms.values()
        ],
    )
    upsert_rows(
        con,
        "sync_configurations",
        "config_code",
        (
            "config_code",
            "config_name",
            "source_category",
            "asset_types",
            "platform_id",
            "sync_mode",
            "transform_rules",
            "schedule_cron",
            "auto_sync",
            "priority",
            "is_active",
        ),
        [
            (
                r.code,
                r.config_name,
                _listing(r.source_category),
                _listing(r.asset_types),
                platform_ids[r.platform],
                r.sync_mode,
                json.dumps(dict(r.transform_rules), sort_keys=True) if r.transform_rules else None,
                r.schedule_cron,
                r.auto_sync,
                r.priority,
                r.is_active,
            )
            for r in manifests.rules.values()
        ],
    )
    recorded = dict(
        (
            (code, (checksum, version))
            for code, checksum, version in con.execute(
                "SELECT asset_code, checksum, version FROM source_assets"
            ).fetchall()
        )
    )
    rows = []
    hasher = MetadataHasher()
    for asset in manifests.assets.values():
        seen = observed.get(asset.path)
        old_checksum, old_version = recorded.get(asset.code, (None, None))
        checksum = seen.sha256 if seen and seen.sha256 else old_checksum
        if old_version is None:
            version = 1
        elif checksum != old_checksum and old_checksum is not None:
            version = old_version + 1
        else:
            version = old_version
        size = seen.size if seen and seen.sha256 else None
        rows.append(
            (
                asset.code,
                asset.title,
                asset.description,
                asset.asset_type,
                asset.category,
                str(asset.path),
                round(size / BYTES_PER_MB, 2) if size is not None else None,
                checksum,
                version,
                json.dumps(dict(asset.metadata), sort_keys=True),
                asset.status,
                now,
                size,
                canonical_mime(asset.mime_type),
                hasher(asset),
            )
        )
    upsert_rows(
        con,
        "source_assets",
        "asset_code",
        (
            "asset_code",
            "title",
            "description",
            "asset_type",
            "category",
            "file_path",
            "file_size_mb",
            "checksum",
            "version",
            "metadata",
            "status",
            "updated_at",
            "file_size_bytes",
            "mime_type",
            "metadata_hash",
        ),
        rows,
    )
    # a copy whose master has moved on to a new version is outdated until it is updated
    con.execute(
        "UPDATE platform_assets SET sync_status = 'outdated' FROM source_assets sa "
        "WHERE sa.id = platform_assets.source_asset_id AND platform_assets.sync_status = "
        "'synced' AND platform_assets.synced_version < sa.version"
    )
    _mark_undeclared(con, manifests, now)


def _mark_undeclared(con: Connection, manifests: ManifestSet, now: datetime) -> None:
    con.execute(
        "UPDATE source_assets SET status = 'removed', updated_at = ? "
        "WHERE status <> 'removed' AND NOT list_contains(?::VARCHAR[], asset_code)",
        [now, list(manifests.assets)],
    )
    con.execute(
        "UPDATE sync_configurations SET is_active = FALSE "
        "WHERE is_active AND NOT list_contains(?::VARCHAR[], config_code)",
        [list(manifests.rules)],
    )
    con.execute(
        "UPDATE sync_platforms SET sync_enabled = FALSE "
        "WHERE sync_enabled AND NOT list_contains(?::VARCHAR[], platform_code)",
        [list(manifests.platforms)],
    )


@dataclass(frozen=True)
class PlacementRecord:
    """What one transfer (or deletion) left on a platform."""

    asset: str
    platform: str
    rule: str | None
    sync_status: str  # pending, syncing, synced, outdated, failed, deleted
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


def record_placements(
    con: Connection, records: list[PlacementRecord]
) -> dict[tuple[str, str], int]:
    """Write copies into platform_assets (one row per asset and platform); returns row ids."""
    if not records:
        return {}
    ids = dict(con.execute("SELECT asset_code, id FROM source_assets").fetchall())
    platforms = dict(con.execute("SELECT platform_code, id FROM sync_platforms").fetchall())
    existing = {
        (sa, p): pa
        for pa, sa, p in con.execute(
            "SELECT max(id), source_asset_id, platform_id FROM platform_assets "
            "GROUP BY source_asset_id, platform_id"
        ).fetchall()
    }
    updates, inserts, keys = [], [], []
    for r in records:
        pair = (ids[r.asset], platforms[r.platform])
        if pair not in existing and r.sync_status == "deleted":
            continue  # nothing recorded to delete (already moved to platform_assets_pruned)
        values = _placement_values(r)
        keys.append((r.asset, r.platform, pair))
        if pair in existing:
            updates.append((existing[pair], r))
        else:
            inserts.append((*pair, *values))
    update_placements(con, updates)
    new_ids = insert_rows(
        con, "platform_assets", ("source_asset_id", "platform_id", *PLACEMENT_COLUMNS), inserts
    )
    existing.update({(row[0], row[1]): i for row, i in zip(inserts, new_ids, strict=True)})
    return {(asset, platform): existing[pair] for asset, platform, pair in keys}


# a failed attempt keeps what the last good sync recorded
KEPT_WHEN_NULL = [c for c in PLACEMENT_COLUMNS if c not in ("rule_code", "sync_status")]


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
    if any(r.sync_status == "synced" for _, r in rows):
        con.execute(
            "UPDATE platform_assets SET resync_requested_at = NULL "
            "WHERE resync_requested_at IS NOT NULL AND sync_status = 'synced'"
        )
    if any(r.sync_status == "deleted" for _, r in rows):
        retire_deleted(con)


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
