"""Many workers on one PostgreSQL state (issue 17): `reconcile --queue` writes the jobs, real
`reconcile worker` subprocesses claim them (FOR UPDATE SKIP LOCKED), and lose nothing and
duplicate nothing when one is killed or frozen.

* 3 workers drain 300 jobs to a local folder and to S3 on loopback: every job completed once,
  by one worker, every object the master's bytes, no part file or unfinished upload left;
* one worker SIGKILLed mid-upload and another SIGSTOPped past its lease's TTL, uploading to
  the slow fake Vimeo: a third reclaims their jobs (a `reclaimed` event names each lost
  worker), resumes their uploads and completes every job exactly once: one whole video per
  asset, none partial or twice; the frozen worker, resumed, writes nothing and exits 1;
* an hourly budget of 50 across 3 workers: exactly 50 completed, the rest deferred;
* SIGTERM: the worker hands its job back and exits within 10 s; another finishes it.
"""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path

import boto3
import pytest
from apiservers import FakePlatforms
from leasekit import MiB, Proc, query, snapshot, start, vimeo_world, with_ttl, world_args
from planning import World

TTL = 3.0


def with_bucket(world: World, endpoint: str, bucket: str, prefix: str) -> None:
    """A BACKUP platform on the loopback S3 bucket under ``prefix``, with its rule."""
    world.platform(
        "BACKUP", platform_type="cloud_storage", driver="s3", target=None, bucket=bucket,
        prefix=prefix, region="us-east-1", endpoint_url=endpoint,
    ).rule("TO-BACKUP", "BACKUP")  # fmt: skip


def queue(world: World, state: str) -> None:
    done = start(*world_args(world, state), "--queue")
    code, err = done.finish()
    assert code == 0, err
    assert "queued for workers" in "".join(done.lines), done.lines


def worker(procs: list[Proc], world: World, state: str, *more: str) -> Proc:
    proc = start("worker", *world_args(world, state), "-o", "jsonl", *more)
    procs.append(proc)
    return proc


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def jobs_by_status(url: str) -> dict[str, int]:
    return dict(query(url, "SELECT status, count(*) FROM sync_jobs GROUP BY status"))


def test_three_workers_drain_300_jobs_to_a_folder_and_to_s3_exactly_once(
    tmp_path: Path, pg_url: str, s3_endpoint: str, bucket: str, procs: list[Proc]
) -> None:
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    with_bucket(world, s3_endpoint, bucket, "m/")
    masters = {f"VID-{n:03d}": f"master {n} ".encode() * (50 + n) for n in range(150)}
    for code, data in masters.items():
        world.asset(code, data)
    world.manifests()
    queue(world, pg_url)
    assert jobs_by_status(pg_url) == {"pending": 300}
    three = [worker(procs, world, pg_url, "--exit-when-idle", "--concurrency", "2") for _ in "abc"]
    for proc in three:
        code, err = proc.finish(240)
        assert code == 0, err
        assert "Traceback" not in err
    assert jobs_by_status(pg_url) == {"completed": 300}
    by_worker = dict(query(pg_url, "SELECT claimed_by, count(*) FROM sync_jobs GROUP BY 1"))
    assert len(by_worker) == 3 and sum(by_worker.values()) == 300, by_worker
    assert all(n > 0 for n in by_worker.values()), by_worker  # the work was shared
    once = query(pg_url, "SELECT asset_id, platform_id, count(*) FROM sync_jobs GROUP BY 1, 2")
    assert len(once) == 300 and {n for *_, n in once} == {1}
    starts = query(
        pg_url, "SELECT job_id, count(*) FROM sync_events_log WHERE event_type = 'upload_start' "
        "GROUP BY job_id HAVING count(*) > 1",
    )  # fmt: skip
    assert starts == []  # no job was run twice
    folder = tmp_path / "out" / "cdn"
    on_disk = {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == {f"{c.lower()}.mp4": d for c, d in masters.items()}  # no part file
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]  # fmt: skip
    assert sorted(keys) == sorted(f"m/{c.lower()}.mp4" for c in masters)
    for code in ("VID-000", "VID-149"):
        body = s3.get_object(Bucket=bucket, Key=f"m/{code.lower()}.mp4")["Body"].read()
        assert body == masters[code]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    recorded = query(
        pg_url, "SELECT sa.asset_code, pa.sync_status, pa.remote_checksum FROM platform_assets pa "
        "JOIN source_assets sa ON sa.id = pa.source_asset_id",
    )  # fmt: skip
    assert len(recorded) == 300
    assert all(s == "synced" and c == sha(masters[a]) for a, s, c in recorded)
    again = start(*world_args(world, pg_url), "--dry-run", "--detailed-exitcode")
    assert again.finish()[0] == 0  # nothing left to do
    fleet = start("workers", "--state", pg_url, "-o", "json")
    assert fleet.finish()[0] == 0
    listed = json.loads("".join(fleet.lines))["workers"]
    assert sorted(w["jobs_done"] for w in listed) == sorted(by_worker.values())
    assert {w["state"] for w in listed} == {"stopped"}


