"""The event log (table ``sync_events_log``): one :class:`EventRow` per thing that happened,
appended in bulk, with credentials redacted before they reach the file.

Written by the apply stage (through :mod:`reconciler.store.records`, which re-exports these),
by conflict resolution, and by :class:`reconciler.store.db.StateStore` itself about the file
(a replaced unfinished file, a run lock taken over from a dead holder).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reconciler.model import EventType
from reconciler.provenance import Provenance
from reconciler.redact import redact, redact_value
from reconciler.store.bulk import insert_batched
from reconciler.store.connection import Connection, utcnow

# Not in EventType: the store's own event about the file, written before any run.
STATE_FILE_REPLACED = EventType.STATE_FILE_REPLACED
# Events the store writes about the file itself; a file holding only these is still empty.
HOUSEKEEPING_EVENTS = (STATE_FILE_REPLACED, EventType.LOCK_TAKEOVER.value)

_COLUMNS = ("job_id", "platform_asset_id", "event_type", "event_status", "message",
            "details", "event_time", "git_commit", "git_dirty")  # fmt: skip


@dataclass(frozen=True)
class EventRow:
    """One row for sync_events_log."""

    event_type: str
    event_status: str
    message: str
    details: dict[str, Any] | None = None
    job_id: int | None = None
    platform_asset_id: int | None = None
    event_time: datetime | None = None


def insert_events(
    con: Connection, events: Sequence[EventRow], provenance: Provenance | None = None
) -> list[int]:
    """Append events in one statement; ``provenance`` stamps the git commit on each."""
    now = utcnow()
    commit = provenance.commit if provenance else None
    dirty = provenance.dirty if provenance else None
    rows = [  # redacted here too: no event reaches the state file with a credential in it
        (e.job_id, e.platform_asset_id, e.event_type, e.event_status, redact(e.message),
         None if e.details is None
         else json.dumps(redact_value(e.details), sort_keys=True, default=str),
         e.event_time or now, commit, dirty)
        for e in events
    ]  # fmt: skip
    return insert_batched(con, "sync_events_log", _COLUMNS, rows)
