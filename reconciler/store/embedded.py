"""The DuckDB file as a :class:`~reconciler.store.backend.StateBackend`: the embedded default.

Each method opens the file the way :class:`~reconciler.store.db.StateStore` always has (short
read-only looks, short write transactions under the run lock) and calls the store function
that does the work; nothing here speaks SQL.

For callers that hold a state and ask it for operations: the use cases of :mod:`reconciler.ops`
as they are written (today the CLI still opens :class:`StateStore` and calls the store
functions itself). The store's own modules keep taking the connection of a transaction they
already hold (:attr:`DuckDBTransaction.con`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from reconciler.observe.sources import CacheEntry
from reconciler.provenance import Provenance
from reconciler.store import hash_cache, queries, records
from reconciler.store.backend import StateBackend, Transaction
from reconciler.store.connection import Connection
from reconciler.store.db import Store
from reconciler.store.events import EventRow, insert_events
from reconciler.store.lock import Holder
from reconciler.store.queries import Report


class DuckDBTransaction(Transaction):
    """One write transaction on the file; ``con`` is its connection, for the store's own
    modules."""

    def __init__(self, con: Connection) -> None:
        self.con = con

    def insert_events(
        self, events: Sequence[EventRow], provenance: Provenance | None = None
    ) -> list[int]:
        return insert_events(self.con, events, provenance)

    def open_conflicts(self, rows: list[tuple[Any, ...]]) -> int:
        return records.open_conflicts(self.con, rows)

    def retire_deleted(self, now: datetime | None = None) -> int:
        return records.retire_deleted(self.con, now)

    def save_hashes(self, entries: dict[str, CacheEntry]) -> None:
        hash_cache.save(self.con, entries)


class DuckDBState(StateBackend):
    """The state held in one DuckDB file, reached through ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def exists(self) -> bool:
        return self.store.exists()

    def schema_version(self) -> int | None:
        return self.store.schema_version()

    @contextmanager
    def session(self) -> Iterator[object]:
        with self.store.session():
            yield self

    def lock_holder(self) -> Holder | None:
        return self.store.lock.holder()

    @contextmanager
    def transaction(self, patience: float | None = None) -> Iterator[Transaction]:
        with self.store.writing(patience) as con:
            yield DuckDBTransaction(con)

    def load_hashes(self) -> dict[str, CacheEntry]:
        with self.store.reading() as con:
            return hash_cache.load(con)

    def resolve_conflict(
        self, conflict_id: int, use: str, by: str, note: str | None = None
    ) -> records.Resolved:
        return records.resolve_conflict(self.store, conflict_id, use, by, note)

    def load_sample(self) -> dict[str, int]:
        return records.load_sample(self.store)

    # -- reports ---------------------------------------------------------------------------
    def status(self) -> Report:
        with self.store.reading() as con:
            return queries.status(con)

    def distribution(self) -> Report:
        with self.store.reading() as con:
            return queries.distribution(con)

    def events(
        self,
        asset: str | None = None,
        platform: str | None = None,
        job: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> Report:
        with self.store.reading() as con:
            return queries.events(con, asset, platform, job, since, limit)

    def jobs(self, status_filter: str | None = None) -> Report:
        with self.store.reading() as con:
            return queries.jobs(con, status_filter)

    def conflicts(self, include_resolved: bool = False) -> Report:
        with self.store.reading() as con:
            return queries.conflicts(con, include_resolved)
