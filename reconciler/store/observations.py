"""The recorded observations of the masters, and the last apply: what a plan that reads no
master (``reconcile --dry-run --no-refresh``) is planned against, and what every plan says it
was planned against.

Called by :mod:`reconciler.plan.planner` inside its planning connection (read-only; never
writes). One query function, in plain SQL with no engine's own functions, so that another
backend of the store can run it as it is.

What a master was last observed to be is what the last apply recorded of it in
``source_assets``: its checksum and size, stamped ``updated_at`` (every apply observes each
declared master and writes its row then). An apply that could not read a master keeps the
checksum it had and records no size; the hash cache (``file_hashes``) then says when those
bytes were last read, and how many there were.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from reconciler.store.connection import Connection

_MASTERS_SQL = """
SELECT sa.asset_code, sa.file_path, sa.checksum,
       COALESCE(sa.file_size_bytes, fh.size) AS size_bytes,
       CASE WHEN sa.file_size_bytes IS NOT NULL THEN sa.updated_at
            ELSE fh.hashed_at END AS observed_at
FROM source_assets sa
LEFT JOIN file_hashes fh ON fh.path = sa.file_path AND fh.sha256 = sa.checksum
WHERE sa.checksum IS NOT NULL
"""

_LAST_APPLY_SQL = """
SELECT completed_at, git_commit, git_dirty FROM sync_jobs
WHERE completed_at IS NOT NULL
ORDER BY completed_at DESC, id DESC
LIMIT 1
"""


class RecordedMaster(NamedTuple):
    """What the state records of one master: where it was read, its bytes, and when."""

    file_path: str | None  # absolute, on the machine that applied
    checksum: str
    size_bytes: int | None
    observed_at: datetime | None  # naive UTC; None: not known


class LastApply(NamedTuple):
    """The newest job that finished: when, and from which commit of the manifests."""

    completed_at: datetime  # naive UTC
    git_commit: str | None
    git_dirty: bool | None


class Recorded(NamedTuple):
    masters: dict[str, RecordedMaster]  # by recorded asset code; empty unless asked for
    last_apply: LastApply | None


def recorded_observations(con: Connection, masters: bool = True) -> Recorded:
    """The last apply, and (with ``masters``) every recorded master observation by asset
    code."""
    found: dict[str, RecordedMaster] = {}
    if masters:
        for code, path, checksum, size, when in con.execute(_MASTERS_SQL).fetchall():
            found[code] = RecordedMaster(path, checksum, size, when)
    row = con.execute(_LAST_APPLY_SQL).fetchone()
    last = LastApply(row[0], row[1], row[2]) if row is not None else None
    return Recorded(found, last)
