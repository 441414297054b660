"""`reconcile state migrate`: a state copied with its ids and history between a real DuckDB file
and a real PostgreSQL (the conftest's throwaway cluster), both ways; refused into a state that
holds rows unless --force; all or nothing; under both run locks.

The source is the shipped example as a user would have it after a while: applied, a copy
deleted behind the tool's back, found by `reconcile verify`, resolved with `--use target` (the
copy moves to platform_assets_pruned) and made again by the next apply.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from cli_process import one_error_line, reconcile
from click.testing import CliRunner, Result
from conftest import free_port

from reconciler.cli.main import cli as reconcile_group
from reconciler.observe.sources import RACY_SECONDS
from reconciler.store import migrate as migrate_module
from reconciler.store.db import StateStore, open_state
from reconciler.store.migrations import all_migrations, latest_version
from reconciler.store.pg import PgLocation

from helpers import SHIPPED_MANIFESTS

REPORTS = (
    ("status",),
    ("report", "distribution"),
    ("events", "--limit", "100000"),
    ("jobs",),
    ("conflicts", "--all"),
)


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(reconcile_group, list(args), env=env, catch_exceptions=False)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


@dataclass(frozen=True)
class Example:
    root: Path
    manifests: Path
    state: Path

    def args(self, state: str | Path | None = None) -> list[str]:
        return ["--manifests", str(self.manifests), "--state", str(state or self.state)]


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    root = tmp_path_factory.mktemp("example")
    shutil.copytree(SHIPPED_MANIFESTS, root / "manifests")
    (root / "state").mkdir()
    # the hash cache keeps no entry for a master changed (its ctime: the copy) in the last
    # RACY_SECONDS; waiting them out makes the first reconcile record file_hashes rows
    time.sleep(RACY_SECONDS + 0.1)
    found = Example(root, root / "manifests", root / "state" / "reconciler.duckdb")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        ok(cli(*found.args()))
        (root / "state/platforms/cdn-primary/media/images/team_2024.jpg").unlink()
        cli("verify", *found.args())
        opened = reports(str(found.state))["conflicts"]["conflicts"]
        assert [c["conflict_type"] for c in opened] == ["remote_deleted"]
        conflict = str(opened[0]["id"])
        resolved = ("resolve", conflict, "--use", "target", "--by", "test")
        ok(cli("conflicts", "--state", str(found.state), *resolved))
        ok(cli(*found.args()))
        yield found


@pytest.fixture
def at_example(example: Example, monkeypatch: pytest.MonkeyPatch) -> Example:
    """The example, with the working folder where a PostgreSQL state's renditions go."""
    monkeypatch.chdir(example.root)
    return example


def reports(state: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        report[1] if report[0] == "report" else report[0]: json.loads(
            ok(cli(*report, "--state", state, "-o", "json", env=env)).stdout
        )
        for report in REPORTS
    }


def rows(state: str | Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of a state, sorted, with numbers as text (UBIGINT is an int in
    DuckDB and a Decimal in PostgreSQL's NUMERIC(20))."""
    if isinstance(state, Path):
        con: Any = duckdb.connect(str(state), read_only=True)
        schema = "main"
    else:
        location = PgLocation.parse(state)
        con = psycopg.connect(location.conninfo)
        schema = location.schema
    try:
        names = [
            name
            for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                f"'{schema}' AND table_name <> 'run_lease' ORDER BY 1"
            ).fetchall()
        ]
        found = {}
        for name in names:
            table = con.execute(f"SELECT * FROM {schema}.{name}").fetchall()
            found[name] = sorted((tuple(_plain(v) for v in row) for row in table), key=repr)
        return found
    finally:
        con.close()


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, int | Decimal) and not isinstance(value, bool) else value


def counts(state: str | Path) -> dict[str, int]:
    return {table: len(found) for table, found in rows(state).items()}


# -- the round trip ---------------------------------------------------------------------------


