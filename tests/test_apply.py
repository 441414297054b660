"""Apply through the real local driver: jobs, events, verification, retries, rate limits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest
from planning import World, apply_run, rows

import reconciler.apply.run as apply_module
from reconciler.apply.run import ApplyOptions, apply_plan
from reconciler.drivers.base import PermanentError, TemporaryError, Uploaded
from reconciler.drivers.local import LocalDriver
from reconciler.observe.payload import Payload
from reconciler.observe.sources import sha256_file
from reconciler.plan.planner import make_plan

from helpers import SHIPPED_MANIFESTS, is_postgresql

FAST = ApplyOptions(parallel=2, backoff_base=0.001, backoff_max=0.01)


def apply(world: World, options: ApplyOptions = FAST, **plan_options: Any):
    return apply_run(world, options, **plan_options)


def target(world: World, platform: str) -> Path:
    return world.root / "out" / platform.lower()


@pytest.fixture
def world(tmp_path: Path, state_at: str) -> World:
    return (
        World(tmp_path, state_at)
        .platform("CDN")
        .platform("S3")
        .rule("R-CDN", "CDN")
        .rule("R-S3", "S3")
        .asset("VID-A", b"a" * 1000)
        .asset("VID-B", b"b" * 2000)
    )


def test_apply_copies_every_placement_and_records_it(world: World) -> None:
    result = apply(world)
    assert result.counts() == {"completed": 4, "failed": 0, "deferred": 0}
    assert int(result.exit_code) == 0
    for platform in ("CDN", "S3"):
        for code, content in (("VID-A", b"a" * 1000), ("VID-B", b"b" * 2000)):
            copy = target(world, platform) / f"{code.lower()}.mp4"
            assert copy.read_bytes() == content
    placements = rows(
        world,
        "SELECT sync_status, synced_version, local_checksum = "
        "remote_checksum, managed, last_synced_at IS NOT NULL, remote_key "
        "FROM platform_assets ORDER BY id",
    )
    assert [p[:5] for p in placements] == [("synced", 1, True, True, True)] * 4
    jobs = rows(
        world,
        "SELECT job_type, status, progress_percent, started_at IS NOT NULL, "
        "completed_at IS NOT NULL, source_version FROM sync_jobs",
    )
    assert set(jobs) == {("initial", "completed", 100, True, True, 1)}
    events = rows(
        world,
        "SELECT e.event_type, e.event_status FROM sync_events_log e "
        "JOIN sync_jobs j ON j.id = e.job_id WHERE j.id = 1 ORDER BY e.id",
    )
    assert events == [
        ("upload_start", "success"),
        ("upload_complete", "success"),
        ("verification", "success"),
    ]
    assert world.plan().summary()["noop"] == 4


def test_a_changed_master_is_updated_and_versioned(world: World) -> None:
    apply(world)
    world.write_file("vid-a.mp4", b"A2" * 700)
    result = apply(world)
    assert sorted((j.action.asset, j.job_type) for j in result.jobs) == [
        ("VID-A", "update"),
        ("VID-A", "update"),
    ]
    assert (target(world, "CDN") / "vid-a.mp4").read_bytes() == b"A2" * 700
    assert rows(world, "SELECT version FROM source_assets WHERE asset_code = 'VID-A'") == [(2,)]
    assert rows(
        world,
        "SELECT DISTINCT synced_version, sync_status FROM platform_assets pa "
        "JOIN source_assets sa ON sa.id = pa.source_asset_id "
        "WHERE sa.asset_code = 'VID-A'",
    ) == [(2, "synced")]


def test_outdated_shows_in_status_until_applied(world: World, run) -> None:
    apply(world)
    world.write_file("vid-b.mp4", b"B2")
    manifests = world.manifests()
    plan = make_plan(manifests, world.store)
    from reconciler.apply.objects import record_objects

    with world.store.writing() as con:  # what watch or an apply records first
        record_objects(con, manifests, plan.observed.files)
    status = json.loads(run("status", "--state", world.state, "-o", "json").stdout)
    assert {p["platform_code"]: p["outdated"] for p in status["platforms"]} == {"CDN": 1, "S3": 1}


def test_metadata_only_change_sends_no_bytes(world: World) -> None:
    apply(world)
    before = (target(world, "CDN") / "vid-a.mp4").stat().st_mtime_ns
    world.asset("VID-A", b"a" * 1000, title="Renamed")
    result = apply(world)
    assert {j.job_type for j in result.jobs} == {"metadata"}
    assert (target(world, "CDN") / "vid-a.mp4").stat().st_mtime_ns == before
    assert world.plan().summary()["noop"] == 4


def test_pruning_deletes_the_copy(world: World) -> None:
    apply(world)
    world.remove("Asset", "VID-B")
    result = apply(world, prune=True, force=True)
    assert {(j.action.asset, j.job_type, j.status) for j in result.jobs} == {
        ("VID-B", "delete", "completed")
    }
    assert not (target(world, "CDN") / "vid-b.mp4").exists()
    pruned = "SELECT DISTINCT sync_status FROM {} pa JOIN source_assets sa ON sa.id = " + (
        "pa.source_asset_id WHERE asset_code = 'VID-B'"
    )
    assert rows(world, pruned.format("platform_assets_pruned")) == [("deleted",)]
    assert rows(world, pruned.format("platform_assets")) == []  # no longer counted anywhere


def test_narrowing_by_platform_and_rule(world: World) -> None:
    result = apply(world, ApplyOptions(platform="S3"))
    assert {j.action.platform for j in result.jobs} == {"S3"}
    result = apply(world, ApplyOptions(rule="R-CDN"))
    assert {j.action.platform for j in result.jobs} == {"CDN"}


def test_rate_limit_defers_across_runs(world: World) -> None:
    world.platform("CDN", rate_limit_per_hour=1)
    first = apply(world, ApplyOptions(platform="CDN"))
    assert first.counts() == {"completed": 1, "failed": 0, "deferred": 1}
    assert int(first.exit_code) == 3
    deferred = next(j for j in first.jobs if j.status == "deferred")
    started = rows(world, "SELECT min(started_at) FROM sync_jobs WHERE status = 'completed'")
    assert (deferred.eligible_at - started[0][0]).total_seconds() == pytest.approx(3600, abs=1)
    assert "rate limit reached; eligible at" in (deferred.error or "")
    second = apply(world, ApplyOptions(platform="CDN"))  # the budget is spent across runs
    assert second.counts() == {"completed": 0, "failed": 0, "deferred": 1}
    events = rows(world, "SELECT count(*) FROM sync_events_log WHERE event_type = 'deferred'")
    assert events == [(2,)]


class Flaky(LocalDriver):
    """The real local driver behind a script of failures, one per upload attempt."""

    script: ClassVar[list[Exception | str]] = []

    def upload(self, source: Payload, key: str, metadata: dict, progress=None) -> Uploaded:
        step = Flaky.script.pop(0) if Flaky.script else "ok"
        if isinstance(step, Exception):
            raise step
        uploaded = super().upload(source, key, metadata, progress)
        if step == "corrupt":
            return Uploaded(uploaded.platform_asset_id, uploaded.url, "f" * 64)
        return uploaded


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> type[Flaky]:
    monkeypatch.setattr(apply_module, "driver_for", lambda platform, *_: Flaky(platform))
    Flaky.script = []
    return Flaky


def one(world: World) -> World:
    world.remove("SyncRule", "R-S3").remove("Asset", "VID-B")
    return world


def test_temporary_failures_are_retried_with_events(world: World, flaky) -> None:
    flaky.script = [TemporaryError("503 busy"), TemporaryError("throttled", retry_after=0.01)]
    (job,) = apply(one(world)).jobs
    assert (job.status, job.retries) == ("completed", 2)
    retries = rows(
        world, "SELECT message, details FROM sync_events_log WHERE event_type = 'retry' ORDER BY id"
    )
    assert [m.split(" (")[0] for m, _ in retries] == ["attempt 1 failed", "attempt 2 failed"]
    assert json.loads(retries[1][1])["wait_seconds"] == 0.01  # Retry-After honoured
    assert rows(world, "SELECT retry_count, status FROM sync_jobs") == [(2, "completed")]


def test_a_permanent_failure_fails_at_once(world: World, flaky) -> None:
    flaky.script = [PermanentError("403 forbidden by the platform")]
    (job,) = apply(one(world)).jobs
    assert (job.status, job.retries, job.error) == ("failed", 0, "403 forbidden by the platform")
    assert rows(world, "SELECT status, error_message FROM sync_jobs") == [
        ("failed", "403 forbidden by the platform")
    ]
    assert rows(world, "SELECT sync_status FROM platform_assets") == [("failed",)]


def test_temporary_failures_give_up_at_the_limit(world: World, flaky) -> None:
    flaky.script = [TemporaryError("timeout")] * 10
    result = apply(one(world), ApplyOptions(max_attempts=3, backoff_base=0.001))
    (job,) = result.jobs
    assert job.status == "failed" and job.retries == 2
    assert job.error == "gave up after 3 attempts: timeout"
    assert int(result.exit_code) == 3


def test_a_checksum_mismatch_is_a_conflict_and_is_retried(world: World, flaky) -> None:
    flaky.script = ["corrupt"]
    (job,) = apply(one(world)).jobs
    assert job.status == "completed" and job.retries == 1
    conflicts = rows(
        world, "SELECT conflict_type, source_value, target_value, resolution FROM sync_conflicts"
    )
    assert conflicts == [("checksum_mismatch", job.action.checksum, "f" * 64, "resolved_by_retry")]
    kinds = [
        k
        for (k,) in rows(
            world,
            "SELECT event_type || ':' || event_status FROM "
            "sync_events_log WHERE job_id = 1 ORDER BY id",
        )
    ]
    assert kinds[:5] == [
        "upload_start:success",
        "verification:failed",
        "conflict_detected:failed",
        "retry:retrying",
        "upload_complete:success",
    ]


def test_a_mismatch_that_persists_fails_and_holds(world: World, flaky) -> None:
    flaky.script = ["corrupt"] * 5
    result = apply(one(world), ApplyOptions(max_attempts=2, backoff_base=0.001))
    assert result.jobs[0].status == "failed" and result.open_conflicts == 1
    assert world.plan().actions[0].action == "held"


def test_a_master_that_changes_during_the_run_fails_clearly(
    world: World, flaky, monkeypatch
) -> None:
    one(world)
    manifests = world.manifests()
    plan = make_plan(manifests, world.store)
    world.write_file("vid-a.mp4", b"changed meanwhile")
    flaky.script = []
    with world.store.session():
        (job,) = apply_plan(manifests, world.store, plan, FAST).jobs
    assert job.status == "failed" and "changed after it was planned" in (job.error or "")


def test_an_update_does_not_overwrite_a_copy_changed_outside(world: World) -> None:
    one(world)
    apply(world)
    copy = target(world, "CDN") / "vid-a.mp4"
    copy.write_bytes(b"edited by hand")
    world.write_file("vid-a.mp4", b"new master")
    (job,) = apply(world).jobs
    assert job.status == "failed" and "changed outside reconcile" in (job.error or "")
    assert copy.read_bytes() == b"edited by hand"
    assert rows(world, "SELECT conflict_type FROM sync_conflicts") == [("remote_modified",)]
    world.rule("R-CDN", "CDN", on_conflict="source_wins")
    with world.store.writing() as con:
        con.execute("UPDATE sync_conflicts SET resolution = 'ignored'")
    (job,) = apply(world).jobs
    assert job.status == "completed" and copy.read_bytes() == b"new master"


def test_verify_finds_modified_and_deleted_copies(world: World, run) -> None:
    apply(world)
    (target(world, "CDN") / "vid-a.mp4").write_bytes(b"tampered")
    (target(world, "S3") / "vid-b.mp4").unlink()
    args = ["verify", *world.cli_args()]
    result = run(*args)
    assert result.exit_code == 3
    assert "conflict: remote_modified: VID-A on CDN" in result.stdout
    assert "conflict: remote_deleted: VID-B on S3" in result.stdout
    assert "Verified 4 copies: 2 match, 2 conflicts" in result.stdout
    assert rows(
        world, "SELECT count(*) FROM platform_assets WHERE last_verified_at IS NOT NULL"
    ) == [(4,)]
    assert rows(world, "SELECT DISTINCT health_status FROM sync_platforms") == [("healthy",)]
    again = run(*args)  # open conflicts are not reported twice
    assert "Verified 2 copies: 2 match" in again.stdout
    kinds = {(a.asset, a.platform): a.action for a in world.plan().actions}
    assert kinds[("VID-A", "CDN")] == "held" and kinds[("VID-B", "S3")] == "held"


def test_verify_with_source_wins_resyncs_instead_of_a_conflict(world: World) -> None:
    world.rule("R-CDN", "CDN", on_conflict="source_wins")
    apply(world)
    copy = target(world, "CDN") / "vid-a.mp4"
    copy.write_bytes(b"tampered")
    from reconciler.apply.verify import verify

    result = verify(world.manifests(), world.store)
    assert result.conflicts == [] and len(result.resynced) == 1
    (job,) = apply(world).jobs
    assert job.status == "completed" and copy.read_bytes() == b"a" * 1000


def test_resolving_with_the_target_accepts_the_platforms_copy(world: World, run) -> None:
    apply(world)
    (target(world, "CDN") / "vid-a.mp4").write_bytes(b"the platform's version")
    from reconciler.apply.verify import verify

    verify(world.manifests(), world.store)
    state = world.state
    assert (
        run(
            "conflicts", "--state", state, "resolve", "1", "--use", "target", "--by", "ops"
        ).exit_code
        == 0
    )
    assert world.plan().summary()["noop"] == 4
    assert verify(world.manifests(), world.store).conflicts == []


def test_saved_plans_apply_exactly_or_are_refused(world: World, run) -> None:
    world.manifests()
    plan_file = world.root / "plan.json"
    assert run("--dry-run", *world.cli_args(), "--out", str(plan_file)).exit_code == 0
    result = run("apply", str(plan_file), *world.cli_args(), "--output", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["completed"] == 4
    stale = run("apply", str(plan_file), *world.cli_args())
    assert stale.exit_code == 1
    assert "the state has moved on since this plan was made" in stale.stderr


def test_jsonl_streams_events(world: World, run) -> None:
    world.manifests()
    result = run(
        *world.cli_args(),
        "--output",
        "jsonl",
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[-1]["summary"]["completed"] == 4
    types = [line["event_type"] for line in lines[:-1]]
    assert types.count("upload_complete") == 4 and types.count("verification") == 4
    assert {line["platform"] for line in lines[:-1] if line["job"]} == {"CDN", "S3"}


def test_shipped_example_end_to_end(run, tmp_path: Path, state_at: str) -> None:
    folder = tmp_path / "repo"
    shutil.copytree(SHIPPED_MANIFESTS, folder / "manifests")
    (folder / "state").mkdir()
    state = str(folder / "state" / "reconciler.duckdb")
    if is_postgresql(state_at):
        state = state_at
    args = ["--manifests", str(folder / "manifests"), "--state", state]
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[-1].startswith("Apply R")
    assert "15 completed, 0 failed, 0 deferred" in first.stdout
    copies = sorted(
        p.relative_to(folder / "state" / "platforms").as_posix()
        for p in (folder / "state" / "platforms").rglob("*")
        if p.is_file()
    )
    assert len(copies) == 15
    assert "youtube/media/videos/launch_2024.mp4" in copies
    # the Vimeo rule's 1080p leaves 90-line videos as they are: the masters themselves go up
    # (what the other rules' renditions hold is checked in tests/test_transforms.py)
    for copy in (c for c in copies if c.startswith("vimeo/")):
        master = folder / "manifests" / copy.removeprefix("vimeo/")
        assert sha256_file(folder / "state" / "platforms" / copy) == sha256_file(master)
    status = json.loads(run("status", "--state", state, "-o", "json").stdout)["platforms"]
    assert sum(p["up_to_date"] for p in status) == 15
    assert run("--dry-run", "--detailed-exitcode", *args).exit_code == 0
