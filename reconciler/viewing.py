"""The dashboard's use cases (``reconcile serve``): what the web pages and the JSON API show
and the two things a person may do there, resolve a conflict and ask for a copy to be sent
again. Called by :mod:`reconciler.web` beside the use cases of :mod:`reconciler.ops`, in the
same way: plain data in, a result out, nothing printed.

Every read is one short read-only look at the state (a DuckDB file that ``reconcile watch`` is
writing is opened, read and closed again between its writes; a PostgreSQL state is read in
one read-only transaction, as the read-only role allows). Nothing here migrates the state.

The manifests are read once and again only when a file under the manifests folder changes
(:class:`Manifests`): a page needs them for the plan, the explanation and the thumbnails, and
reading 100,000 assets per request would be waste. Manifests that stopped validating leave
the last good ones in force, as in ``reconcile watch``, with the problem to show.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler import ops
from reconciler.errors import UsageError
from reconciler.model import ManifestSet
from reconciler.plan.actions import Plan
from reconciler.plan.explain import Explanation
from reconciler.store import dashboard, queries
from reconciler.store.dashboard import Page
from reconciler.store.embedded import DuckDBState
from reconciler.store.queries import Report
from reconciler.store.records import Resolved


class NotFound(UsageError):
    """An asset the manifests do not declare and the state does not record."""


CHECK_SECONDS = 2.0  # the manifests folder is looked at again at most this often


@dataclass
class Manifests:
    """The manifests of a workspace, read again when a file under the folder changes."""

    where: ops.Workspace
    _stamp: tuple[tuple[str, int, int], ...] | None = None
    _set: ManifestSet | None = None
    problem: str | None = None  # why the newest manifests are not in force
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _checked: float = -CHECK_SECONDS

    def _stamp_now(self) -> tuple[tuple[str, int, int], ...]:
        found = []
        for folder, _, names in os.walk(self.where.manifests):
            for name in names:
                if name.endswith((".yaml", ".yml")):
                    path = os.path.join(folder, name)
                    try:
                        st = os.stat(path)
                    except OSError:
                        continue
                    found.append((path, st.st_mtime_ns, st.st_size))
        return tuple(sorted(found))

    def current(self) -> ManifestSet | None:
        """The manifest set in force: the newest that validates (None before any did)."""
        with self._lock:
            if time.monotonic() - self._checked < CHECK_SECONDS:
                return self._set
            stamp = self._stamp_now()
            self._checked = time.monotonic()
            if stamp != self._stamp:
                result = ops.load(self.where)
                self._stamp = stamp
                if result.manifest_set is not None:
                    self._set, self.problem = result.manifest_set, None
                else:
                    first = result.errors[0].format() if result.errors else "invalid manifests"
                    self.problem = first.splitlines()[0]
            return self._set


def status(where: ops.Workspace) -> Report:
    """The seed's dashboard: one row per enabled platform (as ``reconcile status``)."""
    return DuckDBState(where.store).status()


def distribution(
    where: ops.Workspace, search: str, sort: str, desc: bool, offset: int, limit: int
) -> Page:
    """One page of the distribution report (as ``reconcile report distribution``)."""
    with where.store.reading(allow_migrate=False) as con:
        return dashboard.distribution_page(con, search, sort, desc, offset, limit)


@dataclass(frozen=True)
class AssetView:
    """One asset: its record, its copies, why each is planned as it is, and its events."""

    code: str
    record: dict[str, Any] | None
    placements: Report
    events: Report
    explanation: Explanation | None
    image: bool  # the master is an image: it has a thumbnail


def asset(where: ops.Workspace, manifest_set: ManifestSet | None, code: str) -> AssetView:
    """The asset page; a :class:`UsageError` for a code neither declared nor recorded."""
    with where.store.reading(allow_migrate=False) as con:
        record = dashboard.asset(con, code)
        placements = dashboard.placements(con, code)
    declared = manifest_set.assets.get(code) if manifest_set is not None else None
    if record is None and declared is None:
        raise NotFound(f"there is no asset {code}")
    explanation = (
        ops.explain(manifest_set, where, code)
        if manifest_set is not None and declared is not None
        else None
    )
    events = DuckDBState(where.store).events(asset=code, limit=50)
    kind = declared.asset_type if declared is not None else (record or {}).get("asset_type")
    return AssetView(code, record, placements, events, explanation, kind == "image")


def conflicts(where: ops.Workspace, include_resolved: bool = False) -> Report:
    return DuckDBState(where.store).conflicts(include_resolved)


def jobs(where: ops.Workspace, status_filter: str | None = None, limit: int = 200) -> Report:
    """The newest ``limit`` jobs (in one status), newest first."""
    if status_filter is not None and status_filter not in queries.JOB_STATUSES:
        raise UsageError(f"no job status '{status_filter}'; one of {queries.JOB_STATUSES}")
    with where.store.reading(allow_migrate=False) as con:
        return dashboard.newest_jobs(con, status_filter, limit)


def events(
    where: ops.Workspace,
    asset: str | None = None,
    platform: str | None = None,
    limit: int = 100,
) -> Report:
    """The newest ``limit`` events matching the filters, newest first."""
    found = DuckDBState(where.store).events(asset, platform, None, None, limit)
    found.rows.reverse()
    return found


def activity(where: ops.Workspace, hours: int = 24) -> Report:
    """Jobs completed and failed per hour and platform, the last ``hours`` hours."""
    with where.store.reading(allow_migrate=False) as con:
        return dashboard.activity(con, hours)


def pending_plan(manifest_set: ManifestSet, where: ops.Workspace) -> Plan:
    """What the next reconcile would do: a dry run's plan. Strictly read-only."""
    return ops.plan(manifest_set, where)


def resolve(
    where: ops.Workspace, conflict_id: int, use: str, by: str, note: str | None
) -> Resolved:
    """Resolve a conflict as the signed-in user ``by``."""
    return ops.resolve(where, conflict_id, use, by, note or None)


def request_sync(where: ops.Workspace, asset_code: str, platform: str, by: str) -> None:
    """Ask for one copy to be sent again at the next reconcile."""
    dashboard.request_sync(where.store, asset_code, platform, by)


def master_of(manifest_set: ManifestSet | None, code: str) -> tuple[str, str] | None:
    """The path of an image asset's master and the real media root it must be inside."""
    if manifest_set is None:
        return None
    found = manifest_set.assets.get(code)
    if found is None or found.asset_type != "image":
        return None
    return found.path, str(Path(manifest_set.media_root).resolve())
