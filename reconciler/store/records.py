"""Writes to the recorded state that are not a sync: conflicts opened and resolved, deleted
copies moved out of platform_assets, sample data (and, re-exported from :mod:`.events`, the
event log).

Called by the CLI's state and conflicts commands, and by the apply stage for its events,
conflicts and deleted copies. Every function takes an open write connection or a
:class:`StateStore` and writes in one short transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from reconciler.errors import StateError
from reconciler.model import ConflictType, EventStatus, EventType, Resolution, SyncStatus
from reconciler.store.bulk import column_types, insert_rows, table_rows
from reconciler.store.connection import Connection, utcnow
from reconciler.store.db import Store
from reconciler.store.events import HOUSEKEEPING_EVENTS, EventRow, insert_events

# EventRow and insert_events live in .events (the store writes events about the file itself,
# below this module); the apply stage has always imported them from here.
__all__ = [
    "CONFLICT_COLUMNS",
    "RESOLUTIONS",
    "EventRow",
    "Resolved",
    "insert_events",
    "load_sample",
    "open_conflicts",
    "resolve_conflict",
    "retire_deleted",
]

# --use VALUE -> what sync_conflicts.resolution records
RESOLUTIONS = {
    "source": Resolution.USE_SOURCE,
    "target": Resolution.USE_TARGET,
    "ignore": Resolution.IGNORED,
}
# How the store closes the open conflicts of a copy it retires (never a --use value).
RESOLVED_BY_PRUNE = Resolution.RESOLVED_BY_PRUNE
OPEN = Resolution.PENDING
DELETED = SyncStatus.DELETED


CONFLICT_COLUMNS = (
    "platform_asset_id",
    "conflict_type",
    "source_value",
    "target_value",
    "detected_at",
    "resolution",
    "notes",
)


def open_conflicts(con: Connection, rows: list[tuple[Any, ...]]) -> int:
    """Insert conflicts (rows in CONFLICT_COLUMNS order), skipping any whose placement already
    has an open conflict of the same type: one problem, one conflict. Returns how many."""
    if not rows:
        return 0
    already = set(
        con.execute(
            "SELECT platform_asset_id, conflict_type FROM sync_conflicts WHERE resolution = ?",
            [OPEN],
        ).fetchall()
    )
    fresh = []
    for row in rows:
        if (row[0], row[1]) not in already:
            already.add((row[0], row[1]))
            fresh.append(row)
    insert_rows(con, "sync_conflicts", CONFLICT_COLUMNS, fresh)
    return len(fresh)


@dataclass(frozen=True)
class Resolved:
    """What :func:`resolve_conflict` recorded, for the CLI to report."""

    conflict_id: int
    resolution: str
    resolved_by: str
    resolved_at: datetime
    notes: str | None
    asset: str | None
    platform: str | None
    resync: bool = False  # the next reconcile re-syncs the copy, whatever its schedule
    manual_rule: str | None = None  # ... unless its rule has auto_sync: false: --rule runs it


def resolve_conflict(
    store: Store, conflict_id: int, use: str, by: str, note: str | None = None
) -> Resolved:
    """Close an open conflict: record the decision and who made it, and log an event."""
    if use not in RESOLUTIONS:
        raise StateError(f"--use must be one of {', '.join(RESOLUTIONS)}")
    if not by.strip():
        raise StateError("--by must name who resolves the conflict")
    if not store.exists():
        raise StateError(f"there is no state in {store.name}, so no conflict {conflict_id}")
    with store.writing() as con:
        row = con.execute(
            "SELECT c.resolution, c.resolved_by, c.resolved_at, c.platform_asset_id, "
            "sa.asset_code, sp.platform_code FROM sync_conflicts c "
            "LEFT JOIN platform_assets pa ON pa.id = c.platform_asset_id "
            "LEFT JOIN source_assets sa ON sa.id = pa.source_asset_id "
            "LEFT JOIN sync_platforms sp ON sp.id = pa.platform_id WHERE c.id = ?",
            [conflict_id],
        ).fetchone()
        if row is None:
            raise StateError(
                f"there is no conflict with id {conflict_id}; `reconcile conflicts --all` "
                "lists them"
            )
        resolution, resolved_by, resolved_at, pa_id, asset, platform = row
        if resolution != OPEN:
            when = f" at {resolved_at:%Y-%m-%d %H:%M:%S}" if resolved_at else ""
            who = f" by {resolved_by}" if resolved_by else ""
            raise StateError(
                f"conflict {conflict_id} is already resolved ({resolution}{who}{when})"
            )
        now = utcnow()
        value = RESOLUTIONS[use]
        con.execute(
            "UPDATE sync_conflicts SET resolution = ?, resolved_by = ?, resolved_at = ?, "
            "notes = CASE WHEN ? IS NULL THEN notes "
            "WHEN notes IS NULL OR notes = '' THEN ? ELSE notes || chr(10) || ? END "
            "WHERE id = ?",
            [value, by, now, note, note, note, conflict_id],
        )
        resync = _apply_resolution(con, pa_id, value, conflict_id, now)
        manual = _manual_rule(con, pa_id) if resync else None
        insert_events(
            con,
            [
                EventRow(
                    event_type=EventType.CONFLICT_RESOLVED,
                    event_status=EventStatus.SUCCESS,
                    message=f"conflict {conflict_id} resolved: use {use} (by {by})",
                    details={
                        "conflict_id": conflict_id,
                        "resolution": value,
                        "resolved_by": by,
                        "note": note,
                    },
                    platform_asset_id=pa_id,
                )
            ],
        )
    return Resolved(conflict_id, value, by, now, note, asset, platform, resync, manual)


def _apply_resolution(
    con: Connection, pa_id: int | None, resolution: str, conflict_id: int, now: datetime
) -> bool:
    """What a decision means for the copy: re-sync it, accept it, or leave it. Returns
    whether the copy is now due for a re-sync."""
    if pa_id is None or resolution == Resolution.IGNORED:
        return False
    row = con.execute(
        "SELECT conflict_type, target_value FROM sync_conflicts WHERE id = ?", [conflict_id]
    ).fetchone()
    kind, target = row if row else (None, None)
    if resolution == Resolution.USE_SOURCE:
        # the next apply sends the master again, knowingly replacing what the platform has,
        # and does not wait for the rule's schedule: a person asked for it
        # RETURNING, not the count row DuckDB gives an UPDATE: PostgreSQL's UPDATE has no rows
        changed = con.execute(
            "UPDATE platform_assets SET sync_status = ?, "
            "remote_checksum = coalesce(?, remote_checksum), resync_requested_at = ? "
            "WHERE id = ? RETURNING id",
            [SyncStatus.OUTDATED, target, now, pa_id],
        ).fetchall()
        return bool(changed)
    if (
        kind == ConflictType.FOREIGN_OBJECT and target is not None
    ):  # adopt what is there as the copy
        _adopt_foreign(con, pa_id, target, now)
        return False
    if kind == ConflictType.REMOTE_DELETED or target is None:  # accept that it is gone
        con.execute("UPDATE platform_assets SET sync_status = ? WHERE id = ?", [DELETED, pa_id])
        retire_deleted(con, now)
    else:  # the platform's bytes become the expected ones
        con.execute(
            "UPDATE platform_assets SET remote_checksum = ?, sync_status = ?, "
            "last_verified_at = ?, resync_requested_at = NULL WHERE id = ?",
            [target, SyncStatus.SYNCED, now, pa_id],
        )
    return False


def _adopt_foreign(con: Connection, pa_id: int, target: str, now: datetime) -> None:
    """--use target on a foreign object: the object found at the key becomes the copy, as if
    the create that found it had synced it (the master and rendition that job was for), but
    not as this tool's own: it is never pruned."""
    con.execute(
        "UPDATE platform_assets SET sync_status = ?, remote_checksum = ?, "
        "local_checksum = j.source_checksum, synced_version = j.source_version, "
        "rendition_id = coalesce(j.rendition_id, ''), metadata_hash = j.metadata_hash, "
        "transform_hash = j.transform_hash, remote_key = j.remote_key, managed = FALSE, "
        "last_synced_at = ?, last_verified_at = ?, resync_requested_at = NULL "
        "FROM (SELECT j.* FROM sync_jobs j JOIN platform_assets pa "
        "      ON pa.source_asset_id = j.asset_id AND pa.platform_id = j.platform_id "
        "      WHERE pa.id = ? ORDER BY j.id DESC LIMIT 1) j "
        "WHERE platform_assets.id = ?",
        [SyncStatus.SYNCED, target, now, now, pa_id, pa_id],
    )