def mid_upload(fake: FakePlatforms, proc: Proc, above: int) -> str:
    """Wait until ``proc`` is uploading and the platform got more than ``above`` bytes in
    all; the job's code."""
    started = proc.wait_for(lambda e: e.get("event_type") == "upload_start")
    deadline = time.monotonic() + 30
    while fake.bytes_received() <= above:
        assert time.monotonic() < deadline, "the upload did not get going"
        time.sleep(0.01)
    return str(started["job"])


def test_killed_and_frozen_workers_lose_nothing_and_duplicate_nothing(
    tmp_path: Path, fake: FakePlatforms, pg_url: str, procs: list[Proc]
) -> None:
    fake.chunk_delay = 0.1
    size = 4 * MiB  # 16 chunks of 256 KiB: about 1.6 s per video
    world = vimeo_world(tmp_path, fake, 6, size)
    state = with_ttl(pg_url, TTL)
    queue(world, state)
    killed = worker(procs, world, state, "--concurrency", "1")
    mid_upload(fake, killed, size // 3)
    killed.signal(signal.SIGKILL)
    frozen = worker(procs, world, state, "--concurrency", "1")
    mid_upload(fake, frozen, fake.bytes_received() + size // 3)
    frozen.signal(signal.SIGSTOP)
    last = worker(procs, world, state, "--concurrency", "1", "--exit-when-idle")
    code, err = last.finish(180)
    assert code == 0, err
    assert jobs_by_status(pg_url) == {"completed": 6}
    reclaimed = query(
        pg_url, "SELECT details::json FROM sync_events_log WHERE event_type = 'reclaimed'"
    )
    lost = {d["lost_worker"] for (d,) in reclaimed}
    pids = {int(w.split(":")[1]) for w in lost}
    assert pids == {killed.pid, frozen.pid}, lost
    states = dict(query(pg_url, "SELECT pid, state FROM sync_workers"))
    assert states[killed.pid] == "lost" and states[frozen.pid] == "lost"
    check_videos(world, fake, pg_url)
    before = snapshot(pg_url)
    requests, videos, sent = len(fake.requests), len(fake.uploads), fake.bytes_received()
    frozen.signal(signal.SIGCONT)
    code, err = frozen.finish(60)
    assert code == 1, err
    assert "Traceback" not in err and "lost its lock" in err, err
    assert snapshot(pg_url) == before  # the woken worker wrote nothing
    assert len(fake.uploads) == videos, fake.requests[requests:]
    assert fake.bytes_received() - sent <= 256 * 1024  # at most the chunk in flight
    check_videos(world, fake, pg_url)


def check_videos(world: World, fake: FakePlatforms, url: str) -> None:
    """One whole video per asset on the platform, the master's bytes; none partial, none
    twice; each copy recorded with that checksum."""
    whole = {}
    for vid, upload in fake.uploads.items():
        if upload.video == "deleted":
            continue
        assert len(upload.data) == upload.size, f"video {vid} is partial"
        whole[sha(bytes(upload.data))] = vid
    masters = {sha(p.read_bytes()) for p in world.media.glob("*.mp4")}
    assert set(whole) == masters and len(whole) == len(
        [u for u in fake.uploads.values() if u.video != "deleted"]
    ), "a video is on the platform twice"
    recorded = query(url, "SELECT sync_status, remote_checksum FROM platform_assets")
    assert sorted(c for _, c in recorded) == sorted(masters)
    assert {s for s, _ in recorded} == {"synced"}


def test_an_hourly_budget_of_50_holds_across_three_workers(
    tmp_path: Path, pg_url: str, procs: list[Proc]
) -> None:
    world = World(tmp_path).platform("CDN", rate_limit_per_hour=50).rule("R", "CDN")
    for n in range(80):
        world.asset(f"IMG-{n:02d}", f"picture {n}".encode())
    world.manifests()
    queue(world, pg_url)
    three = [worker(procs, world, pg_url, "--exit-when-idle", "--concurrency", "3") for _ in "abc"]
    for proc in three:
        code, err = proc.finish(120)
        assert code == 0, err
    assert jobs_by_status(pg_url) == {"completed": 50, "deferred": 30}
    eligible = query(
        pg_url, "SELECT min(eligible_at), (SELECT min(started_at) FROM sync_jobs) FROM sync_jobs "
        "WHERE status = 'deferred'",
    )  # fmt: skip
    ((first_eligible, first_start),) = eligible
    assert (first_eligible - first_start).total_seconds() == pytest.approx(3600, abs=1)
    on_disk = list((tmp_path / "out" / "cdn").iterdir())
    assert len(on_disk) == 50
    told = query(pg_url, "SELECT message FROM sync_events_log WHERE event_type = 'deferred'")
    assert 1 <= len(told) <= 3, told  # the backlog is deferred in one step, not job by job
    assert sum(int(m.split(": ")[1].split()[0]) for (m,) in told) == 30, told
    status = start("status", "--state", pg_url, "-o", "json")
    assert status.finish()[0] == 0
    (cdn,) = json.loads("".join(status.lines))["platforms"]
    assert cdn["queued"] == 30 and cdn["up_to_date"] == 50


def test_sigterm_hands_the_job_back_within_10_seconds(
    tmp_path: Path, fake: FakePlatforms, pg_url: str, procs: list[Proc]
) -> None:
    fake.chunk_delay = 0.3
    world = vimeo_world(tmp_path, fake, 1, 8 * MiB)  # 32 chunks: about 10 s
    queue(world, pg_url)
    first = worker(procs, world, pg_url, "--concurrency", "1")
    mid_upload(fake, first, MiB)
    asked = time.monotonic()
    first.signal(signal.SIGTERM)
    code, err = first.finish(15)
    took = time.monotonic() - asked
    print(f"exited {took:.2f} s after SIGTERM: {err.strip()}")
    assert code == 0, err
    assert took < 10, took
    assert "1 handed back" in err + "".join(first.lines)
    (row,) = query(pg_url, "SELECT status, claimed_by FROM sync_jobs")
    assert row == ("pending", None)
    events = query(pg_url, "SELECT count(*) FROM sync_events_log WHERE event_type = 'handed_back'")
    assert events == [(1,)]
    fake.chunk_delay = 0
    second = worker(procs, world, pg_url, "--exit-when-idle")
    assert second.finish(60)[0] == 0
    assert jobs_by_status(pg_url) == {"completed": 1}
    check_videos(world, fake, pg_url)


def test_watch_queues_each_change_and_a_running_worker_does_it(
    tmp_path: Path, pg_url: str, procs: list[Proc]
) -> None:
    from test_watch import Watch, add_asset, copies

    world = World(tmp_path, pg_url).platform("CDN").platform("S3")
    world.rule("R-CDN", "CDN").rule("R-S3", "S3").asset("VID-A", b"first a")
    world.manifests()
    watch = Watch(world, "--queue")
    try:
        first = watch.cycle()
        assert first["level"] == "info", first
        assert jobs_by_status(pg_url) == {"pending": 2}  # queued, not run by the watch
        assert copies(world, "VID-A") == {}
        busy = worker(procs, world, pg_url, "--concurrency", "2")
        deadline = time.monotonic() + 30
        while jobs_by_status(pg_url) != {"completed": 2}:
            assert time.monotonic() < deadline, jobs_by_status(pg_url)
            time.sleep(0.1)
        add_asset(world, "VID-B", b"second b")
        watch.cycle()
        while jobs_by_status(pg_url) != {"completed": 4}:
            assert time.monotonic() < deadline + 30, jobs_by_status(pg_url)
            time.sleep(0.1)
        assert set(copies(world, "VID-B")) == {"cdn", "s3"}
        claimed = query(pg_url, "SELECT DISTINCT pid FROM sync_jobs j JOIN sync_workers w "
                        "ON w.worker_id = j.claimed_by")  # fmt: skip
        assert claimed == [(busy.pid,)]
        busy.signal(signal.SIGTERM)
        code, err = busy.finish(15)
        assert code == 0, err
        assert "4 completed" in err + "".join(busy.lines)
    finally:
        assert watch.stop()[0] == 0


def test_two_workers_wanting_one_rendition_make_it_once(
    tmp_path: Path, pg_url: str, procs: list[Proc]
) -> None:
    import io
    import os

    from PIL import Image

    picture = io.BytesIO()
    Image.frombytes("RGB", (1800, 1800), os.urandom(1800 * 1800 * 3)).save(picture, "PNG")
    rules = {"resize_images": True, "max_dimension": 64}
    world = World(tmp_path).platform("CDN-A").platform("CDN-B")
    world.rule("TO-A", "CDN-A", transform_rules=rules).rule("TO-B", "CDN-B", transform_rules=rules)
    world.asset("IMG-BIG", picture.getvalue(), file="big.png", asset_type="image")
    world.manifests()
    queue(world, pg_url)
    shared = tmp_path / "renditions"
    two = [
        worker(procs, world, pg_url, "--exit-when-idle", "--concurrency", "1",
               "--renditions", str(shared))
        for _ in "ab"
    ]  # fmt: skip
    for proc in two:
        code, err = proc.finish(120)
        assert code == 0, err
    assert jobs_by_status(pg_url) == {"completed": 2}
    made = query(
        pg_url, "SELECT details::json FROM sync_events_log WHERE event_type = "
        "'transform_complete' AND event_status = 'success'",
    )  # fmt: skip
    assert len(made) == 2
    assert len({d["rendition"] for (d,) in made}) == 1  # one rendition for both platforms
    assert sorted(d["cached"] for (d,) in made) == [False, True]  # made once, then found
    outs = [(tmp_path / "out" / p / "big.png").read_bytes() for p in ("cdn-a", "cdn-b")]
    assert outs[0] == outs[1] and len(outs[0]) < len(picture.getvalue())


def test_workers_killed_at_random_moments_lose_nothing_and_duplicate_nothing(
    tmp_path: Path, pg_url: str, s3_endpoint: str, bucket: str, procs: list[Proc]
) -> None:
    import random

    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    with_bucket(world, s3_endpoint, bucket, "k/")
    masters = {f"VID-{n:02d}": bytes([n]) * (64 * 1024 + n) for n in range(40)}
    for code, data in masters.items():
        world.asset(code, data)
    world.manifests()
    state = with_ttl(pg_url, 2)
    queue(world, state)
    chance = random.Random(17)
    for _ in range(5):
        victim = worker(procs, world, state, "--concurrency", "2")
        time.sleep(chance.uniform(0.8, 2.5))  # python start-up is most of the first second
        victim.signal(signal.SIGKILL)
        victim.finish(10)
    last = worker(procs, world, state, "--exit-when-idle", "--concurrency", "4")
    code, err = last.finish(180)
    assert code == 0, err
    assert jobs_by_status(pg_url) == {"completed": 80}
    once = query(pg_url, "SELECT asset_id, platform_id, count(*) FROM sync_jobs GROUP BY 1, 2")
    assert len(once) == 80 and {n for *_, n in once} == {1}
    folder = tmp_path / "out" / "cdn"
    objects = {p.name: p.read_bytes() for p in folder.iterdir() if not p.name.endswith(".part")}
    assert objects == {f"{c.lower()}.mp4": d for c, d in masters.items()}
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert sorted(o["Key"] for o in listed) == sorted(f"k/{c.lower()}.mp4" for c in masters)
    for item in listed:
        code = item["Key"][2:-4].upper()
        assert s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() == masters[code]
    recorded = query(pg_url, "SELECT sync_status, count(*) FROM platform_assets GROUP BY 1")
    assert recorded == [("synced", 80)]
    time.sleep(2.5)  # every victim's lease has run out by now, taken over or not
    fleet = start("workers", "--state", pg_url, "-o", "json")
    assert fleet.finish()[0] == 0
    states = {w["pid"]: w["state"] for w in json.loads("".join(fleet.lines))["workers"]}
    assert states.pop(last.pid) == "stopped"
    assert states and set(states.values()) == {"lost"}, states
