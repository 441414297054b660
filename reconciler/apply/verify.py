"""`reconcile verify`: check recorded copies against what the platforms really hold.

For every synced copy (of one platform, or all), the driver is asked what is at its key now.
A missing object is a ``remote_deleted`` conflict and a different checksum a
``remote_modified`` conflict; either holds that placement back until someone resolves it,
unless its rule says ``on_conflict: source_wins``, in which case the copy is marked outdated
so that the next apply re-syncs it (a conscious overwrite, logged as an event). Copies that
match get ``last_verified_at``; every platform checked gets ``health_status`` and
``last_health_check``. Runs under the run lock; reads the platforms in parallel.

Called by the CLI (`reconcile verify`) and watch; its SQL is in :mod:`reconciler.store.placements`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from reconciler.apply import health as platform_health
from reconciler.drivers import driver_for
from reconciler.drivers.base import Driver, RemoteObject
from reconciler.errors import UsageError
from reconciler.model import (
    ConflictType,
    EventStatus,
    EventType,
    ManifestSet,
    Resolution,
)
from reconciler.redact import redact
from reconciler.store.db import Store, utcnow
from reconciler.store.placements import (
    SyncedCopy,
    mark_outdated,
    mark_verified,
    record_health,
    synced_copies,
)
from reconciler.store.records import EventRow, insert_events, open_conflicts
from reconciler.store.sessions import StoredSessions

Looked = tuple[SyncedCopy, RemoteObject | None, str | None]  # a copy, what is there, an error


@dataclass
class VerifyResult:
    checked: int = 0
    ok: int = 0
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    resynced: list[dict[str, Any]] = field(default_factory=list)  # source_wins
    errors: list[dict[str, Any]] = field(default_factory=list)
    health: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return 3 if (self.conflicts or self.errors) else 0


def verify(
    manifests: ManifestSet, store: Store, platform: str | None = None, parallel: int = 8
) -> VerifyResult:
    if platform is not None and platform not in manifests.platforms:
        raise UsageError(f"no platform with code '{platform}' in the manifests")
    result = VerifyResult()
    with store.session():
        with store.reading() as con:
            rows = synced_copies(con, platform)
        codes = [platform] if platform else sorted(manifests.platforms)
        drivers: dict[str, Driver] = {}
        for code in codes:
            drivers[code] = driver_for(
                manifests.platforms[code], StoredSessions(store) if rows else None
            )
        result.health = platform_health.check(drivers.__getitem__, codes)
        checkable = [
            r
            for r in rows
            if r.platform in drivers and not platform_health.is_down(result.health, r.platform)
        ]

        def look(row: SyncedCopy) -> Looked:
            try:
                return row, drivers[row.platform].stat(row.remote_key), None
            except Exception as exc:  # reported per copy, the others go on
                return row, None, redact(str(exc))

        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            looked = list(pool.map(look, checkable))
        _record(store, manifests, looked, result)
    return result


def _record(
    store: Store,
    manifests: ManifestSet,
    looked: list[Looked],
    result: VerifyResult,
) -> None:
    now = utcnow()
    verified: list[int] = []
    outdated: list[int] = []
    conflicts: list[tuple[Any, ...]] = []
    events: list[EventRow] = []
    for copy, remote, error in looked:
        pa_id, asset, platform, key = copy.id, copy.asset, copy.platform, copy.remote_key
        expected, rule_code = copy.remote_checksum, copy.rule
        result.checked += 1
        where = {"asset": asset, "platform": platform, "key": key}
        if error is not None:
            result.errors.append({**where, "error": error})
            events.append(
                EventRow(
                    EventType.VERIFICATION,
                    EventStatus.FAILED,
                    f"cannot check {key}: {error}",
                    where,
                    platform_asset_id=pa_id,
                )
            )
            continue
        if remote is not None and remote.checksum == expected:
            result.ok += 1
            verified.append(pa_id)
            continue
        kind = ConflictType.REMOTE_DELETED if remote is None else ConflictType.REMOTE_MODIFIED
        found = None if remote is None else remote.checksum
        rule = manifests.rules.get(rule_code or "")
        detail = {**where, "conflict_type": kind, "expected": expected, "found": found}
        if rule is not None and rule.on_conflict == "source_wins":
            result.resynced.append(detail)
            outdated.append(pa_id)
            events.append(
                EventRow(
                    EventType.VERIFICATION,
                    EventStatus.FAILED,
                    f"{kind.replace('_', ' ')}: {key}; the rule says "
                    "source_wins, so the next apply re-syncs it",
                    detail,
                    platform_asset_id=pa_id,
                )
            )
            continue
        result.conflicts.append(detail)
        conflicts.append(
            (
                pa_id,
                kind,
                expected,
                found,
                now,
                Resolution.PENDING,
                f"found by verify on {platform}",
            )
        )
        events.append(
            EventRow(
                EventType.CONFLICT_DETECTED,
                EventStatus.FAILED,
                f"{kind.replace('_', ' ')}: {key} on {platform}",
                detail,
                platform_asset_id=pa_id,
            )
        )
    events.extend(platform_health.events(result.health))
    with store.writing() as con:
        mark_verified(con, verified, now)
        mark_outdated(con, outdated)
        open_conflicts(con, conflicts)
        record_health(con, {p: status for p, (status, _) in result.health.items()}, now)
        insert_events(con, events)
