"""The http, youtube and vimeo drivers against loopback servers that speak their protocols
(tests/apiservers.py): uploads, resumption from the offset the platform confirms, retries on
429 and 503, expired tokens, processing that fails, a spent quota, and a restart of the tool
killed at 60 % of an upload."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from apiservers import API_KEY, REFRESH_TOKEN, VIMEO_TOKEN, FakePlatforms
from planning import World, apply_run, rows

from reconciler.apply.run import ApplyOptions
from reconciler.apply.verify import verify

from helpers import payload_of, short_lease

FAST = ApplyOptions(parallel=1, backoff_base=0.001, backoff_max=0.05)
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CDN_KEY", API_KEY)
    monkeypatch.setenv("TEST_YT_REFRESH", REFRESH_TOKEN)
    monkeypatch.setenv("TEST_VIMEO_TOKEN", VIMEO_TOKEN)


def platforms(fake: FakePlatforms) -> dict[str, dict[str, Any]]:
    """The Platform specs of the three API drivers, pointed at the fake servers."""
    return {
        "CDN": {
            "driver": "http",
            "api_endpoint": f"{fake.url}/cdn",
            "auth_type": "api_key",
            "auth": {"secret_env": "TEST_CDN_KEY"},
            "target": None,
        },
        "YOUTUBE": {
            "driver": "youtube",
            "platform_type": "video_platform",
            "api_endpoint": f"{fake.url}/youtube/v3",
            "token_url": f"{fake.url}/token",
            "auth_type": "oauth2",
            "auth": {"secret_env": "TEST_YT_REFRESH"},
            "chunk_size_kib": 256,
            "poll_interval": 0,
            "target": None,
        },
        "VIMEO": {
            "driver": "vimeo",
            "platform_type": "video_platform",
            "api_endpoint": f"{fake.url}/vimeo",
            "auth_type": "oauth2",
            "auth": {"secret_env": "TEST_VIMEO_TOKEN"},
            "chunk_size_kib": 256,
            "poll_interval": 0,
            "target": None,
        },
    }


def world_for(
    tmp_path: Path, fake: FakePlatforms, platform: str, state: str | None = None, **extra: Any
) -> World:
    spec = {**platforms(fake)[platform], **extra}
    return World(tmp_path, state).platform(platform, **spec).rule("R", platform)


def apply(world: World, options: ApplyOptions = FAST, **plan_options: Any):
    return apply_run(world, options, **plan_options)


def placement(world: World, asset: str) -> tuple:
    (row,) = rows(
        world,
        "SELECT pa.sync_status, pa.platform_asset_id, pa.remote_checksum FROM platform_assets pa "
        "JOIN source_assets sa ON sa.id = pa.source_asset_id WHERE sa.asset_code = ?",
        [asset],
    )
    return row


def events(world: World, kind: str) -> list[tuple[str, str]]:
    return rows(
        world,
        "SELECT event_status, message FROM sync_events_log WHERE event_type = ? ORDER BY id",
        [kind],
    )


def content(size: int, seed: int = 1) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


# -- http ---------------------------------------------------------------------------------------
def test_http_upload_stat_metadata_and_delete(tmp_path: Path, fake: FakePlatforms) -> None:
    world = world_for(tmp_path, fake, "CDN").asset("IMG-A", content(300_000), file="a.jpg",
                                                   asset_type="image")  # fmt: skip
    result = apply(world)
    assert result.counts() == {"completed": 1, "failed": 0, "deferred": 0}
    (obj,) = fake.objects.values()
    assert obj["data"] == content(300_000) and obj["key"].endswith("a.jpg")
    status, remote_id, checksum = placement(world, "IMG-A")
    assert (status, remote_id, checksum) == ("synced", obj["id"], obj["sha256"])
    # a metadata change is a PATCH, no bytes
    world.asset("IMG-A", content(300_000), file="a.jpg", asset_type="image", description="new")
    assert apply(world).counts()["completed"] == 1
    assert obj["metadata"]["description"] == "new" and len(fake.objects) == 1
    # verify asks the platform by id: the copy is there, then it is not
    verified = verify(world.manifests(), world.store)
    assert (verified.checked, verified.ok) == (1, 1)
    del fake.objects[obj["id"]]
    assert verify(world.manifests(), world.store).ok == 0
    fake.objects[obj["id"]] = obj
    # pruned: deleted by id
    world.remove("Asset", "IMG-A").asset("IMG-B", b"b" * 10, file="b.jpg")
    apply(world, prune=True, force=True)
    assert obj["id"] not in fake.objects


@pytest.mark.parametrize("platform", ["CDN", "YOUTUBE", "VIMEO"])
def test_a_new_version_replaces_the_old_object(
    tmp_path: Path, fake: FakePlatforms, platform: str
) -> None:
    world = world_for(tmp_path, fake, platform).asset(
        "VID-A", content(100_000, 1), file="a.mp4", mime_type="video/mp4"
    )
    assert apply(world).counts()["completed"] == 1
    old_id = placement(world, "VID-A")[1]
    world.write_file("a.mp4", content(120_000, 2))
    assert apply(world).counts()["completed"] == 1
    status, new_id, checksum = placement(world, "VID-A")
    assert status == "synced" and new_id != old_id
    assert checksum == hashlib.sha256(content(120_000, 2)).hexdigest()
    if platform == "CDN":
        assert list(fake.objects) == [new_id]
    elif platform == "YOUTUBE":
        assert list(fake.videos) == [new_id]
    else:
        assert [u.video for u in fake.uploads.values()] == ["deleted", None]


def test_http_429_and_503_are_retried_honouring_retry_after(
    tmp_path: Path, fake: FakePlatforms
) -> None:
    world = world_for(tmp_path, fake, "CDN").asset("IMG-A", b"x" * 5000, file="a.jpg")
    fake.fail_once("POST", "/cdn/assets", 429, {"Retry-After": "0.03"})
    fake.fail_once("POST", "/cdn/assets", 503)
    result = apply(world)
    assert result.counts()["completed"] == 1 and result.jobs[0].retries == 2
    retries = events(world, "retry")
    assert "HTTP 429" in retries[0][1] and "retrying in 0.0" in retries[0][1]
    assert "HTTP 503" in retries[1][1]


@pytest.mark.parametrize(
    ("status", "expect"), [(400, "HTTP 400"), (413, "HTTP 413"), (401, "credentials")]
)
def test_http_other_4xx_fail_at_once(
    tmp_path: Path, fake: FakePlatforms, status: int, expect: str
) -> None:
    world = world_for(tmp_path, fake, "CDN").asset("IMG-A", b"x" * 5000, file="a.jpg")
    fake.fail_once("POST", "/cdn/assets", status)
    result = apply(world)
    (job,) = result.jobs
    assert (job.status, job.retries) == ("failed", 0)
    assert expect in (job.error or "")
    assert placement(world, "IMG-A")[0] == "failed"
    assert fake.objects == {}


def test_http_health_endpoint_down_fails_the_platforms_jobs(
    tmp_path: Path, fake: FakePlatforms
) -> None:
    fake.health_status = 503
    world = world_for(tmp_path, fake, "CDN", health_path="health").asset("IMG-A", b"x" * 10)
    (job,) = apply(world).jobs
    assert job.status == "failed" and "down" in (job.error or "")
    assert not any(m == "POST" for m, _ in fake.requests)


# -- YouTube ------------------------------------------------------------------------------------
def yt(tmp_path: Path, fake: FakePlatforms, size: int = int(1.5 * MiB), **extra: Any) -> World:
    return world_for(tmp_path, fake, "YOUTUBE", **extra).asset(
        "VID-A", content(size), file="a.mp4", mime_type="video/mp4", title="Launch"
    )


def test_youtube_resumable_upload_in_chunks_then_processing(
    tmp_path: Path, fake: FakePlatforms
) -> None:
    fake.processing_polls = 2
    world = yt(tmp_path, fake)
    result = apply(world)
    assert result.counts() == {"completed": 1, "failed": 0, "deferred": 0}
    (upload,) = fake.uploads.values()
    assert bytes(upload.data) == content(int(1.5 * MiB))
    assert upload.offsets == [i * 256 * 1024 for i in range(6)]  # 256 KiB chunks
    assert upload.metadata["snippet"]["title"] == "Launch"
    (video,) = fake.videos.values()
    assert video.polls == 3  # synced only once processing succeeded
    status, video_id, checksum = placement(world, "VID-A")
    assert (status, video_id) == ("synced", video.id)
    assert checksum == hashlib.sha256(content(int(1.5 * MiB))).hexdigest()
    (session,) = rows(world, "SELECT state, remote_id, bytes_confirmed FROM upload_sessions")
    assert session == ("done", video.id, int(1.5 * MiB))
    # a metadata change is videos.update: no new upload
    world.asset("VID-A", content(int(1.5 * MiB)), file="a.mp4", mime_type="video/mp4",
                title="Launch (final)")  # fmt: skip
    assert apply(world).counts()["completed"] == 1
    assert len(fake.uploads) == 1 and video.metadata["snippet"]["title"] == "Launch (final)"
    assert ("PUT", "/youtube/v3/videos") in fake.requests


def test_youtube_interrupted_upload_resumes_from_the_confirmed_offset(
    tmp_path: Path, fake: FakePlatforms
) -> None:
    size = int(1.5 * MiB)
    fake.drop_fraction = 0.6  # a 503 once 60 % arrived: the retry asks where it stopped
    (job,) = apply(yt(tmp_path, fake, size)).jobs
    assert (job.status, job.retries) == ("completed", 1)
    (upload,) = fake.uploads.values()
    assert fake.status_queries == 1
    assert fake.bytes_received() == size  # nothing sent twice
    assert upload.offsets == [i * 256 * 1024 for i in range(6)]


def test_youtube_expired_token_is_refreshed(tmp_path: Path, fake: FakePlatforms) -> None:
    world = yt(tmp_path, fake, 300_000)
    assert apply(world).counts()["completed"] == 1
    calls = fake.token_calls
    fake.tokens.clear()  # every access token handed out so far has expired: 401
    world.asset("VID-A", content(300_000), file="a.mp4", mime_type="video/mp4", title="T2")
    assert apply(world).counts()["completed"] == 1
    assert fake.token_calls == calls + 1
    (video,) = fake.videos.values()
    assert video.metadata["snippet"]["title"] == "T2"


def test_youtube_a_refused_refresh_token_fails_clearly(
    tmp_path: Path, fake: FakePlatforms, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_YT_REFRESH", "refused-token-3141")
    world = yt(tmp_path, fake, 1000)
    (job,) = apply(world).jobs
    assert job.status == "failed" and "refresh" in (job.error or "")
    assert "refused-token-3141" not in (job.error or "")  # the secret is never echoed


def test_youtube_processing_that_fails_fails_the_job(tmp_path: Path, fake: FakePlatforms) -> None:
    fake.processing_outcome = "failed"
    world = yt(tmp_path, fake, 300_000)
    (job,) = apply(world).jobs
    assert job.status == "failed"
    assert "YouTube did not accept" in (job.error or "") and "codec" in (job.error or "")
    assert placement(world, "VID-A")[0] == "failed"
    assert events(world, "upload_complete")[-1][0] == "failed"
    # the session is forgotten: the next run uploads again rather than trusting that video
    assert rows(world, "SELECT count(*) FROM upload_sessions") == [(0,)]
    fake.processing_outcome = "succeeded"
    assert apply(world).counts()["completed"] == 1 and len(fake.uploads) == 2


def test_youtube_quota_counted_in_the_state_file_defers_jobs(
    tmp_path: Path, fake: FakePlatforms
) -> None:
    world = yt(tmp_path, fake, 300_000, quota_daily_units=2000).asset(
        "VID-B", content(200_000, 2), file="b.mp4", mime_type="video/mp4"
    )
    result = apply(world)
    assert result.counts() == {"completed": 1, "failed": 0, "deferred": 1}
    deferred = next(j for j in result.jobs if j.status == "deferred")
    assert "quota" in (deferred.error or "") and deferred.eligible_at is not None
    assert deferred.eligible_at > datetime.now(UTC).replace(tzinfo=None)
    assert len(fake.uploads) == 1  # the second never started
    assert events(world, "deferred")[-1][0] == "deferred"
    (used,) = rows(world, "SELECT units_used FROM platform_quota")
    assert used[0] == 1600 + 2  # one upload, two polls of videos.list
    assert int(result.exit_code) == 3
    # still spent on the next run: deferred again without a call
    before = len(fake.requests)
    again = apply(world)
    assert again.counts()["deferred"] == 1
    assert not any(p.startswith("/upload") for _, p in fake.requests[before:])


def test_youtube_quota_exceeded_answer_defers(tmp_path: Path, fake: FakePlatforms) -> None:
    fake.quota_exceeded = True
    world = yt(tmp_path, fake, 300_000)
    (job,) = apply(world).jobs
    assert job.status == "deferred" and "YouTube says the daily quota" in (job.error or "")
    assert rows(world, "SELECT exhausted FROM platform_quota") == [(True,)]


# -- Vimeo --------------------------------------------------------------------------------------
def vimeo(tmp_path: Path, fake: FakePlatforms, size: int = int(1.5 * MiB)) -> World:
    return world_for(tmp_path, fake, "VIMEO").asset(
        "VID-A", content(size), file="a.mp4", mime_type="video/mp4", title="Tutorial"
    )


def test_vimeo_tus_upload_then_transcode(tmp_path: Path, fake: FakePlatforms) -> None:
    world = vimeo(tmp_path, fake)
    result = apply(world)
    assert result.counts() == {"completed": 1, "failed": 0, "deferred": 0}
    (upload,) = fake.uploads.values()
    assert bytes(upload.data) == content(int(1.5 * MiB))
    assert upload.metadata["upload"] == {"approach": "tus", "size": int(1.5 * MiB)}
    assert upload.metadata["name"] == "Tutorial"
    status, uri, _ = placement(world, "VID-A")
    assert status == "synced" and uri == f"/videos/{upload.id}"
    world.remove("Asset", "VID-A").asset("VID-B", b"b" * 100, file="b.mp4", mime_type="video/mp4")
    apply(world, prune=True, force=True)
    assert upload.video == "deleted"


def test_vimeo_interrupted_upload_resumes_from_head_offset(
    tmp_path: Path, fake: FakePlatforms
) -> None:
    size = int(1.5 * MiB)
    fake.drop_fraction = 0.6
    (job,) = apply(vimeo(tmp_path, fake, size)).jobs
    assert (job.status, job.retries) == ("completed", 1)
    (upload,) = fake.uploads.values()
    assert fake.bytes_received() == size
    assert ("HEAD", f"/vimeo-upload/{upload.id}") in fake.requests
    assert upload.offsets == sorted(set(upload.offsets))


def test_vimeo_429_and_rate_limit_headers(
    tmp_path: Path, fake: FakePlatforms, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reconciler.drivers.vimeo as vimeo_module

    slept: list[float] = []

    class Clock:
        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(seconds: float) -> None:
            slept.append(seconds)

    monkeypatch.setattr(vimeo_module, "time", Clock)
    fake.rate_remaining = 2  # the third API call empties the budget
    fake.fail_once("POST", "/vimeo/me/videos", 429, {"Retry-After": "0"})
    world = vimeo(tmp_path, fake, 100_000)
    (job,) = apply(world).jobs
    assert (job.status, job.retries) == ("completed", 1)
    assert "rate limited" in events(world, "retry")[0][1]
    assert any(4 < s <= 5 for s in slept)  # waited for X-RateLimit-Reset, 5 s ahead


def test_vimeo_transcode_error_fails_the_job(tmp_path: Path, fake: FakePlatforms) -> None:
    fake.processing_outcome = "failed"
    world = vimeo(tmp_path, fake, 100_000)
    (job,) = apply(world).jobs
    assert job.status == "failed" and "transcode error" in (job.error or "")


# -- a restart of the tool, killed at 60 % -------------------------------------------------------
def write_manifests(
    folder: Path, fake: FakePlatforms, platform: str, size: int, state: str | None = None
) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.mp4").write_bytes(content(size, 7))
    spec = {
        "platform_name": platform.title(),
        "platform_type": "video_platform",
        **{k: v for k, v in platforms(fake)[platform].items() if v is not None},
    }
    docs = [
        {"apiVersion": "mediasync/v1", "kind": "Platform", "metadata": {"code": platform},
         "spec": spec},
        {"apiVersion": "mediasync/v1", "kind": "Asset", "metadata": {"code": "VID-A"},
         "spec": {"title": "A", "asset_type": "video", "category": "marketing",
                  "file": "a.mp4", "mime_type": "video/mp4"}},
        {"apiVersion": "mediasync/v1", "kind": "SyncRule", "metadata": {"code": "R"},
         "spec": {"platform": platform, "source_category": "all", "asset_types": "all",
                  "sync_mode": "full"}},
    ]  # fmt: skip
    (folder / "all.yaml").write_text(yaml.safe_dump_all(docs))
    state = state or str(folder.parent / "state" / "reconciler.duckdb")
    return [sys.executable, "-m", "reconciler", "--manifests", str(folder), "--state", state,
            "--output", "jsonl"]  # fmt: skip


@pytest.mark.parametrize("platform", ["YOUTUBE", "VIMEO"])
def test_killed_at_60_percent_the_next_run_resumes_from_the_offset(
    tmp_path: Path, state_at: str, fake: FakePlatforms, platform: str
) -> None:
    size = 4 * MiB
    command = write_manifests(tmp_path / "manifests", fake, platform, size, short_lease(state_at))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    fake.stall_fraction = 0.6
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert fake.stalled.wait(60), "the upload never reached 60 %"
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    (upload,) = fake.uploads.values()
    arrived = len(upload.data)
    assert 0.6 * size <= arrived < size
    fake.release.set()
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    lines = [json.loads(line) for line in second.stdout.splitlines()]
    assert lines[-1]["summary"]["completed"] == 1, lines[-1]
    # the same upload went on where the platform said it stopped: no byte was sent twice
    assert list(fake.uploads.values()) == [upload]
    assert bytes(upload.data) == content(size, 7)
    assert fake.bytes_received() == size
    assert arrived in upload.offsets and upload.offsets == sorted(upload.offsets)


@pytest.mark.parametrize("platform", ["YOUTUBE", "VIMEO"])
def test_a_changed_file_starts_over(
    tmp_path: Path, state_at: str, fake: FakePlatforms, platform: str
) -> None:
    size = 2 * MiB
    command = write_manifests(tmp_path / "manifests", fake, platform, size, short_lease(state_at))
    fake.stall_fraction = 0.6
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert fake.stalled.wait(60)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    fake.release.set()
    (tmp_path / "manifests" / "a.mp4").write_bytes(content(size, 8))
    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    old, new = fake.uploads.values()
    assert len(old.data) < size and bytes(new.data) == content(size, 8)
    assert new.offsets[0] == 0


@pytest.mark.parametrize("platform", ["CDN", "YOUTUBE", "VIMEO"])
def test_a_stop_during_an_upload_cancels_it_and_keeps_the_session(
    tmp_path: Path, fake: FakePlatforms, platform: str
) -> None:
    from reconciler.drivers import driver_for
    from reconciler.drivers.base import Cancelled
    from reconciler.drivers.state import DriverState
    from reconciler.store.sessions import StoredSessions

    world = world_for(tmp_path, fake, platform).asset("VID-A", b"", file="a.mp4")
    source = world.media / "a.mp4"
    source.write_bytes(content(MiB))
    manifests = world.manifests()
    with world.store.writing():
        pass  # the state file, migrated
    driver = driver_for(manifests.platforms[platform], StoredSessions(world.store))

    def stop_halfway(sent: int) -> None:
        if sent >= MiB // 2:
            raise Cancelled("stopping")

    with pytest.raises(Cancelled):
        driver.upload(payload_of(source), "a.mp4", {"code": "VID-A"}, stop_halfway)
    session = DriverState(StoredSessions(world.store), platform).session("a.mp4")
    if platform == "CDN":  # nothing half-made; the intent (its idempotency key) is kept
        assert fake.objects == {}
        assert session is not None and (session.state, session.remote_id) == ("uploading", None)
    else:
        assert session is not None and session.state == "uploading"
        assert session.bytes_confirmed < MiB


@pytest.mark.parametrize("why", ["lost", "changed"])
def test_vimeo_deletes_the_video_of_an_upload_it_starts_over(
    tmp_path: Path, fake: FakePlatforms, why: str
) -> None:
    """Defect 13: the server lost the upload (HEAD 404), or the file changed: the new upload
    gets a new video, and the old, empty one is deleted, not left in the account."""
    from reconciler.drivers import driver_for
    from reconciler.drivers.base import Cancelled
    from reconciler.store.sessions import StoredSessions

    world = world_for(tmp_path, fake, "VIMEO").asset("VID-A", b"", file="a.mp4")
    source = world.media / "a.mp4"
    source.write_bytes(content(MiB))
    manifests = world.manifests()
    with world.store.writing():
        pass
    driver = driver_for(manifests.platforms["VIMEO"], StoredSessions(world.store))

    def stop_halfway(sent: int) -> None:
        if sent >= MiB // 2:
            raise Cancelled("stopping")

    with pytest.raises(Cancelled):
        driver.upload(payload_of(source), "a.mp4", {"code": "VID-A"}, stop_halfway)
    driver.finish()
    (first,) = fake.uploads.values()
    if why == "lost":
        fake.lost.add(first.id)
    else:
        source.write_bytes(content(MiB, 2))
    assert apply(world).counts()["completed"] == 1
    assert first.video == "deleted"
    finished = [u for u in fake.uploads.values() if u is not first]
    assert len(finished) == 1 and bytes(finished[0].data) == source.read_bytes()