def test_duckdb_to_postgresql_and_back_keeps_every_row_and_report(
    at_example: Example, pg_url: str, tmp_path: Path
) -> None:
    source = at_example.state
    back = tmp_path / "back" / "copy.duckdb"
    before = rows(source)
    assert before["platform_assets_pruned"] and before["sync_conflicts"]
    assert before["file_hashes"] and len(before["schema_migrations"]) == latest_version()

    there = ok(cli("state", "migrate", "--state", str(source), "--to", pg_url))
    total = sum(len(r) for r in before.values())
    assert there.stdout.startswith(f"copied {len(before)} tables, {total} rows, from {source}")
    assert there.stdout.rstrip().endswith("; row counts match")
    assert f"into postgresql://postgres@127.0.0.1:{pg_url.rsplit(':', 1)[1]}" in there.stdout
    ok(cli("state", "migrate", "--state", pg_url, "--to", str(back)))

    assert rows(pg_url) == before  # the migrations' rows too, applied_at as it was
    assert rows(back) == before
    assert counts(back) == counts(pg_url) == counts(source)
    assert reports(pg_url) == reports(str(source)) == reports(str(back))
    assert not list(back.parent.glob(".copy.duckdb.*"))  # no temporary file left


def test_after_migrating_to_postgresql_nothing_is_to_do_and_ids_continue(
    at_example: Example, pg_url: str
) -> None:
    ok(cli("state", "migrate", "--state", str(at_example.state), "--to", pg_url))
    assert cli("--dry-run", "--detailed-exitcode", *at_example.args(pg_url)).exit_code == 0
    old = max(e["id"] for e in reports(pg_url)["events"]["events"])
    cli("verify", *at_example.args(pg_url))  # one health_check event per platform
    new = [e for e in reports(pg_url)["events"]["events"] if e["id"] > old]
    assert {e["event_type"] for e in new} == {"health_check"} and len(new) == 6


# -- refusals ---------------------------------------------------------------------------------


def test_a_target_holding_rows_is_refused_unless_forced(
    at_example: Example, pg_url: str, tmp_path: Path
) -> None:
    sample = tmp_path / "sample.duckdb"
    ok(cli("state", "load-sample", "--state", str(sample)))
    copy = tmp_path / "copy.duckdb"
    for target in (pg_url, str(copy)):
        ok(cli("state", "migrate", "--state", str(at_example.state), "--to", target))
        kept = rows(copy if target == str(copy) else target)
        refused = reconcile("state", "migrate", "--state", str(sample), "--to", target)
        line = one_error_line(refused)
        assert "already holds" in line and "Pass --force" in line
        assert rows(copy if target == str(copy) else target) == kept
        forced = ok(cli("state", "migrate", "--state", str(sample), "--to", target, "--force"))
        held = sum(len(r) for r in kept.values()) - latest_version()  # not schema_migrations
        assert f"(replacing its {held} rows)" in forced.stdout
        assert rows(copy if target == str(copy) else target) == rows(sample)


