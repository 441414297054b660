"""Schedules, auto_sync and provenance: what runs now, what waits, and where it came from."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from planning import World, action_of
from test_apply import apply, rows

from reconciler.apply import ApplyOptions
from reconciler.models import SyncRule
from reconciler.schedule import next_occurrence, timing, waiting_reason

NOW = datetime(2026, 11, 26, 7, 30)


def rule(cron: str | None = "0 9 * * 1", auto_sync: bool = True) -> SyncRule:
    return SyncRule(
        code="R",
        platform="P",
        source_category=None,
        asset_types=None,
        sync_mode="full",
        schedule_cron=cron,
        auto_sync=auto_sync,
    )


def test_next_occurrence_and_timing() -> None:
    assert next_occurrence("0 9 * * 1", NOW) == datetime(2026, 11, 30, 9, 0)
    assert next_occurrence("0 */6 * * *", NOW) == datetime(2026, 11, 26, 12, 0)
    assert timing(rule(), None, NOW).due  # never ran: due at once
    waiting = timing(rule(), datetime(2026, 11, 26, 7, 0), NOW)
    assert not waiting.due and waiting.next_run == datetime(2026, 11, 30, 9, 0)
    assert timing(rule(), datetime(2026, 11, 23, 8, 0), NOW).due  # Monday 9:00 has passed
    assert timing(rule(None), datetime(2026, 11, 26, 7, 0), NOW).due


@pytest.mark.parametrize(
    ("kind", "auto_sync", "forced", "expected"),
    [
        ("create", True, None, None),  # new copies never wait
        ("update", True, None, "scheduled for 2026-11-30 09:00 UTC (0 9 * * 1)"),
        ("update-metadata", True, None, "scheduled for"),
        ("delete", True, None, "scheduled for"),
        ("update", True, "R", None),  # named explicitly: runs now
        ("create", False, None, "auto_sync is false"),
        ("create", False, "R", None),
    ],
)
def test_waiting_reason(kind: str, auto_sync: bool, forced: str | None, expected) -> None:
    why, _when = waiting_reason(
        kind, rule(auto_sync=auto_sync), datetime(2026, 11, 26, 7), NOW, forced
    )
    if expected is None:
        assert why is None
    else:
        assert why is not None and why.startswith(expected)


def scheduled_world(tmp_path: Path, **rule_spec) -> World:
    world = World(tmp_path).platform("YT").asset("VID-A", b"one")
    world.rule("R-YT", "YT", schedule_cron="0 9 * * 1", **rule_spec)
    return world


def test_updates_wait_for_the_schedule_and_creates_do_not(tmp_path: Path, run) -> None:
    world = scheduled_world(tmp_path)
    first = apply(world)  # never ran: the first sync is due
    assert first.counts()["completed"] == 1
    world.write_file("vid-a.mp4", b"two")
    action = action_of(world.plan(), "VID-A", "YT")
    assert action.action == "update" and action.waiting.startswith("scheduled for")
    assert action.scheduled_for is not None and action.scheduled_for.endswith(":00:00Z")
    result = apply(world)
    assert result.jobs == [] and [a.asset for a in result.waiting] == ["VID-A"]
    status = json.loads(run("status", "--state", str(world.store.path), "-o", "json").stdout)[
        "platforms"
    ]
    assert status[0]["scheduled"] == 1 and status[0]["next_run"].endswith("T09:00:00")
    world.asset("VID-B", b"new asset")  # a create is not held by the schedule
    assert [j.action.asset for j in apply(world).jobs] == ["VID-B"]
    forced = apply(world, ApplyOptions(rule="R-YT"))  # ...and --rule runs it now
    assert [(j.action.asset, j.job_type) for j in forced.jobs] == [("VID-A", "update")]


def test_a_dry_run_shows_scheduled_changes(tmp_path: Path, run) -> None:
    world = scheduled_world(tmp_path)
    apply(world)
    world.write_file("vid-a.mp4", b"two")
    text = run("--dry-run", *world.cli_args())
    assert "waits: scheduled for" in text.stdout
    assert "1 of the changes wait for their schedule" in text.stdout
    data = json.loads(run("plan", *world.cli_args(), "-o", "json").stdout)
    assert data["waiting"] == 1 and data["actions"][0]["scheduled_for"]


def test_auto_sync_false_runs_only_when_named(tmp_path: Path) -> None:
    world = (
        World(tmp_path).platform("YT").asset("VID-A", b"one").rule("R-YT", "YT", auto_sync=False)
    )
    result = apply(world)
    assert result.jobs == [] and "auto_sync is false" in (result.waiting[0].waiting or "")
    assert int(result.exit_code) == 0
    assert [j.status for j in apply(world, ApplyOptions(rule="R-YT")).jobs] == ["completed"]


def test_jobs_and_events_record_the_git_commit(tmp_path: Path) -> None:
    world = World(tmp_path).platform("CDN").asset("VID-A", b"one").rule("R", "CDN")
    world.manifests()

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(world.manifests_dir), *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first")
    head = git("rev-parse", "HEAD")
    apply(world)
    assert rows(world, "SELECT DISTINCT git_commit, git_dirty FROM sync_jobs") == [(head, False)]
    assert rows(world, "SELECT DISTINCT git_commit, git_dirty FROM sync_events_log") == [
        (head, False)
    ]
    world.asset("VID-B", b"two")  # a change not committed yet
    apply(world)
    assert rows(world, "SELECT git_commit, git_dirty FROM sync_jobs ORDER BY id DESC LIMIT 1") == [
        (head, True)
    ]
