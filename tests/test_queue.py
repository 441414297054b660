"""The job queue's parts, in process against a real PostgreSQL (issue 17): claims that never
overlap, a YouTube quota shared exactly by workers, a queued row that is not trusted, the
DuckDB file refused with one line, and a plain run that leaves queued jobs to the workers."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from planning import World

from reconciler.apply.queue import Unrunnable, job_of, work_spec
from reconciler.drivers.base import Deferred
from reconciler.drivers.state import DriverState
from reconciler.drivers.youtube_quota import DailyQuota
from reconciler.store.db import location, utcnow
from reconciler.store.postgres import PgStore
from reconciler.store.queue import Claimed, claim
from reconciler.store.sessions import StoredSessions

from helpers import query


def worker_store(url: str, name: str) -> PgStore:
    found = location(url)
    assert not isinstance(found, Path)
    return PgStore(found, lock_timeout=10, command="test worker", lease=f"worker:{name}")


def queued_world(tmp_path: Path, url: str, assets: int) -> World:
    world = World(tmp_path, url).platform("CDN").rule("R", "CDN")
    for n in range(assets):
        world.asset(f"VID-{n:03d}", f"video {n}".encode())
    world.manifests()
    return world


def first_job(url: str) -> int:
    return int(query(url, "SELECT min(id) FROM sync_jobs")[0][0])


def set_spec(url: str, job_id: int, spec: str) -> None:
    """Write a queued job's work_spec as someone with write access to the state could."""
    import psycopg

    with psycopg.connect(url.split("?")[0], autocommit=True) as con:
        con.execute("UPDATE mediasync.sync_jobs SET work_spec = %s WHERE id = %s", [spec, job_id])


def run_cli(run: Any, world: World, *args: str) -> Any:
    return run(*args, *world.cli_args())


def test_two_workers_claiming_at_once_never_get_the_same_job(
    tmp_path: Path, pg_url: str, run: Any
) -> None:
    world = queued_world(tmp_path, pg_url, 120)
    assert run_cli(run, world, "--queue").exit_code == 0
    got: dict[str, list[int]] = {"a": [], "b": []}

    def drain(name: str) -> None:
        store = worker_store(pg_url, name)
        with store.session():
            while True:
                with store.writing() as con:
                    row = claim(con, name, utcnow())
                if row is None:
                    return
                got[name].append(row.id)

    threads = [threading.Thread(target=drain, args=(n,)) for n in got]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(got["a"]) + len(got["b"]) == 120
    assert not set(got["a"]) & set(got["b"])
    assert got["a"] and got["b"]
    claimed = query(pg_url, "SELECT claimed_by, count(*) FROM sync_jobs GROUP BY 1 ORDER BY 1")
    assert claimed == [("a", len(got["a"])), ("b", len(got["b"]))]