def _manual_rule(con: Connection, pa_id: int | None) -> str | None:
    """The rule of the copy, when it has auto_sync: false (it never runs by itself)."""
    row = con.execute(
        "SELECT sc.config_code FROM platform_assets pa JOIN sync_configurations sc "
        "ON sc.config_code = pa.rule_code WHERE pa.id = ? AND NOT coalesce(sc.auto_sync, TRUE)",
        [pa_id],
    ).fetchone()
    return str(row[0]) if row else None


def retire_deleted(con: Connection, now: datetime | None = None) -> int:
    """Move the copies recorded as deleted out of platform_assets, into
    platform_assets_pruned with their ids; close their open conflicts. Returns how many.

    The seed's reports count every platform_assets row as a copy on its platform, so a
    deleted copy must not stay there. Called wherever a copy is recorded as deleted (the
    placement writes of :mod:`reconciler.apply.recorder`, and a resolution above).
    """
    row = con.execute(
        "SELECT count(*) FROM platform_assets WHERE sync_status = ?", [DELETED]
    ).fetchone()
    if not row or not row[0]:
        return 0
    now = now or utcnow()
    con.execute(
        "UPDATE sync_conflicts SET resolution = ?, resolved_by = 'reconcile', resolved_at = ? "
        "WHERE resolution = ? AND platform_asset_id IN "
        "(SELECT id FROM platform_assets WHERE sync_status = ?)",
        [RESOLVED_BY_PRUNE, now, OPEN, DELETED],
    )
    names = ", ".join(c for c in column_types(con, "platform_assets"))
    con.execute(
        f"INSERT INTO platform_assets_pruned ({names}, pruned_at) SELECT {names}, "
        "?::TIMESTAMP FROM platform_assets WHERE sync_status = ?",
        [now, DELETED],
    )
    con.execute("DELETE FROM platform_assets WHERE sync_status = ?", [DELETED])
    return int(row[0])


