"""`reconcile verify`: check recorded copies against what the platforms really hold.

For every synced copy (of one platform, or all), the driver is asked what is at its key now.
A missing object is a ``remote_deleted`` conflict and a different checksum a
``remote_modified`` conflict; either holds that placement back until someone resolves it,
unless its rule says ``on_conflict: source_wins``, in which case the copy is marked outdated
so that the next apply re-syncs it (a conscious overwrite, logged as an event). Copies that
match get ``last_verified_at``; every platform checked gets ``health_status`` and
``last_health_check``. Runs under the run lock; reads the platforms in parallel.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from reconciler.drivers import driver_for
from reconciler.drivers.base import Driver, RemoteObject
from reconciler.errors import UsageError
from reconciler.model import HealthStatus, ManifestSet
from reconciler.redact import redact
from reconciler.store.db import StateStore, upsert_rows, utcnow
from reconciler.store.records import EventRow, insert_events, open_conflicts
from reconciler.store.sessions import StoredSessions


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
ORDER BY sp.platform_code, sa.asset_code
"""


def verify(
    manifests: ManifestSet, store: StateStore, platform: str | None = None, parallel: int = 8
) -> VerifyResult:
    if platform is not None and platform not in manifests.platforms:
        raise UsageError(f"no platform with code '{platform}' in the manifests")
    result = VerifyResult()
    with store.session():
        with store.reading() as con:
            rows = [] if con is None else con.execute(SYNCED_SQL, {"platform": platform}).fetchall()
        codes = [platform] if platform else sorted(manifests.platforms)
        drivers: dict[str, Driver] = {}
        for code in codes:
            drivers[code] = driver_for(
                manifests.platforms[code], StoredSessions(store) if rows else None
            )
            try:
                result.health[code] = drivers[code].health_check()
            except Exception as exc:  # a failing check means the platform is down
                result.health[code] = (HealthStatus.DOWN, redact(str(exc)))
        checkable = [
            r for r in rows if r[2] in drivers and result.health[r[2]][0] != HealthStatus.DOWN
        ]

        def look(row: tuple[Any, ...]) -> tuple[tuple[Any, ...], RemoteObject | None, str | None]:
            try:
                return row, drivers[row[2]].stat(row[3]), None
            except Exception as exc:  # reported per copy, the others go on
                return row, None, redact(str(exc))

        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            looked = list(pool.map(look, checkable))
        _record(store, manifests, looked, result)
    return result


def _record(
    store: StateStore,
    manifests: ManifestSet,
    looked: list[tuple[tuple[Any, ...], RemoteObject | None, str | None]],
    result: VerifyResult,
) -> None:
    now = utcnow()
    verified, outdated, conflicts, events = [], [], [], []
    for (pa_id, asset, platform, key, expected, rule_code), remote, error in looked:
        result.checked += 1
        where = {"asset": asset, "platform": platform, "key": key}
        if error is not None:
            result.errors.append({**where, "error": error})
            events.append(
                EventRow(
                    "verification",
                    "failed",
                    f"cannot check {key}: {error}",
                    where,
                    platform_asset_id=pa_id,
                )
            )
            continue
        if remote is not None and remote.checksum == expected:
            result.ok += 1
            verified.append((pa_id, now))
            continue
        kind = "remote_deleted" if remote is None else "remote_modified"
        found = None if remote is None else remote.checksum
        rule = manifests.rules.get(rule_code or "")
        detail = {**where, "conflict_type": kind, "expected": expected, "found": found}
        if rule is not None and rule.on_conflict == "source_wins":
            result.resynced.append(detail)
            outdated.append((pa_id, "outdated"))
            events.append(
                EventRow(
                    "verification",
                    "failed",
                    f"{kind.replace('_', ' ')}: {key}; the rule says "
                    "source_wins, so the next apply re-syncs it",
                    detail,
                    platform_asset_id=pa_id,
                )
            )
            continue
        result.conflicts.append(detail)
        conflicts.append(
            (pa_id, kind, expected, found, now, "pending", f"found by verify on {platform}")
        )
        events.append(
            EventRow(
                "conflict_detected",
                "failed",
                f"{kind.replace('_', ' ')}: {key} on {platform}",
                detail,
                platform_asset_id=pa_id,
            )
        )
    for platform, (status, detail) in result.health.items():
        events.append(
            EventRow(
                "health_check",
                "failed" if status == HealthStatus.DOWN else "success",
                f"{platform} is {status}: {detail}",
                {"platform": platform},
            )
        )
    with store.writing() as con:
        upsert_rows(con, "platform_assets", "id", ("id", "last_verified_at"), verified)
        upsert_rows(con, "platform_assets", "id", ("id", "sync_status"), outdated)
        open_conflicts(con, conflicts)
        for platform, (status, _detail) in result.health.items():
            con.execute(
                "UPDATE sync_platforms SET health_status = ?, last_health_check = ? "
                "WHERE platform_code = ?",
                [status, now, platform],
            )
        insert_events(con, events)
