"""The state: real DuckDB files and real PostgreSQL databases (each test that is not about the
file itself runs on both), migrations, bulk writes, and two processes contending."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reconciler.errors import LockTimeout, StateError
from reconciler.store import migrations
from reconciler.store.db import (
    SEED_TABLES,
    Connection,
    StateStore,
    Store,
    insert_rows,
    location,
    open_state,
    table_rows,
)
from reconciler.store.placements import PlacementRecord, record_placements, update_placements
from reconciler.store.records import load_sample

from helpers import TESTS, created, lock_record, query, reader, short_lease, snapshot

# The seed's Step 14 and Step 15 queries, copied verbatim from the seed (tests/data/, which
# psql runs against a PostgreSQL state too).
SEED_STEP_14 = (TESTS / "data" / "seed_step14_sync_status.sql").read_text("utf-8")
SEED_STEP_15 = (TESTS / "data" / "seed_step15_distribution.sql").read_text("utf-8")


@pytest.fixture
def store(state_store: Store) -> Store:
    """A state of each backend (state_at)."""
    return state_store


@pytest.fixture
def file_store(tmp_path: Path) -> StateStore:
    """A DuckDB state file, for the tests of the file itself and of DuckDB's own lock."""
    return StateStore(tmp_path / "state" / "reconciler.duckdb", lock_timeout=5)


def test_the_file_is_created_by_the_first_write_only(store: Store, state_at: str) -> None:
    with store.reading() as con:
        assert con is None
    assert not created(state_at)
    with store.writing() as con:
        assert table_rows(con) == dict.fromkeys(SEED_TABLES, 0)
    assert created(state_at)
    assert store.schema_version() == migrations.latest_version()


def test_the_seed_tables_have_the_seed_columns(store: Store, state_at: str) -> None:
    with store.writing():
        pass
    columns = {
        table: [
            r[0]
            for r in query(
                state_at,
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                "ORDER BY ordinal_position",
                [table],
            )
        ]
        for table in SEED_TABLES
    }
    assert columns["platform_assets"][:12] == [
        "id",
        "source_asset_id",
        "platform_id",
        "platform_asset_id",
        "platform_url",
        "synced_version",
        "local_checksum",
        "remote_checksum",
        "sync_status",
        "last_synced_at",
        "last_verified_at",
        "metadata",
    ]
    assert columns["sync_conflicts"][:10] == [
        "id",
        "platform_asset_id",
        "conflict_type",
        "source_value",
        "target_value",
        "detected_at",
        "resolution",
        "resolved_by",
        "resolved_at",
        "notes",
    ]
    for table in SEED_TABLES:
        assert columns[table][0] == "id"


def test_the_seed_queries_run_verbatim_on_a_file_the_tool_wrote(
    store: Store, state_at: str
) -> None:
    load_sample(store)
    with reader(state_at) as con:
        step14 = con.execute(SEED_STEP_14).fetchall()
        step15 = con.execute(SEED_STEP_15).fetchall()
    assert step14[0] == ("Social Media Hub", "healthy", 1, 0, 0, 1, 1)
    assert step14[1] == ("Primary CDN", "healthy", 2, 2, 0, 0, 0)
    assert sorted(step14[2:5]) == [
        ("AWS S3 Backup", "healthy", 1, 1, 0, 0, 0),
        ("Vimeo Account", "healthy", 1, 1, 0, 0, 0),
        ("YouTube Channel", "healthy", 1, 1, 0, 0, 0),
    ]
    assert step14[5] == ("External DAM", "degraded", 0, 0, 0, 0, 0)
    launch = next(r for r in step15 if r[0] == "VID-LAUNCH-2024")
    assert launch[:7] == ("VID-LAUNCH-2024", "Product Launch 2024", "video", 3, 3, 3, 0)
    assert sorted(launch[7].split(", ")) == ["AWS S3 Backup", "Primary CDN", "YouTube Channel"]
    assert len(step15) == 5


def test_load_sample_refuses_a_file_with_data(store: Store, state_at: str) -> None:
    load_sample(store)
    before = snapshot(state_at)
    with pytest.raises(StateError, match="already holds data"):
        load_sample(store)
    assert snapshot(state_at) == before


