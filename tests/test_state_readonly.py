"""`reconcile state grant-readonly ROLE` and the seed's own reports on a PostgreSQL state.

A real role with a password logs in to the conftest's throwaway cluster after the grant: it
reads every report and plans, and cannot write, through reconcile or through raw SQL. The
seed's Step 14 and Step 15 SQL (tests/data/, copied verbatim from the seed document) runs with
the cluster's psql on a state filled by `reconcile state load-sample` and on one filled by a
real run of the shipped example, and agrees with `reconcile status` and `report distribution`.
"""

from __future__ import annotations

import csv
import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cli_process import one_error_line, reconcile
from click.testing import CliRunner, Result
from conftest import free_port
from psycopg import sql

from reconciler.cli.main import cli as reconcile_group
from reconciler.store.db import open_state
from reconciler.store.pg import PgLocation

from helpers import SHIPPED_MANIFESTS, TESTS

STEP_14 = TESTS / "data" / "seed_step14_sync_status.sql"
STEP_15 = TESTS / "data" / "seed_step15_distribution.sql"


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(reconcile_group, list(args), env=env, catch_exceptions=False)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def as_json(*args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(ok(cli(*args, "-o", "json", env=env)).stdout)


@dataclass(frozen=True)
class Example:
    manifests: Path
    url: str
    database: str


@pytest.fixture
def pg_example(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Example:
    """A real run of the shipped example into a PostgreSQL state."""
    shutil.copytree(SHIPPED_MANIFESTS, tmp_path / "manifests")
    (tmp_path / "state").mkdir()
    monkeypatch.chdir(tmp_path)  # where a PostgreSQL state's renditions go
    ok(cli("--manifests", str(tmp_path / "manifests"), "--state", pg_url))
    return Example(tmp_path / "manifests", pg_url, pg_url.rsplit("/", 1)[1])


@dataclass(frozen=True)
class Role:
    name: str
    password: str

    @property
    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}


def make_role(cluster: Any, name: str) -> Role:
    password = secrets.token_urlsafe(16)
    with cluster.connect(autocommit=True) as con:
        con.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(name), sql.Literal(password)
            )
        )
    return Role(name, password)


@pytest.fixture
def reader(pg_cluster: Any) -> Role:
    return make_role(pg_cluster, f"bi_{uuid.uuid4().hex[:8]}")


