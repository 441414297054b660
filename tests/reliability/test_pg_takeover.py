"""A lease holder that dies or freezes mid-run, on a PostgreSQL state (issue 16): real
`reconcile` subprocesses uploading to a slow Vimeo (the loopback fake, 0.1 s per chunk of
256 KiB) under a lease of 3 s.

* SIGKILL: a second `reconcile` started at once waits for the lease to run out, takes it
  over within the TTL (+2 s), logs a `lock_takeover` naming the dead holder's pid and host,
  recovers the interrupted job and completes; nothing is recorded synced that did not land.
* SIGSTOP past the TTL: the same takeover; then the frozen holder is resumed and must write
  nothing more (every table as the second run left it), stop at once without sending more to
  the platform, and exit 1 with one line saying it lost its lock."""

from __future__ import annotations

import hashlib
import signal
import socket
import time
from pathlib import Path

from apiservers import FakePlatforms
from leasekit import MiB, Proc, lease, query, snapshot, start, vimeo_world, with_ttl, world_args
from planning import World

TTL = 3.0
ASSETS = 3
SIZE = 4 * MiB  # 16 chunks each: about 1.6 s per asset


def begin(procs: list[Proc], world: World, state: str, *more: str) -> Proc:
    proc = start(*world_args(world, state), "--parallel", "1", "-o", "jsonl", *more)
    procs.append(proc)
    return proc


def mid_upload(fake: FakePlatforms, proc: Proc) -> None:
    """Wait until ``proc`` has sent a good part (not all) of its first upload."""
    proc.wait_for(lambda e: e.get("event_type") == "upload_start")
    deadline = time.monotonic() + 30
    while fake.bytes_received() < SIZE // 3:
        assert time.monotonic() < deadline, "the upload did not get going"
        time.sleep(0.01)


def taken_over_by(url: str, proc: Proc, since: float) -> float:
    """Seconds from ``since`` until ``proc`` holds the lease."""
    deadline = since + 30
    while lease(url)["pid"] != proc.pid:
        assert time.monotonic() < deadline, f"pid {proc.pid} did not take the lease"
        time.sleep(0.02)
    return time.monotonic() - since


def landed(fake: FakePlatforms, remote_id: str) -> str | None:
    """The sha256 of the video ``/videos/N`` as the platform holds it, if whole."""
    upload = fake.uploads.get(remote_id.rsplit("/", 1)[-1])
    if upload is None or upload.video == "deleted" or len(upload.data) != upload.size:
        return None
    return hashlib.sha256(upload.data).hexdigest()


def check_consistent(url: str, world: World, fake: FakePlatforms) -> None:
    """Every job closed; every copy synced, its recorded checksum that of its master and of
    the bytes the platform holds."""
    jobs = query(url, "SELECT status, count(*) FROM sync_jobs GROUP BY status")
    assert {status for status, _ in jobs} <= {"completed", "failed"}, jobs
    copies = query(
        url,
        "SELECT sa.asset_code, pa.sync_status, pa.remote_checksum, pa.platform_asset_id "
        "FROM platform_assets pa JOIN source_assets sa ON sa.id = pa.source_asset_id",
    )
    assert len(copies) == ASSETS
    for code, status, checksum, remote in copies:
        master = (world.media / f"{code.lower()}.mp4").read_bytes()
        assert status == "synced", (code, status)
        assert checksum == hashlib.sha256(master).hexdigest(), code
        assert landed(fake, remote) == checksum, (code, remote)


def check_takeover_event(url: str, dead: Proc) -> None:
    (event,) = query(
        url,
        "SELECT message, details::json FROM sync_events_log WHERE event_type = 'lock_takeover'",
    )
    message, details = event
    host = socket.gethostname()
    said = f"took over the run lock of pid {dead.pid} on {host} (reconcile, since "
    assert message.startswith(said), message
    assert message.endswith("which stopped renewing its lease for longer than its 3 s"), message
    assert details["pid"] == dead.pid and details["host"] == host, details


def test_a_killed_holder_is_taken_over_within_its_ttl(
    tmp_path: Path, fake: FakePlatforms, pg_url: str, procs: list[Proc]
) -> None:
    fake.chunk_delay = 0.1
    world = vimeo_world(tmp_path, fake, ASSETS, SIZE)
    state = with_ttl(pg_url, TTL)
    first = begin(procs, world, state)
    mid_upload(fake, first)
    first.signal(signal.SIGKILL)
    killed = time.monotonic()
    last_beat = lease(pg_url)["heartbeat_at"]
    second = begin(procs, world, state, "--lock-timeout", "30")
    took = taken_over_by(pg_url, second, killed)
    code, err = second.finish()
    assert code == 0, err
    assert first.finish()[0] == -signal.SIGKILL
    print(f"takeover {took:.2f} s after the SIGKILL (TTL {TTL:g} s)")
    assert took <= TTL + 2, took
    acquired = lease(pg_url)["acquired_at"]
    assert (acquired - last_beat).total_seconds() >= TTL  # it waited for the lease to expire
    check_takeover_event(pg_url, first)
    recovered = query(pg_url, "SELECT count(*) FROM sync_events_log WHERE event_type = 'recovered'")
    assert recovered[0][0] >= 1  # the killed run's job, checked against the platform
    summary = second.events()[-1]["summary"]
    assert summary["failed"] == 0 and summary["completed"] >= ASSETS - 1, summary
    check_consistent(pg_url, world, fake)


def test_a_stopped_holder_resumed_after_a_takeover_writes_nothing_more(
    tmp_path: Path, fake: FakePlatforms, pg_url: str, procs: list[Proc]
) -> None:
    fake.chunk_delay = 0.1
    world = vimeo_world(tmp_path, fake, ASSETS, SIZE)
    state = with_ttl(pg_url, TTL)
    frozen = begin(procs, world, state)
    mid_upload(fake, frozen)
    frozen.signal(signal.SIGSTOP)
    stopped = time.monotonic()
    last_beat = lease(pg_url)["heartbeat_at"]
    second = begin(procs, world, state, "--lock-timeout", "30")
    took = taken_over_by(pg_url, second, stopped)
    code, err = second.finish()
    assert code == 0, err
    print(f"takeover {took:.2f} s after the SIGSTOP (TTL {TTL:g} s)")
    assert took <= TTL + 2, took
    assert (lease(pg_url)["acquired_at"] - last_beat).total_seconds() >= TTL
    check_takeover_event(pg_url, frozen)
    check_consistent(pg_url, world, fake)
    before = snapshot(pg_url)
    requests, videos = len(fake.requests), len(fake.uploads)
    sent = fake.bytes_received()
    resumed = time.monotonic()
    frozen.signal(signal.SIGCONT)
    code, err = frozen.finish(60)
    stopped_after = time.monotonic() - resumed
    assert snapshot(pg_url) == before  # not one row more, less or changed
    assert code == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: this run lost its lock on "), err
    assert f"to pid {second.pid} " in lines[0]
    after = fake.requests[requests:]
    print(f"resumed: exit {code} after {stopped_after:.2f} s, {after}, "
          f"{fake.bytes_received() - sent} bytes more")  # fmt: skip
    assert len(fake.uploads) == videos, after  # no new video made on the platform
    assert fake.bytes_received() - sent <= 256 * 1024, after  # at most the chunk in flight
    assert stopped_after < 5, stopped_after
    check_consistent(pg_url, world, fake)
