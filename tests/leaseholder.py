"""A second process that holds a PostgreSQL state's run lock, for tests/test_pg_lease.py.

``python leaseholder.py URL MODE SECONDS COMMAND`` (PGPASSWORD from the environment):

* ``session``: hold the lease (a writing command's whole run) for SECONDS, then release it;
* ``write``: hold it, and inside it one write transaction that works for SECONDS (a long
  statement, as a large batch would be);
* ``inside``: hold it, write an event inside a transaction, then wait SECONDS with the
  transaction open (idle in it, as a process stopped mid-write is), then commit.

It prints ``held`` (or ``inside``) once there, and at the end ``done`` or ``error: ...``
with the class of the error.
"""

from __future__ import annotations

import sys
import time

from reconciler.errors import ReconcilerError
from reconciler.model import EventStatus, EventType
from reconciler.store.events import EventRow, insert_events
from reconciler.store.pg import PgLocation
from reconciler.store.postgres import PgStore


def main(url: str, mode: str, seconds: float, command: str) -> None:
    store = PgStore(PgLocation.parse(url), lock_timeout=30, command=command)
    try:
        with store.session():
            if mode == "session":
                print("held", flush=True)
                time.sleep(seconds)
            elif mode == "write":
                with store.writing() as con:
                    print("held", flush=True)
                    con.execute("SELECT pg_sleep(?)", [seconds])
            else:
                with store.writing() as con:
                    row = EventRow(EventType.DEFERRED, EventStatus.SUCCESS, "written inside")
                    insert_events(con, [row])
                    print("inside", flush=True)
                    time.sleep(seconds)
    except ReconcilerError as exc:
        print(f"error: {type(exc).__name__}: {exc}", flush=True)
        return
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4])