def test_a_failed_migration_leaves_the_file_as_it_was(
    store: Store, state_at: str, monkeypatch
) -> None:
    with store.writing():
        pass
    good = migrations.all_migrations()
    broken = migrations.Migration(
        len(good) + 1, "broken", "CREATE TABLE half_done (a INTEGER); SELECT * FROM nowhere;"
    )
    monkeypatch.setattr(migrations, "all_migrations", lambda: (*good, broken))
    with pytest.raises(StateError, match="left as it was"), store.writing():
        pass
    monkeypatch.undo()
    with reader(state_at) as con:
        tables = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        version = migrations.current_version(con)
    assert "half_done" not in tables
    assert version == len(good)


def test_a_file_from_a_newer_version_is_refused(store: Store) -> None:
    with store.writing() as con:
        con.execute("INSERT INTO schema_migrations VALUES (999, 'future', now())")
    with pytest.raises(StateError, match="newer version of reconcile"), store.reading():
        pass
    with pytest.raises(StateError, match="newer version of reconcile"), store.writing():
        pass


def test_a_file_that_is_not_duckdb_is_a_clear_error(file_store: StateStore) -> None:
    file_store.path.parent.mkdir(parents=True)
    file_store.path.write_text("this is not a database\n" * 100)
    with pytest.raises(StateError, match="Is it a reconcile state file"), file_store.reading():
        pass


def test_a_write_that_fails_is_rolled_back(store: Store) -> None:
    with pytest.raises(RuntimeError), store.writing() as con:
        insert_rows(con, "sync_events_log", ["event_type"], [("a",), ("b",)])
        raise RuntimeError("boom")
    with store.reading() as con:
        assert table_rows(con)["sync_events_log"] == 0


def test_insert_rows_writes_ten_thousand_rows_in_one_statement(store: Store) -> None:
    rows = [(f"JOB-{i:05d}", 1, i, 1, "initial", "pending", None) for i in range(10_000)]
    columns = [
        "job_code",
        "config_id",
        "asset_id",
        "platform_id",
        "job_type",
        "status",
        "error_message",
    ]
    with store.writing() as con:
        first = insert_rows(con, "sync_jobs", columns, rows[:5_000])
        second = insert_rows(con, "sync_jobs", columns, rows[5_000:])
    assert first == list(range(1, 5_001)) and second == list(range(5_001, 10_001))
    with store.reading() as con:
        got = con.execute(
            "SELECT id, job_code, asset_id FROM sync_jobs WHERE id IN (1, 10000) ORDER BY id"
        ).fetchall()
    assert got == [(1, "JOB-00000", 0), (10_000, "JOB-09999", 9_999)]


# -- two processes ---------------------------------------------------------------------------

