"""What the stages need from the recorded state, whatever database holds it.

These protocols name the operations of the state in the stages' terms (events, conflicts,
copies, hashes, reports, the run lock), not in SQL: a caller holding a :class:`StateBackend`
never sees a connection or a query. Each method is one operation that the store already has;
the DuckDB file, the embedded default, implements them in :mod:`reconciler.store.embedded`
by delegating to those functions (named beside each method below).

A PostgreSQL backend (``--state postgresql://...``, shared by many hosts) is one new
implementation of :class:`StateBackend` and :class:`Transaction`: the same numbered
migrations, the same rows, its own SQL, and a lease (holder, heartbeat, TTL, fencing token)
behind :meth:`StateBackend.session` where the DuckDB file has its ``flock``. Nothing above
the store changes.

Imported for its types only; nothing here touches a database.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from reconciler.observe.sources import CacheEntry
    from reconciler.provenance import Provenance
    from reconciler.store.events import EventRow
    from reconciler.store.lock import Holder
    from reconciler.store.queries import Report
    from reconciler.store.records import Resolved


class Transaction(Protocol):
    """One short write transaction: what is recorded through it is committed together when it
    ends, or not at all. Batches: every method takes many rows at once."""

    def insert_events(
        self, events: Sequence[EventRow], provenance: Provenance | None = None
    ) -> list[int]:
        """Append events, stamped with the git commit of ``provenance``; their ids.
        (:func:`reconciler.store.events.insert_events`)"""
        ...

    def open_conflicts(self, rows: list[tuple[Any, ...]]) -> int:
        """Record conflicts (rows in :data:`reconciler.store.records.CONFLICT_COLUMNS`
        order), one per placement and type while it is open; how many are new.
        (:func:`reconciler.store.records.open_conflicts`)"""
        ...

    def retire_deleted(self, now: datetime | None = None) -> int:
        """Move the copies recorded as deleted out of the placements, closing their open
        conflicts; how many. (:func:`reconciler.store.records.retire_deleted`)"""
        ...

    def save_hashes(self, entries: dict[str, CacheEntry]) -> None:
        """Record the hashes of masters, by path. (:func:`reconciler.store.hash_cache.save`)"""
        ...


class Reports(Protocol):
    """The read-only reports; each answers (with no rows) before any state exists.
    (:mod:`reconciler.store.queries`)"""

    def status(self) -> Report:
        """One row per enabled platform: copies up to date, outdated, failed, conflicts."""
        ...

    def distribution(self) -> Report:
        """One row per active asset: where it is, and what needs an update."""
        ...

    def events(
        self,
        asset: str | None = None,
        platform: str | None = None,
        job: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> Report:
        """The newest ``limit`` events matching the filters, oldest first."""
        ...

    def jobs(self, status_filter: str | None = None) -> Report:
        """Every job (in one status), oldest first."""
        ...

    def conflicts(self, include_resolved: bool = False) -> Report:
        """The open conflicts (and the resolved ones), oldest first."""
        ...


class StateBackend(Reports, Protocol):
    """The recorded state of one installation: the run lock, write transactions, the hash
    cache, conflict resolution and the reports."""

    def exists(self) -> bool:
        """Whether any state has been recorded yet. (:meth:`StateStore.exists`)"""
        ...

    def schema_version(self) -> int | None:
        """The migration the state is at; None before it exists.
        (:meth:`StateStore.schema_version`)"""
        ...

    def session(self) -> AbstractContextManager[object]:
        """Hold the run lock for a writing command's whole run: one writer at a time,
        re-entrant within it. (:meth:`StateStore.session`)"""
        ...

    def lock_holder(self) -> Holder | None:
        """Who holds the run lock (or, after a crash, last held it).
        (:meth:`reconciler.store.lock.RunLock.holder`)"""
        ...

    def transaction(self, patience: float | None = None) -> AbstractContextManager[Transaction]:
        """One short write transaction, under the run lock. A busy state is waited for up to
        ``patience`` seconds (default: the lock timeout), then
        :class:`reconciler.errors.LockTimeout` is raised. (:meth:`StateStore.writing`)"""
        ...

    def load_hashes(self) -> dict[str, CacheEntry]:
        """The recorded hashes of masters, by path; empty before any state exists.
        (:func:`reconciler.store.hash_cache.load`)"""
        ...

    def resolve_conflict(
        self, conflict_id: int, use: str, by: str, note: str | None = None
    ) -> Resolved:
        """Close an open conflict with a person's decision, and log it.
        (:func:`reconciler.store.records.resolve_conflict`)"""
        ...

    def load_sample(self) -> dict[str, int]:
        """Fill an empty state with the seed's sample rows; the rows per table.
        (:func:`reconciler.store.records.load_sample`)"""
        ...
