"""The hash cache in the state file (table ``file_hashes``): read before planning, written
after hashing by commands that write state (never by a dry run)."""

from __future__ import annotations

from reconciler.sources import CacheEntry
from reconciler.store.db import Connection, upsert_rows, utcnow


def load(con: Connection | None) -> dict[str, CacheEntry]:
    if con is None:
        return {}
    rows = con.execute(
        "SELECT path, device, inode, size, mtime_ns, sha256 FROM file_hashes"
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def save(con: Connection, entries: dict[str, CacheEntry]) -> None:
    now = utcnow()
    rows = [(path, *e, now) for path, e in entries.items()]
    upsert_rows(
        con,
        "file_hashes",
        "path",
        ("path", "device", "inode", "size", "mtime_ns", "sha256", "hashed_at"),
        rows,
    )