def test_an_unreachable_target_fails_in_one_line_and_frees_the_source(
    at_example: Example, tmp_path: Path
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/none"
    line = one_error_line(
        reconcile("state", "migrate", "--state", str(at_example.state), "--to", nowhere)
    )
    assert line.startswith("error: cannot use the PostgreSQL state postgresql://postgres@127.0.0.1")
    assert StateStore(at_example.state).lock.holder() is None


def test_a_missing_source_and_the_same_state_are_refused(
    at_example: Example, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.duckdb"
    line = one_error_line(
        reconcile("state", "migrate", "--state", str(missing), "--to", str(tmp_path / "t.duckdb"))
    )
    assert "there is no state in the state file" in line
    assert not list(tmp_path.iterdir())
    alias = tmp_path / "alias.duckdb"
    alias.symlink_to(at_example.state)
    line = one_error_line(
        reconcile("state", "migrate", "--state", str(alias), "--to", str(at_example.state))
    )
    assert "is the target too" in line


# -- all or nothing, under the locks -----------------------------------------------------------


def test_a_failure_leaves_a_postgresql_target_as_it_was(
    at_example: Example, pg_url: str, pg_cluster: Any, tmp_path: Path
) -> None:
    ok(cli("state", "migrate", "--state", str(at_example.state), "--to", pg_url))
    kept = rows(pg_url)
    with psycopg.connect(PgLocation.parse(pg_url).conninfo, autocommit=True) as con:
        con.execute(
            "CREATE FUNCTION mediasync.refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'no events today'; END $$"
        )
        con.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON mediasync.sync_events_log "
            "FOR EACH ROW EXECUTE FUNCTION mediasync.refuse()"
        )
    sample = tmp_path / "sample.duckdb"
    ok(cli("state", "load-sample", "--state", str(sample)))
    line = one_error_line(
        reconcile("state", "migrate", "--state", str(sample), "--to", pg_url, "--force")
    )
    assert "no events today" in line and "nothing was copied" in line
    assert rows(pg_url) == kept  # emptied and partly filled, then rolled back


def test_a_failure_leaves_no_new_duckdb_file_and_an_old_one_as_it_was(
    at_example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = migrate_module.import_table

    def failing(con: Any, table: str, columns: Any, path: Path) -> int:
        if table == "sync_jobs":
            raise duckdb.IOException("the disk went away")
        return real(con, table, columns, path)

    monkeypatch.setattr(migrate_module, "import_table", failing)
    new = tmp_path / "new.duckdb"
    failed = cli("state", "migrate", "--state", str(at_example.state), "--to", str(new))
    assert failed.exit_code == 1 and "the disk went away" in failed.stderr
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["new.duckdb.lock"]  # neither the file nor its temporary one

    old = tmp_path / "old.duckdb"
    ok(cli("state", "load-sample", "--state", str(old)))
    kept = rows(old)
    failed = cli("state", "migrate", "--state", str(at_example.state), "--to", str(old), "--force")
    assert failed.exit_code == 1 and len(failed.stderr.splitlines()) == 1
    assert rows(old) == kept


def test_both_run_locks_are_held_while_copying(
    at_example: Example, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    real = migrate_module.export_table

    def watching(con: Any, table: str, columns: Any, path: Path) -> None:
        if not seen:
            seen.append(open_state(at_example.state).lock.holder())
            seen.append(open_state(PgLocation.parse(pg_url)).lock.holder())
        real(con, table, columns, path)

    monkeypatch.setattr(migrate_module, "export_table", watching)
    ok(cli("state", "migrate", "--state", str(at_example.state), "--to", pg_url))
    for holder in seen:
        assert holder is not None and holder.pid == os.getpid()
        assert holder.command.endswith(" state migrate")  # the runner's name, then ours
    assert open_state(at_example.state).lock.holder() is None  # released after


def test_an_older_source_is_migrated_first_and_copied_with_its_history(
    pg_url: str, tmp_path: Path
) -> None:
    old = tmp_path / "old.duckdb"
    con = duckdb.connect(str(old))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, "
        "applied_at TIMESTAMP)"
    )
    for migration in all_migrations()[:-1]:
        con.execute(migration.sql)
        con.execute(
            "INSERT INTO schema_migrations VALUES (?, ?, TIMESTAMP '2025-01-01 10:00:00')",
            [migration.version, migration.name],
        )
    con.close()
    ok(cli("state", "migrate", "--state", str(old), "--to", pg_url))
    migrations = rows(pg_url)["schema_migrations"]
    assert sorted(int(m[0]) for m in migrations) == list(range(1, latest_version() + 1))
    stamps = {int(m[0]): str(m[2]) for m in migrations}
    assert stamps[1] == "2025-01-01 10:00:00"  # as the source has it
    assert stamps[latest_version()] != stamps[1]  # applied by this migrate's open
    assert rows(pg_url) == rows(old)


def test_a_copy_of_a_state_in_another_postgresql_schema(at_example: Example, pg_url: str) -> None:
    ok(cli("state", "migrate", "--state", str(at_example.state), "--to", pg_url))
    other = f"{pg_url}?schema=copy_{uuid.uuid4().hex[:6]}"
    ok(cli("state", "migrate", "--state", pg_url, "--to", other))
    assert reports(other) == reports(pg_url)
