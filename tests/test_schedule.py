"""Schedules, auto_sync and provenance: what runs now, what waits, and where it came from."""

from __future__ import annotations

import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from cli_process import reconcile, reconcile_json
from planning import World, action_of
from test_apply import apply, rows

from reconciler.apply.run import ApplyOptions
from reconciler.model import SyncRule
from reconciler.plan.schedule import next_occurrence, timing, waiting_reason

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
        ("update", True, "asked", None),  # a re-sync a person asked for wins over the cron
        ("update", False, "asked", "auto_sync is false"),  # ...but not over auto_sync: false
    ],
)
def test_waiting_reason(kind: str, auto_sync: bool, forced: str | None, expected) -> None:
    why, _when = waiting_reason(
        kind,
        rule(auto_sync=auto_sync),
        datetime(2026, 11, 26, 7),
        NOW,
        None if forced == "asked" else forced,
        requested=forced == "asked",
    )
    if expected is None:
        assert why is None
    else:
        assert why is not None and why.startswith(expected)


def scheduled_world(tmp_path: Path, state: str | None = None, **rule_spec) -> World:
    world = World(tmp_path, state).platform("YT").asset("VID-A", b"one")
    world.rule("R-YT", "YT", schedule_cron="0 9 * * 1", **rule_spec)
    return world


def test_updates_wait_for_the_schedule_and_creates_do_not(
    tmp_path: Path, state_at: str, run
) -> None:
    world = scheduled_world(tmp_path, state_at)
    first = apply(world)  # never ran: the first sync is due
    assert first.counts()["completed"] == 1
    world.write_file("vid-a.mp4", b"two")
    action = action_of(world.plan(), "VID-A", "YT")
    assert action.action == "update" and action.waiting.startswith("scheduled for")
    assert action.scheduled_for is not None and action.scheduled_for.endswith(":00:00Z")
    result = apply(world)
    assert result.jobs == [] and [a.asset for a in result.waiting] == ["VID-A"]
    status = json.loads(run("status", "--state", world.state, "-o", "json").stdout)["platforms"]
    assert status[0]["scheduled"] == 1 and status[0]["next_run"].endswith("T09:00:00")
    world.asset("VID-B", b"new asset")  # a create is not held by the schedule
    assert [j.action.asset for j in apply(world).jobs] == ["VID-B"]
    forced = apply(world, ApplyOptions(rule="R-YT"))  # ...and --rule runs it now
    assert [(j.action.asset, j.job_type) for j in forced.jobs] == [("VID-A", "update")]


def test_a_dry_run_shows_scheduled_changes(tmp_path: Path, state_at: str, run) -> None:
    world = scheduled_world(tmp_path, state_at)
    apply(world)
    world.write_file("vid-a.mp4", b"two")
    text = run("--dry-run", *world.cli_args())
    assert "waits: scheduled for" in text.stdout
    assert "1 of the changes wait for their schedule" in text.stdout
    data = json.loads(run("plan", *world.cli_args(), "-o", "json").stdout)
    assert data["waiting"] == 1 and data["actions"][0]["scheduled_for"]


def test_auto_sync_false_runs_only_when_named(tmp_path: Path, state_at: str) -> None:
    world = (
        World(tmp_path, state_at)
        .platform("YT")
        .asset("VID-A", b"one")
        .rule("R-YT", "YT", auto_sync=False)
    )
    result = apply(world)
    assert result.jobs == [] and "auto_sync is false" in (result.waiting[0].waiting or "")
    assert int(result.exit_code) == 0
    assert [j.status for j in apply(world, ApplyOptions(rule="R-YT")).jobs] == ["completed"]


def test_jobs_and_events_record_the_git_commit(tmp_path: Path, state_at: str) -> None:
    world = World(tmp_path, state_at).platform("CDN").asset("VID-A", b"one").rule("R", "CDN")
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


# -- conflicts resolve --use source: a re-sync that does not wait --------------------------------

YEARLY = "0 0 1 1 *"  # due once a year: never during a test


def modified_copy(tmp_path: Path, state: str | None = None, **rule_spec) -> tuple[World, int]:
    """A synced copy whose bytes someone changed on the platform: a remote_modified conflict,
    found by `reconcile verify`. Returns the world and the conflict's id."""
    world = World(tmp_path, state).platform("CDN").asset("VID-A", b"the master" * 20)
    world.rule("R", "CDN", schedule_cron=YEARLY, **rule_spec)
    world.manifests()
    rule_args = ["--rule", "R"] if rule_spec.get("auto_sync") is False else []
    assert reconcile(*world.cli_args(), *rule_args).returncode == 0
    (copy,) = (tmp_path / "out" / "cdn").rglob("*.mp4")
    copy.write_bytes(b"edited on the platform")
    assert reconcile("verify", *world.cli_args()).returncode == 3
    (conflict,) = reconcile_json("conflicts", "--state", world.state)["conflicts"]
    assert conflict["conflict_type"] == "remote_modified"
    return world, conflict["id"]


def resolve_source(world: World, conflict_id: int) -> str:
    done = reconcile(
        "conflicts", "--state", world.state, "resolve", str(conflict_id),
        "--use", "source", "--by", "alice",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_use_source_re_syncs_at_the_next_reconcile_whatever_the_schedule(
    tmp_path: Path, state_at: str
) -> None:
    world, conflict_id = modified_copy(tmp_path, state_at)
    held = reconcile_json("--dry-run", *world.cli_args())
    assert held["summary"]["held"] == 1

    said = resolve_source(world, conflict_id)
    assert "resolved: use_source by alice; the next reconcile re-syncs it" in said
    (cdn,) = reconcile_json("status", "--state", world.state)["platforms"]
    assert (cdn["outdated"], cdn["scheduled"], cdn["next_run"]) == (1, 0, None)  # not waiting
    (action,) = reconcile_json("--dry-run", *world.cli_args())["actions"]
    assert action["action"] == "update" and action["waiting"] is None  # not next January
    assert "a re-sync was asked for" in action["reason"]

    applied = reconcile(*world.cli_args())
    assert applied.returncode == 0, applied.stderr
    (copy,) = (tmp_path / "out" / "cdn").rglob("*.mp4")
    assert copy.read_bytes() == b"the master" * 20
    assert rows(world, "SELECT sync_status, resync_requested_at FROM platform_assets") == [
        ("synced", None)  # the request is done with
    ]
    world.write_file("vid-a.mp4", b"a new version")  # the schedule applies again
    (later,) = reconcile_json("--dry-run", *world.cli_args())["actions"]
    assert later["action"] == "update" and later["waiting"].startswith("scheduled for")


def test_use_source_on_a_rule_with_auto_sync_false_waits_for_its_rule(
    tmp_path: Path, state_at: str
) -> None:
    world, conflict_id = modified_copy(tmp_path, state_at, auto_sync=False)
    said = resolve_source(world, conflict_id)
    assert "its rule R has auto_sync: false, so it re-syncs with the next `reconcile --rule R`" in (
        said
    )
    plain = reconcile_json(*world.cli_args())
    assert plain["jobs"] == [] and len(plain["waiting"]) == 1
    forced = reconcile(*world.cli_args(), "--rule", "R")
    assert forced.returncode == 0, forced.stderr
    (copy,) = (tmp_path / "out" / "cdn").rglob("*.mp4")
    assert copy.read_bytes() == b"the master" * 20
    assert rows(world, "SELECT resync_requested_at FROM platform_assets") == [(None,)]