def test_workers_sharing_a_youtube_quota_never_spend_more_than_it_together(
    pg_url: str, tmp_path: Path
) -> None:
    World(tmp_path, pg_url).platform("CDN").rule("R", "CDN").asset("A").applied()
    quota = DailyQuota("YOUTUBE", {"quota_daily_units": 100, "quota_costs": {"insert": 1}})
    taken: list[int] = []
    refused: list[int] = []

    def spend(name: str) -> None:
        store = worker_store(pg_url, name)
        with store.session():
            state = DriverState(StoredSessions(store), "YOUTUBE")
            for _ in range(80):
                try:
                    quota.spend(state, "insert")
                    taken.append(1)
                except Deferred:
                    refused.append(1)

    threads = [threading.Thread(target=spend, args=(n,)) for n in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert (len(taken), len(refused)) == (100, 60)
    assert query(pg_url, "SELECT units_used FROM platform_quota") == [(100,)]


def claimed_row(url: str) -> Claimed:
    store = worker_store(url, "x")
    with store.session(), store.writing() as con:
        row = claim(con, "x", utcnow())
    assert row is not None
    return row


def test_a_queued_row_is_not_trusted_with_a_path(tmp_path: Path, pg_url: str, run: Any) -> None:
    world = queued_world(tmp_path, pg_url, 1)
    assert run_cli(run, world, "--queue").exit_code == 0
    row = claimed_row(pg_url)
    spec = json.loads(row.work_spec or "")
    spec["action"]["path"] = "/etc/passwd"
    spec["action"]["file"] = "../../etc/passwd"
    hostile = Claimed(**{**row.__dict__, "work_spec": json.dumps(spec)})
    job = job_of(hostile, world.manifests())
    assert job.action.path == str(world.media / "vid-000.mp4")  # the worker's own manifests
    assert job.action.file == "vid-000.mp4"
    spec["action"]["asset"] = "NOT-DECLARED"
    with pytest.raises(Unrunnable, match="NOT-DECLARED, which this worker's manifests"):
        job_of(Claimed(**{**row.__dict__, "work_spec": json.dumps(spec)}), world.manifests())
    spec["action"]["asset"], spec["action"]["platform"] = "VID-000", "ELSEWHERE"
    with pytest.raises(Unrunnable, match="platform ELSEWHERE"):
        job_of(Claimed(**{**row.__dict__, "work_spec": json.dumps(spec)}), world.manifests())
    spec["action"]["platform"] = "CDN"
    broken = [{**spec, "pa_id": "x"}, {**spec, "action": {**spec["action"], "asset": ["A"]}}]
    for damaged in ("not json", "[]", json.dumps({"version": 99}), *map(json.dumps, broken)):
        with pytest.raises(Unrunnable, match="not a queued job this worker reads"):
            job_of(Claimed(**{**row.__dict__, "work_spec": damaged}), world.manifests())
    assert json.loads(work_spec(job))["action"]["asset"] == "VID-000"


def test_a_damaged_queued_row_fails_its_job_and_the_worker_goes_on(
    tmp_path: Path, pg_url: str, run: Any
) -> None:
    world = queued_world(tmp_path, pg_url, 3)
    assert run_cli(run, world, "--queue").exit_code == 0
    first = first_job(pg_url)
    set_spec(pg_url, first, '{"version": 1}')
    done = run_cli(run, world, "worker", "--exit-when-idle")
    assert done.exit_code == 3, done.output
    assert "Traceback" not in done.output
    statuses = dict(query(pg_url, "SELECT id, status FROM sync_jobs"))
    assert statuses.pop(first) == "failed"
    assert set(statuses.values()) == {"completed"}
    assert len(list((tmp_path / "out" / "cdn").iterdir())) == 2


def test_the_queue_needs_postgresql_and_says_so_in_one_line(tmp_path: Path, run: Any) -> None:
    world = queued_world(tmp_path, str(tmp_path / "state" / "r.duckdb"), 1)
    for args in (["--queue"], ["worker"], ["watch", "--queue"]):
        done = run(*args[:1], *args[1:], *world.cli_args())
        assert done.exit_code == 1, (args, done.output)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "PostgreSQL state" in lines[0], done.stderr
    workers = run("workers", "--state", str(tmp_path / "state" / "r.duckdb"))
    assert workers.exit_code == 1 and "PostgreSQL state" in workers.stderr
    assert not (tmp_path / "state" / "r.duckdb").exists()  # nothing was written
    assert not (tmp_path / "out").exists()


def test_a_plain_run_leaves_queued_jobs_to_the_workers(
    tmp_path: Path, pg_url: str, run: Any
) -> None:
    world = queued_world(tmp_path, pg_url, 4)
    assert run_cli(run, world, "--queue").exit_code == 0
    world.asset("VID-NEW", b"a new one").manifests()
    plain = run_cli(run, world, "-o", "json")
    assert plain.exit_code == 0, plain.output
    summary = json.loads(plain.stdout)["summary"]
    assert summary["completed"] == 1 and summary["already_queued"] == 4
    statuses = query(pg_url, "SELECT queued, status, count(*) FROM sync_jobs GROUP BY 1, 2")
    assert sorted(statuses, key=str) == sorted(
        [(True, "pending", 4), (None, "completed", 1)], key=str
    )
    again = run_cli(run, world, "--queue")
    assert again.exit_code == 0 and "4 changes already queued" in again.stdout
    assert query(pg_url, "SELECT count(*) FROM sync_jobs") == [(5,)]  # queued once only


def test_claims_follow_rule_priority_then_plan_order(tmp_path: Path, pg_url: str, run: Any) -> None:
    world = World(tmp_path, pg_url).platform("CDN").platform("S3")
    world.rule("LOW", "CDN", priority=1).rule("HIGH", "S3", priority=10)
    for n in range(5):
        world.asset(f"VID-{n}", f"video {n}".encode())
    world.manifests()
    assert run_cli(run, world, "--queue").exit_code == 0
    store = worker_store(pg_url, "p")
    order = []
    with store.session():
        while True:
            with store.writing() as con:
                row = claim(con, "p", utcnow())
            if row is None:
                break
            order.append(json.loads(row.work_spec or "")["action"]["rule"])
    assert order == ["HIGH"] * 5 + ["LOW"] * 5


def test_a_job_for_an_asset_the_worker_never_heard_of_fails_after_one_fresh_read(
    tmp_path: Path, pg_url: str, run: Any
) -> None:
    world = queued_world(tmp_path, pg_url, 2)
    assert run_cli(run, world, "--queue").exit_code == 0
    first = first_job(pg_url)
    (spec,) = query(pg_url, "SELECT work_spec FROM sync_jobs WHERE id = ?", [first])[0]
    changed = json.loads(spec)
    changed["action"]["asset"] = "VID-ELSEWHERE"
    set_spec(pg_url, first, json.dumps(changed))
    done = run_cli(run, world, "worker", "--exit-when-idle")
    assert done.exit_code == 3, done.output
    assert done.stderr.count("VID-ELSEWHERE, which this worker's manifests do not declare") == 1
    statuses = dict(query(pg_url, "SELECT id, status FROM sync_jobs"))
    assert statuses.pop(first) == "failed" and set(statuses.values()) == {"completed"}


def test_a_stopping_worker_hands_back_only_what_it_gave_back(
    tmp_path: Path, pg_url: str, run: Any
) -> None:
    """A job still recorded as processing may have landed: it waits for a platform check by
    whoever takes over the worker's released lease, rather than going back unchecked."""
    from reconciler.store.queue import hand_back, unclaim

    world = queued_world(tmp_path, pg_url, 2)
    assert run_cli(run, world, "--queue").exit_code == 0
    store = worker_store(pg_url, "h")
    with store.session():
        with store.writing() as con:
            register_row = con.execute(
                "INSERT INTO sync_workers (worker_id, state) VALUES ('h', 'live')"
            )
            del register_row
            first = claim(con, "h", utcnow())
            second = claim(con, "h", utcnow())
        assert first is not None and second is not None
        with store.writing() as con:
            unclaim(con, second.id)  # as a job given back is recorded: pending
            con.execute("UPDATE sync_jobs SET claimed_by = 'h' WHERE id = ?", [second.id])
            assert hand_back(con, "h", utcnow()) == [second.id]
    statuses = dict(query(pg_url, "SELECT id, status FROM sync_jobs"))
    assert statuses == {first.id: "processing", second.id: "pending"}
    assert query(pg_url, "SELECT state FROM sync_workers") == [("stopped",)]