def psql(cluster: Any, database: str, user: str, password: str, script: Path, **env: str) -> str:
    done = subprocess.run(
        [
            *(cluster.psql_path, "-X", "--csv", "-v", "ON_ERROR_STOP=1", "-h", cluster.host),
            *("-p", str(cluster.port), "-U", user, "-d", database, "-f", str(script)),
        ],
        env={**os.environ, "PGPASSWORD": password, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def as_process(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


# -- the seed's reports -----------------------------------------------------------------------


def seed_step_14(cluster: Any, database: str, **who: str) -> dict[str, tuple[Any, ...]]:
    user = who.get("user", cluster.user)
    password = who.get("password", cluster.password)
    env = {} if "user" in who else {"PGOPTIONS": "-c search_path=mediasync"}
    found = csv.DictReader(io.StringIO(psql(cluster, database, user, password, STEP_14, **env)))
    return {
        row["platform_name"]: (
            row["health_status"],
            *(int(row[c]) for c in ("synced_assets", "up_to_date", "outdated", "in_progress")),
            int(row["conflicts"]),
        )
        for row in found
    }


def status_as_step_14(url: str, env: dict[str, str] | None = None) -> dict[str, tuple[Any, ...]]:
    return {
        p["platform_name"]: (
            p["health_status"],
            *(p[c] for c in ("synced_assets", "up_to_date", "outdated", "in_progress")),
            p["conflicts"],
        )
        for p in as_json("status", "--state", url, env=env)["platforms"]
    }


def seed_step_15(cluster: Any, database: str) -> dict[str, tuple[Any, ...]]:
    out = psql(
        cluster, database, cluster.user, cluster.password, STEP_15,
        PGOPTIONS="-c search_path=mediasync",
    )  # fmt: skip
    return {
        row["asset_code"]: (
            row["title"],
            row["asset_type"],
            *(int(row[c]) for c in ("source_version", "platforms_synced", "up_to_date")),
            int(row["needs_update"]),
            frozenset(row["platforms"].split(", ")) if row["platforms"] else frozenset(),
        )
        for row in csv.DictReader(io.StringIO(out))
    }


def distribution_as_step_15(url: str) -> dict[str, tuple[Any, ...]]:
    return {
        a["asset_code"]: (
            a["title"],
            a["asset_type"],
            *(a[c] for c in ("source_version", "platforms_synced", "up_to_date", "needs_update")),
            frozenset(a["platforms"].split(", ")) if a["platforms"] else frozenset(),
        )
        for a in as_json("report", "distribution", "--state", url)["assets"]
    }


@pytest.mark.parametrize("filled_by", ["load-sample", "the shipped example"])
def test_the_seed_reports_run_verbatim_and_agree_with_the_product(
    filled_by: str, pg_cluster: Any, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if filled_by == "load-sample":
        ok(cli("state", "load-sample", "--state", pg_url))
    else:
        shutil.copytree(SHIPPED_MANIFESTS, tmp_path / "manifests")
        monkeypatch.chdir(tmp_path)
        ok(cli("--manifests", str(tmp_path / "manifests"), "--state", pg_url))
    database = pg_url.rsplit("/", 1)[1]
    dashboard = seed_step_14(pg_cluster, database)
    assert len(dashboard) == 6 and dashboard == status_as_step_14(pg_url)
    distribution = seed_step_15(pg_cluster, database)
    assert len(distribution) == 5 and distribution == distribution_as_step_15(pg_url)
    if filled_by == "load-sample":  # the seed's conflict and its copy in progress are seen
        assert dashboard["Social Media Hub"][4:] == (1, 1)


# -- grant-readonly ---------------------------------------------------------------------------


def test_a_read_only_role_reads_and_plans_but_cannot_write(
    pg_example: Example, reader: Role, pg_cluster: Any
) -> None:
    done = ok(cli("state", "grant-readonly", reader.name, "--state", pg_example.url))
    assert done.stdout.startswith(f"granted {reader.name} read-only access to postgresql://")
    mine = pg_cluster.url(pg_example.database, user=reader.name)
    args = ["--manifests", str(pg_example.manifests), "--state", mine]
    before = as_json("events", "--state", pg_example.url, "--limit", "1000")

    assert as_json("status", "--state", mine, env=reader.env) == as_json(
        "status", "--state", pg_example.url
    )
    assert cli("--dry-run", "--detailed-exitcode", *args, env=reader.env).exit_code == 0
    assets = pg_example.manifests / "assets.yaml"
    assets.write_text(assets.read_text().replace("Product Launch 2024", "Launch, again"))
    assert cli("--dry-run", "--detailed-exitcode", *args, env=reader.env).exit_code == 2
    applied = as_process(*args, env=reader.env)
    assert applied.returncode != 0
    assert as_json("events", "--state", pg_example.url, "--limit", "1000") == before

    # as the seed's SQL in psql: the search_path is the state's schema, no PGOPTIONS needed
    seen = seed_step_14(pg_cluster, pg_example.database, user=reader.name, password=reader.password)
    assert seen == status_as_step_14(pg_example.url)

    location = PgLocation.parse(mine)
    with psycopg.connect(location.conninfo, password=reader.password, autocommit=True) as con:
        assert con.execute("SHOW search_path").fetchone() == ("mediasync",)
        assert con.execute("SELECT count(*) FROM sync_platforms").fetchone() == (6,)
        con.execute("CREATE TEMP TABLE mine (x int)")  # what BI tools do
        for write in (
            "INSERT INTO sync_events_log (id, event_type) VALUES (99999, 'forged')",
            "UPDATE platform_assets SET sync_status = 'failed'",
            "DELETE FROM sync_jobs",
            "CREATE TABLE mediasync.mine (x int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                con.execute(write)
        with pg_cluster.connect(pg_example.database, autocommit=True) as owner:
            owner.execute("CREATE TABLE mediasync.v099_later (x int)")  # a later migration
        assert con.execute("SELECT count(*) FROM v099_later").fetchone() == (0,)


def test_applying_as_a_read_only_role_fails_in_one_line(
    pg_example: Example, reader: Role, pg_cluster: Any
) -> None:
    ok(cli("state", "grant-readonly", reader.name, "--state", pg_example.url))
    mine = pg_cluster.url(pg_example.database, user=reader.name)
    applied = as_process("--manifests", str(pg_example.manifests), "--state", mine, env=reader.env)
    assert applied.returncode == 1 and "Traceback" not in applied.stderr
    assert len(applied.stderr.strip().splitlines()) == 1
    assert "may only read" in applied.stderr


def test_a_read_only_role_cannot_load_the_sample(
    pg_cluster: Any, pg_url: str, reader: Role
) -> None:
    url, database = pg_url, pg_url.rsplit("/", 1)[1]
    with open_state(PgLocation.parse(url)).writing():  # an empty state, migrated
        pass
    ok(cli("state", "grant-readonly", reader.name, "--state", url))
    mine = pg_cluster.url(database, user=reader.name)
    loaded = as_process("state", "load-sample", "--state", mine, env=reader.env)
    assert loaded.returncode != 0
    assert as_json("events", "--state", url)["events"] == []


def test_print_quotes_every_name_and_psql_runs_it(pg_example: Example, pg_cluster: Any) -> None:
    odd = make_role(pg_cluster, 'Bi "odd"; DROP TABLE sync_jobs; --')
    printed = ok(cli("state", "grant-readonly", odd.name, "--print", "--state", pg_example.url))
    quoted = '"Bi ""odd""; DROP TABLE sync_jobs; --"'
    assert f'GRANT USAGE ON SCHEMA "mediasync" TO {quoted};' in printed.stdout
    assert f'ALTER ROLE {quoted} IN DATABASE "{pg_example.database}"' in printed.stdout
    script = Path("grant.sql")
    script.write_text(printed.stdout)
    psql(pg_cluster, pg_example.database, pg_cluster.user, pg_cluster.password, script)
    mine = pg_cluster.url(pg_example.database, user=odd.name)
    assert len(as_json("jobs", "--state", mine, env=odd.env)["jobs"]) == 15  # and none dropped

    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/elsewhere"
    offline = ok(cli("state", "grant-readonly", "reader", "--print", "--state", nowhere))
    assert 'GRANT CONNECT ON DATABASE "elsewhere" TO "reader";' in offline.stdout


def test_grant_readonly_refusals_are_one_line(
    pg_example: Example, pg_cluster: Any, tmp_path: Path
) -> None:
    duck = one_error_line(
        reconcile("state", "grant-readonly", "bi", "--state", str(tmp_path / "s.duckdb"))
    )
    assert "is a DuckDB file, which has no roles" in duck and "state migrate --to" in duck
    missing = one_error_line(
        reconcile("state", "grant-readonly", "nobody_here", "--state", pg_example.url)
    )
    assert 'role "nobody_here" does not exist; nothing was granted' in missing
    empty = pg_cluster.createdb(f"reconcile_{uuid.uuid4().hex[:12]}")
    none_yet = one_error_line(reconcile("state", "grant-readonly", "bi", "--state", empty))
    assert "there is no state in the PostgreSQL state" in none_yet
