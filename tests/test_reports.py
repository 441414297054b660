"""Reports over the seed's sample data, through the CLI, on real states of each backend (a
DuckDB file, a PostgreSQL database)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import test_store
from cli_process import reconcile, reconcile_json
from planning import World

from reconciler.store.migrations import latest_version

from helpers import created, is_postgresql, reader


@pytest.fixture
def sample(state_at: str, run) -> str:
    state = state_at
    result = run("state", "load-sample", "--state", state)
    assert result.exit_code == 0, result.output
    assert "6 sync_platforms" in result.stdout
    return state


def as_json(run, *args: str) -> dict:
    result = run(*args, "--output", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_status_shows_what_the_seeds_dashboard_returns(run, sample: str) -> None:
    rows = as_json(run, "status", "--state", sample)["platforms"]
    table = [
        (
            r["platform_name"],
            r["health_status"],
            r["synced_assets"],
            r["up_to_date"],
            r["outdated"],
            r["in_progress"],
            r["failed"],
            r["conflicts"],
        )
        for r in rows
    ]
    assert table == [
        ("Social Media Hub", "healthy", 1, 0, 0, 1, 0, 1),
        ("Primary CDN", "healthy", 2, 2, 0, 0, 0, 0),
        ("AWS S3 Backup", "healthy", 1, 1, 0, 0, 0, 0),
        ("Vimeo Account", "healthy", 1, 1, 0, 0, 0, 0),
        ("YouTube Channel", "healthy", 1, 1, 0, 0, 0, 0),
        ("External DAM", "degraded", 0, 0, 0, 0, 0, 0),
    ]


def test_status_as_a_table_and_as_csv(run, sample: str) -> None:
    text = run("status", "--state", sample)
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert lines[0].split() == [
        "platform_code",
        "platform_name",
        "health_status",
        "synced_assets",
        "up_to_date",
        "outdated",
        "in_progress",
        "failed",
        "conflicts",
        "scheduled",
        "next_run",
        "queued",
    ]
    assert lines[1].split()[0] == "SOCIAL-MEDIA"
    assert all(line == line.rstrip() for line in lines)
    rows = list(csv.DictReader(io.StringIO(run("status", "--state", sample, "-o", "csv").stdout)))
    assert rows[1]["platform_name"] == "Primary CDN" and rows[1]["synced_assets"] == "2"


def test_distribution_shows_the_seeds_asset_view(run, sample: str) -> None:
    rows = as_json(run, "report", "distribution", "--state", sample)["assets"]
    by_code = {r["asset_code"]: r for r in rows}
    assert [r["asset_code"] for r in rows] == sorted(by_code)  # no update pending: by code
    launch = by_code["VID-LAUNCH-2024"]
    assert (
        launch["source_version"],
        launch["platforms_synced"],
        launch["up_to_date"],
        launch["needs_update"],
    ) == (3, 3, 3, 0)
    assert launch["platforms"] == "AWS S3 Backup, Primary CDN, YouTube Channel"
    assert by_code["IMG-TEAM-2024"]["platforms_synced"] == 0
    assert by_code["VID-TESTIMONIAL"]["platforms"] == "Social Media Hub"


def test_events_filters(run, sample: str) -> None:
    everything = as_json(run, "events", "--state", sample)["events"]
    assert [e["id"] for e in everything] == [1, 2, 3, 4, 5, 6]
    social = as_json(run, "events", "--state", sample, "--platform", "SOCIAL-MEDIA")["events"]
    assert [e["event_type"] for e in social] == ["upload_start", "upload_progress", "verification"]
    assert {e["asset"] for e in social} == {"VID-TESTIMONIAL"}
    by_job = as_json(run, "events", "--state", sample, "--job", "SYNC-001")["events"]
    assert [e["id"] for e in by_job] == [1, 2, 3]
    by_asset = as_json(run, "events", "--state", sample, "--asset", "VID-LAUNCH-2024")["events"]
    assert len(by_asset) == 3
    since = as_json(run, "events", "--state", sample, "--since", "2024-01-25T08:10")["events"]
    assert [e["id"] for e in since] == [5, 6]
    latest = as_json(run, "events", "--state", sample, "--limit", "2")["events"]
    assert [e["id"] for e in latest] == [5, 6]
    assert as_json(run, "events", "--state", sample, "--since", "1h")["events"] == []


def test_events_bad_since_is_exit_1(run, sample: str) -> None:
    result = run("events", "--state", sample, "--since", "last tuesday")
    assert result.exit_code == 1
    assert "--since 'last tuesday'" in result.stderr


def test_jobs_and_their_status_filter(run, sample: str) -> None:
    jobs = as_json(run, "jobs", "--state", sample)["jobs"]
    assert len(jobs) == 7
    processing = as_json(run, "jobs", "--state", sample, "--status", "processing")["jobs"]
    assert [
        (j["job_code"], j["rule"], j["asset"], j["platform"], j["progress_percent"])
        for j in processing
    ] == [("SYNC-006", "SYNC-SOCIAL", "VID-TESTIMONIAL", "SOCIAL-MEDIA", 65.0)]
    assert run("jobs", "--state", sample, "--status", "bogus").exit_code == 1


def test_resolving_a_conflict(run, sample: str) -> None:
    (conflict,) = as_json(run, "conflicts", "--state", sample)["conflicts"]
    assert (conflict["id"], conflict["asset"], conflict["platform"], conflict["resolution"]) == (
        1,
        "VID-TESTIMONIAL",
        "SOCIAL-MEDIA",
        "pending",
    )

    done = run(
        "conflicts",
        "--state",
        sample,
        "resolve",
        "1",
        "--use",
        "source",
        "--by",
        "alice",
        "--note",
        "re-upload it",
    )
    assert done.exit_code == 0, done.output
    assert "conflict 1 (VID-TESTIMONIAL on SOCIAL-MEDIA) resolved: use_source by alice" in (
        done.stdout
    )

    assert as_json(run, "conflicts", "--state", sample)["conflicts"] == []
    (closed,) = as_json(run, "conflicts", "--all", "--state", sample)["conflicts"]
    assert closed["resolution"] == "use_source" and closed["resolved_by"] == "alice"
    assert closed["resolved_at"] is not None
    assert closed["notes"] == "Upload interrupted, needs retry\nre-upload it"
    event = as_json(run, "events", "--state", sample, "--limit", "1")["events"][0]
    assert event["event_type"] == "conflict_resolved"
    assert event["platform"] == "SOCIAL-MEDIA"
    assert event["details"]["resolved_by"] == "alice"
    status = as_json(run, "status", "--state", sample)["platforms"]
    assert all(p["conflicts"] == 0 for p in status)

    again = run("conflicts", "--state", sample, "resolve", "1", "--use", "target", "--by", "bob")
    assert again.exit_code == 1
    assert "already resolved (use_source by alice" in again.stderr
    missing = run("conflicts", "--state", sample, "resolve", "42", "--use", "ignore", "--by", "b")
    assert missing.exit_code == 1
    assert "no conflict with id 42" in missing.stderr


def test_reports_without_a_state_file_say_so_and_create_nothing(run, state_at: str) -> None:
    state = state_at
    result = run("status", "--state", str(state))
    assert result.exit_code == 0
    assert "no state file yet" in result.stderr
    assert json.loads(run("jobs", "--state", str(state), "-o", "json").stdout) == {
        "format_version": 1,
        "jobs": [],
    }
    assert run("conflicts", "--state", str(state), "-o", "csv").stdout.startswith("id,asset")
    assert not created(state)
    assert is_postgresql(state) or not Path(state).parent.exists()


def test_the_state_path_comes_from_the_environment(run, sample: str) -> None:
    result = run("status", "-o", "json", env={"RECONCILE_STATE": sample})
    assert len(json.loads(result.stdout)["platforms"]) == 6


def test_state_info(run, sample: str) -> None:
    result = run("state", "info", "--state", sample)
    assert result.exit_code == 0
    assert f"schema version: {latest_version()} " in result.stdout
    assert "lock: free" in result.stdout


# -- pruned copies leave the dashboard ---------------------------------------------------------

SEED_STEP_14 = test_store.SEED_STEP_14  # the seed's queries, verbatim
SEED_STEP_15 = test_store.SEED_STEP_15


def two_platforms(root: Path, state: str) -> World:
    world = World(root, state).platform("CDN").platform("BACKUP")
    world.rule("R-CDN", "CDN").rule("R-BACKUP", "BACKUP")
    world.asset("VID-A", b"a" * 100).asset("VID-B", b"b" * 100)
    world.manifests()
    return world


def seed_reports(state: str) -> tuple[dict[str, tuple], dict[str, tuple]]:
    with reader(state) as con:
        step14 = {r[0]: r[1:] for r in con.execute(SEED_STEP_14).fetchall()}
        step15 = {r[0]: r[4:] for r in con.execute(SEED_STEP_15).fetchall()}
    return step14, step15


def test_pruned_copies_are_not_counted_by_status_or_the_seeds_reports(
    tmp_path: Path, state_at: str
) -> None:
    world = two_platforms(tmp_path, state_at)
    state = world.state
    assert reconcile(*world.cli_args()).returncode == 0
    world.remove("SyncRule", "R-BACKUP").manifests()
    pruned = reconcile(*world.cli_args(), "--prune", "--force")
    assert pruned.returncode == 0, pruned.stderr

    status = {p["platform_code"]: p for p in reconcile_json("status", "--state", str(state))[
        "platforms"]}  # fmt: skip
    assert (status["BACKUP"]["synced_assets"], status["BACKUP"]["up_to_date"]) == (0, 0)
    assert (status["CDN"]["synced_assets"], status["CDN"]["up_to_date"]) == (2, 2)
    step14, step15 = seed_reports(state)
    assert step14["Backup"][1:] == (0, 0, 0, 0, 0)
    assert step14["Cdn"][1:] == (2, 2, 0, 0, 0)
    assert step15["VID-A"] == (1, 1, 0, "Cdn") and step15["VID-B"] == (1, 1, 0, "Cdn")

    with reader(state) as con:
        gone = con.execute(
            "SELECT id, sync_status, pruned_at IS NOT NULL FROM platform_assets_pruned ORDER BY id"
        ).fetchall()
        deletes = con.execute(
            "SELECT DISTINCT platform_asset_id FROM sync_events_log WHERE event_type = 'delete'"
        ).fetchall()
    assert [g[1:] for g in gone] == [("deleted", True)] * 2
    assert sorted(d[0] for d in deletes) == [g[0] for g in gone]  # events keep their copy's id
    events = reconcile_json("events", "--state", str(state), "--platform", "BACKUP")["events"]
    assert {(e["asset"], e["event_type"]) for e in events if e["event_type"] == "delete"} == {
        ("VID-A", "delete"),
        ("VID-B", "delete"),
    }

    # the rule comes back: new copies, under ids never used before
    world.rule("R-BACKUP", "BACKUP").manifests()
    assert reconcile(*world.cli_args()).returncode == 0
    with reader(state) as con:
        live = con.execute(
            "SELECT pa.id FROM platform_assets pa JOIN sync_platforms sp ON sp.id = "
            "pa.platform_id WHERE sp.platform_code = 'BACKUP'"
        ).fetchall()
    assert len(live) == 2 and min(i for (i,) in live) > max(g[0] for g in gone)
    step14, _ = seed_reports(state)
    assert step14["Backup"][1:] == (2, 2, 0, 0, 0)


def test_accepting_that_a_copy_is_gone_takes_it_off_the_dashboard(
    tmp_path: Path, state_at: str
) -> None:
    world = World(tmp_path, state_at).platform("CDN").rule("R", "CDN").asset("VID-A", b"a" * 100)
    world.manifests()
    state = world.state
    assert reconcile(*world.cli_args()).returncode == 0
    (copy,) = (tmp_path / "out" / "cdn").rglob("*.mp4")
    copy.unlink()
    assert reconcile("verify", *world.cli_args()).returncode == 3
    (conflict,) = reconcile_json("conflicts", "--state", str(state))["conflicts"]
    assert conflict["conflict_type"] == "remote_deleted"

    done = reconcile(
        "conflicts", "--state", str(state), "resolve", str(conflict["id"]), "--use", "target",
        "--by", "alice",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "re-syncs" not in done.stdout
    (cdn,) = reconcile_json("status", "--state", str(state))["platforms"]
    assert (cdn["synced_assets"], cdn["up_to_date"], cdn["conflicts"]) == (0, 0, 0)
    step14, step15 = seed_reports(state)
    assert step14["Cdn"][1:] == (0, 0, 0, 0, 0) and step15["VID-A"][0] == 0
    (listed,) = reconcile_json("conflicts", "--all", "--state", str(state))["conflicts"]
    assert (listed["asset"], listed["platform"]) == ("VID-A", "CDN")  # still named
    plan = reconcile_json("--dry-run", *world.cli_args())
    assert plan["summary"]["create"] == 1 and plan["summary"]["held"] == 0
