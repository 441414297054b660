"""The hash cache in the state file (table ``file_hashes``): read before planning, written
after hashing by commands that write state (never by a dry run). Called by planning
(:mod:`reconciler.plan.planner`) and by the apply stage (:mod:`reconciler.apply.admission`).

Rows are keyed like :class:`reconciler.observe.sources.CacheEntry`, by (path, device, inode, size,
mtime_ns, ctime_ns). Rows written before schema version 10 have no ctime_ns (NULL): they are
not loaded, so their files count as misses and are hashed again; the next command that
records the new observation replaces the row.
"""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.observe.sources import CacheEntry
from reconciler.store.bulk import upsert_rows
from reconciler.store.connection import Connection, utcnow

_ENTRIES = (
    "SELECT path, device, inode, size, mtime_ns, ctime_ns, sha256 FROM file_hashes "
    "WHERE ctime_ns IS NOT NULL"
)
_ENTRIES_OF = _ENTRIES + " AND path IN (SELECT unnest(?::VARCHAR[]))"


def load(con: Connection | None, paths: Sequence[str] | None = None) -> dict[str, CacheEntry]:
    """Every usable entry by path (only those of ``paths``, when given); empty without a
    state file."""
    if con is None:
        return {}
    if paths is None:
        rows = con.execute(_ENTRIES).fetchall()
    else:
        rows = con.execute(_ENTRIES_OF, [list(paths)]).fetchall()
    return {r[0]: CacheEntry._make(r[1:]) for r in rows}


def save(con: Connection, entries: dict[str, CacheEntry]) -> None:
    """Insert the entries of new paths and replace those of known ones, in bulk."""
    now = utcnow()
    rows = [(path, *e, now) for path, e in entries.items()]
    upsert_rows(
        con,
        "file_hashes",
        "path",
        ("path", "device", "inode", "size", "mtime_ns", "ctime_ns", "sha256", "hashed_at"),
        rows,
    )