def load_sample(store: Store) -> dict[str, int]:
    """Load the seed's sample rows (Steps 8-13) into an empty state file.

    The store's own events about the file (a replaced unfinished file, a lock takeover) do
    not make it non-empty: they are kept, numbered after the sample's events.
    """
    sql = resources.files("reconciler.store").joinpath("sample_data.sql").read_text("utf-8")
    with store.writing() as con:
        kept = con.execute(
            "SELECT event_type, event_status, message, details, event_time FROM "
            "sync_events_log WHERE event_type IN (SELECT unnest(?::VARCHAR[])) ORDER BY id",
            [list(HOUSEKEEPING_EVENTS)],
        ).fetchall()
        existing = {t: n for t, n in table_rows(con).items() if n}
        if existing.get("sync_events_log") == len(kept):
            existing.pop("sync_events_log", None)
        if existing:
            held = ", ".join(f"{n} {t}" for t, n in existing.items())
            raise StateError(
                f"{store.label} already holds data ({held}); load-sample only fills an empty "
                "one: pass --state with a new path"
            )
        con.execute("DELETE FROM sync_events_log")
        con.execute(sql)
        loaded = table_rows(con)
        insert_events(
            con,
            [
                EventRow(kind, status, message, json.loads(details) if details else None,
                         event_time=when)
                for kind, status, message, details, when in kept
            ],
        )  # fmt: skip
        return loaded
