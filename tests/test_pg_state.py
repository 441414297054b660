"""The shipped example end to end against a PostgreSQL state (a real server the tests start on
loopback): every command a user runs, with the same answers as on the DuckDB file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg
import pytest

from reconciler.store.migrations import latest_version

from helpers import REPO

ASSETS = 5
COPIES = 15


def shipped(tmp_path: Path) -> Path:
    manifests = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", manifests)
    return manifests


def tables(url: str, schema: str = "mediasync") -> dict[str, int]:
    with psycopg.connect(url) as con:
        names = [
            name
            for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                [schema],
            ).fetchall()
        ]
        return {
            name: con.execute(f'SELECT count(*) FROM {schema}."{name}"').fetchone()[0]  # type: ignore[index]
            for name in names
        }


def test_the_shipped_example_runs_end_to_end_on_postgresql(
    tmp_path: Path, run, pg_url: str
) -> None:
    manifests = shipped(tmp_path)
    args = ("--manifests", str(manifests), "--state", pg_url)

    assert run("validate", "--manifests", str(manifests)).exit_code == 0
    dry = run("--dry-run", *args, "-o", "json")
    assert dry.exit_code == 0, dry.stderr
    assert json.loads(dry.stdout)["summary"]["create"] == COPIES
    assert tables(pg_url) == {}  # a dry run writes nothing, not even the schema

    applied = run(*args)
    assert applied.exit_code == 0, applied.stderr
    assert f"{COPIES} completed, 0 failed" in applied.stdout
    counts = tables(pg_url)
    assert counts["platform_assets"] == COPIES and counts["source_assets"] == ASSETS
    assert counts["schema_migrations"] == latest_version() and counts["run_lease"] == 1
    with psycopg.connect(pg_url) as con:  # lengths DuckDB never enforced (migration 12)
        bounded = con.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'mediasync' "
            "AND character_maximum_length IS NOT NULL"
        ).fetchone()
    assert bounded == (0,)

    status = json.loads(run("status", "--state", pg_url, "-o", "json").stdout)
    synced = {row["platform_code"]: row["up_to_date"] for row in status["platforms"]}
    assert sum(synced.values()) == COPIES
    report = json.loads(run("report", "distribution", "--state", pg_url, "-o", "json").stdout)
    assert len(report["assets"]) == ASSETS
    assert run("--dry-run", *args, "--detailed-exitcode").exit_code == 0

    verified = run("verify", *args)
    assert verified.exit_code == 0 and f"{COPIES} match" in verified.stdout
    events = json.loads(run("events", "--state", pg_url, "--limit", "500", "-o", "json").stdout)
    assert sum(e["event_type"] == "upload_complete" for e in events["events"]) == COPIES
    jobs = json.loads(run("jobs", "--state", pg_url, "-o", "json").stdout)
    assert len(jobs["jobs"]) == COPIES
    assert "VID-LAUNCH-2024" in run("explain", "VID-LAUNCH-2024", *args).stdout
    info = run("state", "info", "--state", pg_url).stdout
    assert f"schema version: {latest_version()}" in info and "lock: free" in info
    assert "(schema mediasync)" in info


def test_a_conflict_made_on_a_copy_is_resolved_and_re_synced_on_postgresql(
    tmp_path: Path, run, pg_url: str
) -> None:
    manifests = shipped(tmp_path)
    args = ("--manifests", str(manifests), "--state", pg_url)
    assert run(*args).exit_code == 0
    copy = next((tmp_path / "state" / "platforms" / "cdn-primary").rglob("*.jpg"))
    copy.write_bytes(copy.read_bytes() + b"edited on the platform")

    assert "1 conflicts" in run("verify", *args).stdout
    conflicts = json.loads(run("conflicts", "--state", pg_url, "-o", "json").stdout)["conflicts"]
    assert [c["conflict_type"] for c in conflicts] == ["remote_modified"]
    resolved = run(
        "conflicts", "--state", pg_url, "resolve", str(conflicts[0]["id"]),
        "--use", "source", "--by", "ops",
    )  # fmt: skip
    assert resolved.exit_code == 0, resolved.stderr
    again = run(*args)
    assert again.exit_code == 0 and "1 completed" in again.stdout
    assert b"edited on the platform" not in copy.read_bytes()
    assert run("--dry-run", *args, "--detailed-exitcode").exit_code == 0


def test_a_saved_plan_is_applied_on_postgresql(tmp_path: Path, run, pg_url: str) -> None:
    manifests = shipped(tmp_path)
    args = ("--manifests", str(manifests), "--state", pg_url)
    saved = tmp_path / "plan.json"
    assert run("plan", *args, "--out", str(saved)).exit_code == 0
    assert json.loads(saved.read_text())["state"].startswith("postgresql://")
    applied = run("apply", str(saved), *args)
    assert applied.exit_code == 0, applied.stderr
    assert f"{COPIES} completed" in applied.stdout


def test_the_seed_sample_loads_once_into_a_postgresql_state(run, pg_url: str) -> None:
    loaded = run("state", "load-sample", "--state", pg_url)
    assert loaded.exit_code == 0
    assert "6 sync_platforms" in loaded.stdout and "secret" not in loaded.stdout
    again = run("state", "load-sample", "--state", pg_url)
    assert again.exit_code == 1 and "already holds data" in again.stderr
    conflicts = json.loads(run("conflicts", "--state", pg_url, "-o", "json").stdout)["conflicts"]
    assert len(conflicts) == 1


def test_an_unreachable_server_is_one_line_and_changes_nothing(
    tmp_path: Path, run, pg_cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = shipped(tmp_path)
    monkeypatch.setenv("PGPASSWORD", "wrong")
    url = pg_cluster.url("postgres")
    for command in (("status",), ("--manifests", str(manifests))):
        result = run(*command, "--state", url)
        assert result.exit_code == 1
        assert result.stderr.startswith("error: ") and len(result.stderr.splitlines()) == 1
        assert "password authentication failed" in result.stderr
        assert "wrong" not in result.stderr
    assert not (tmp_path / "state" / "platforms").exists()  # nothing was sent anywhere


def test_two_schemas_in_one_database_are_two_states(tmp_path: Path, run, pg_url: str) -> None:
    manifests = shipped(tmp_path)
    first = run("--manifests", str(manifests), "--state", pg_url + "?schema=team_a")
    assert first.exit_code == 0
    other = run("--dry-run", "--manifests", str(manifests), "--state", pg_url + "?schema=team_b")
    assert "15 to create" in other.stdout
    assert tables(pg_url, "team_a")["platform_assets"] == COPIES
    assert tables(pg_url, "team_b") == {}
