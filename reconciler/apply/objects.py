"""The manifests' objects as rows: what admission records before the jobs that refer to them.

Called by :mod:`.admission` inside its write transaction (and by tests that set up a
recorded state): :func:`record_objects` mirrors the manifests into ``sync_platforms``,
``sync_configurations`` and ``source_assets``, bumping an asset's version when its content
checksum changes, never for a metadata change; a moved asset's row takes its new code. Rows
are built here, keyed by column name;
:mod:`reconciler.store.placements` writes them in bulk.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from reconciler.mime import canonical_mime
from reconciler.model import Asset, ManifestSet
from reconciler.observe.sources import Observation
from reconciler.plan.desired import BYTES_PER_MB, MetadataHasher
from reconciler.plan.moves import codes, resolve
from reconciler.store.db import Connection, utcnow
from reconciler.store.placements import (
    mark_undeclared,
    outdate_moved_on,
    recorded_assets,
    rename_assets,
    upsert_assets,
    upsert_platforms,
    upsert_rules,
)
from reconciler.store.planning import recorded_codes

# source_assets rows built and written at a time: 100,000 rows of 15 columns, as dicts and
# then as DuckDB values all at once, were the largest part of admission's peak memory
ASSET_BATCH = 10_000


def _listing(values: tuple[str, ...] | None) -> str:
    """The seed's comma-separated form of a list, or 'all'."""
    return "all" if values is None else ",".join(values)


def record_objects(
    con: Connection, manifests: ManifestSet, observed: dict[str, Observation]
) -> None:
    """Mirror the manifests into the recorded tables; objects no longer declared are marked
    (assets 'removed', rules inactive, platforms disabled), never deleted."""
    now = utcnow()
    platform_ids = upsert_platforms(
        con,
        [
            {
                "platform_code": p.code,
                "platform_name": p.platform_name,
                "platform_type": p.platform_type,
                "api_endpoint": p.api_endpoint,
                "auth_type": p.auth_type,
                "supported_formats": _listing(p.supported_formats),
                "max_file_size_mb": (
                    math.ceil(p.max_file_size_mb) if p.max_file_size_mb is not None else None
                ),
                "rate_limit_per_hour": p.rate_limit_per_hour,
                "sync_enabled": p.sync_enabled,
            }
            for p in manifests.platforms.values()
        ],
    )
    upsert_rules(
        con,
        [
            {
                "config_code": r.code,
                "config_name": r.config_name,
                "source_category": _listing(r.source_category),
                "asset_types": _listing(r.asset_types),
                "platform_id": platform_ids[r.platform],
                "sync_mode": r.sync_mode,
                "transform_rules": (
                    json.dumps(dict(r.transform_rules), sort_keys=True)
                    if r.transform_rules
                    else None
                ),
                "schedule_cron": r.schedule_cron,
                "auto_sync": r.auto_sync,
                "priority": r.priority,
                "is_active": r.is_active,
            }
            for r in manifests.rules.values()
        ],
    )
    if manifests.moves:  # a renamed asset keeps its row, so its copies follow it
        renames = resolve(manifests.moves, recorded_codes(con, codes(manifests.moves)))
        rename_assets(con, {old: new for new, old in renames.recorded.items()})
    recorded = recorded_assets(con)
    hasher = MetadataHasher()
    assets = list(manifests.assets.values())
    for start in range(0, len(assets), ASSET_BATCH):  # the rows of one batch alive at a time
        rows = [
            _asset_row(asset, observed.get(asset.path), recorded.get(asset.code), hasher, now)
            for asset in assets[start : start + ASSET_BATCH]
        ]
        upsert_assets(con, rows, outdate=False)
    outdate_moved_on(con)
    mark_undeclared(con, manifests.assets, manifests.rules, manifests.platforms, now)


def _asset_row(
    asset: Asset,
    seen: Observation | None,
    recorded: tuple[str | None, int] | None,
    hasher: MetadataHasher,
    now: datetime,
) -> dict[str, Any]:
    """One source_assets row: the checksum observed now (else the recorded one), and a new
    version when the content changed."""
    old_checksum, old_version = recorded or (None, None)
    checksum = seen.sha256 if seen and seen.sha256 else old_checksum
    if old_version is None:
        version = 1
    elif checksum != old_checksum and old_checksum is not None:
        version = old_version + 1
    else:
        version = old_version
    size = seen.size if seen and seen.sha256 else None
    return {
        "asset_code": asset.code,
        "title": asset.title,
        "description": asset.description,
        "asset_type": asset.asset_type,
        "category": asset.category,
        "file_path": str(asset.path),
        "file_size_mb": round(size / BYTES_PER_MB, 2) if size is not None else None,
        "checksum": checksum,
        "version": version,
        "metadata": json.dumps(dict(asset.metadata), sort_keys=True),
        "status": asset.status,
        "updated_at": now,
        "file_size_bytes": size,
        "mime_type": canonical_mime(asset.mime_type),
        "metadata_hash": hasher(asset),
    }