HOLD_RUN_LOCK = """
import sys, time
from reconciler.store.db import location, open_state
store = open_state(location(sys.argv[1]), command="reconcile apply")
with store.session():
    with store.writing():
        pass
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""

HOLD_DUCKDB = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("held", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def hold(script: str, path: Path | str, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_waits_then_names_the_holder(state_at: str) -> None:
    holder = hold(HOLD_RUN_LOCK, state_at, 30)
    try:
        waiting = open_state(location(state_at), lock_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(LockTimeout) as caught, waiting.writing():
            pass
        assert time.monotonic() - started >= 0.5
        message = str(caught.value)
        assert f"pid {holder.pid}" in message
        assert "reconcile apply" in message and "since" in message
    finally:
        holder.kill()
        holder.wait()


def test_readers_answer_while_a_writing_command_runs(store: Store, state_at: str) -> None:
    load_sample(store)
    holder = hold(HOLD_RUN_LOCK, state_at, 30)
    try:
        with open_state(location(state_at), lock_timeout=2).reading() as con:
            assert con is not None
            assert table_rows(con)["sync_platforms"] == 6
    finally:
        holder.kill()
        holder.wait()


def test_a_process_holding_the_duckdb_file_is_named(file_store: StateStore) -> None:
    with file_store.writing():
        pass
    holder = hold(HOLD_DUCKDB, file_store.path, 30)
    try:
        with (
            pytest.raises(LockTimeout) as caught,
            StateStore(file_store.path, lock_timeout=0.3).reading(),
        ):
            pass
        assert f"held by pid {holder.pid}" in str(caught.value)
        assert "python" in str(caught.value)
    finally:
        holder.kill()
        holder.wait()


def test_a_reader_retries_until_a_short_write_ends(file_store: StateStore) -> None:
    with file_store.writing():
        pass
    holder = hold(HOLD_DUCKDB, file_store.path, 1.0)
    try:
        with StateStore(file_store.path, lock_timeout=20).reading() as con:
            assert con is not None
    finally:
        holder.wait()


def test_a_dead_holders_lock_is_taken_over_and_logged(state_at: str) -> None:
    state = short_lease(state_at, 1)  # a killed holder's lease outlives it by its TTL
    store = open_state(location(state), lock_timeout=5)
    holder = hold(HOLD_RUN_LOCK, state, 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    record = lock_record(state)
    assert record is not None
    assert record["pid"] == holder.pid  # the dead holder's record is still there
    with open_state(location(state), lock_timeout=2).writing():
        pass
    with store.reading() as con:
        rows = con.execute("SELECT event_type, message, details FROM sync_events_log").fetchall()
    ((event_type, message, details),) = rows
    assert event_type == "lock_takeover"
    assert f"pid {holder.pid}" in message
    assert json.loads(details)["command"] == "reconcile apply"
    assert lock_record(state) is None  # released cleanly this time


def test_two_cli_processes_one_gets_a_clear_lock_message(state_at: str) -> None:
    holder = hold(HOLD_RUN_LOCK, state_at, 30)
    try:
        other = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler",
                "state",
                "load-sample",
                "--state",
                state_at,
                "--lock-timeout",
                "0.5",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert other.returncode == 1
        # the file's message, or the PostgreSQL state's, which names it by its URL
        assert re.match(
            r"error: the state (file|postgresql://\S+ \(schema \w+\)) is locked by pid ",
            other.stderr,
        ), other.stderr
        assert "Traceback" not in other.stderr
        status = subprocess.run(
            [sys.executable, "-m", "reconciler", "status", "--state", state_at],
            capture_output=True,
            text=True,
            check=False,
        )
        assert status.returncode == 0, status.stderr
    finally:
        holder.kill()
        holder.wait()


# -- copies deleted from their platform ------------------------------------------------------


def columns_of(con: Connection, table: str) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "ORDER BY ordinal_position",
            [table],
        ).fetchall()
    ]


def test_the_history_of_pruned_copies_has_every_column_of_platform_assets(
    store: Store,
) -> None:
    with store.writing() as con:
        live, pruned = columns_of(con, "platform_assets"), columns_of(con, "platform_assets_pruned")
    assert sorted(pruned) == sorted([*live, "pruned_at"])  # a new column needs adding to both


def test_an_older_file_moves_its_deleted_copies_out_on_migration(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    v7 = [m for m in migrations.all_migrations() if m.version <= 7]
    monkeypatch.setattr(migrations, "all_migrations", lambda: tuple(v7))
    load_sample(store)
    with store.writing() as con:
        con.execute("UPDATE platform_assets SET sync_status = 'deleted' WHERE id IN (5, 6)")
    monkeypatch.undo()
    with store.writing() as con:
        live = con.execute("SELECT id FROM platform_assets ORDER BY id").fetchall()
        gone = con.execute("SELECT id, sync_status FROM platform_assets_pruned").fetchall()
        conflict = con.execute("SELECT resolution FROM sync_conflicts WHERE id = 1").fetchone()
        step14 = con.execute(SEED_STEP_14).fetchall()
    assert live == [(1,), (2,), (3,), (4,)]
    assert sorted(gone) == [(5, "deleted"), (6, "deleted")]
    assert conflict == ("resolved_by_prune",)  # the copy it was about is gone
    assert ("Social Media Hub", "healthy", 0, 0, 0, 0, 0) in step14


def test_a_pruned_copys_id_is_never_given_to_a_new_copy(store: Store) -> None:
    load_sample(store)
    with store.writing() as con:
        update_placements(con, [(6, PlacementRecord("VID-TESTIMONIAL", "SOCIAL-MEDIA", None,
                                                    "deleted"))])  # fmt: skip
        assert con.execute("SELECT max(id) FROM platform_assets").fetchone() == (5,)
        ids = record_placements(
            con, [PlacementRecord("VID-TESTIMONIAL", "SOCIAL-MEDIA", None, "pending")]
        )
    assert ids == {("VID-TESTIMONIAL", "SOCIAL-MEDIA"): 7}
    with store.reading() as con:
        assert con.execute("SELECT id FROM platform_assets_pruned").fetchall() == [(6,)]
        events = con.execute(
            "SELECT count(*) FROM sync_events_log WHERE platform_asset_id = 6"
        ).fetchone()
    assert events == (3,)  # the seed's events of copy 6 still point at it, and only at it
