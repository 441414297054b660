"""Trust the bytes on S3, against a real S3 server on loopback (moto's standalone server):
what is recorded is what S3 says it holds, computed from the bytes streamed; a master that
changes during a multipart upload commits nothing; metadata anyone can write is never
trusted; recovery aborts only the multipart uploads this tool started."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from planning import World, apply_run, rows
from test_integrity import FAST, Rewriter

from reconciler.apply.run import apply_plan
from reconciler.apply.verify import verify
from reconciler.plan.planner import make_plan

from helpers import short_lease

BIG = 20 * 1024 * 1024 + 5  # three parts
LONG = 6 * 8 * 1024 * 1024 + 5  # seven parts: more than are read ahead of the first upload


@pytest.fixture
def bucket(s3_endpoint: str, aws_env: None) -> str:
    name = f"integrity-{uuid.uuid4().hex[:12]}"
    s3(s3_endpoint).create_bucket(Bucket=name)
    return name


def s3(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def world_on(
    tmp_path: Path, endpoint: str, bucket: str, state: str | None = None, **rule: object
) -> World:
    world = World(tmp_path, state)
    world.platform(
        "BACKUP", platform_type="cloud_storage", driver="s3", target=None, bucket=bucket,
        prefix="m/", region="us-east-1", endpoint_url=endpoint,
    )  # fmt: skip
    return world.rule("R", "BACKUP", **rule)


def body(endpoint: str, bucket: str, key: str) -> bytes:
    return s3(endpoint).get_object(Bucket=bucket, Key=key)["Body"].read()


def uploads(endpoint: str, bucket: str) -> list[str]:
    listing = s3(endpoint).list_multipart_uploads(Bucket=bucket)
    return sorted(u["UploadId"] for u in listing.get("Uploads", []))


def test_a_master_rewritten_during_a_multipart_upload_commits_nothing(
    tmp_path: Path, state_at: str, s3_endpoint: str, bucket: str
) -> None:
    """Defect 3: the parts after the rewrite carry other bytes; the whole is not the planned
    master, so the upload is aborted: no object, no open multipart upload, nothing synced."""
    world = world_on(tmp_path, s3_endpoint, bucket, state_at)
    world.asset("VID-BIG", os.urandom(LONG))
    manifests = world.manifests()
    plan = make_plan(manifests, world.store)
    changed = os.urandom(LONG)
    with world.store.session():
        result = apply_plan(
            manifests, world.store, plan, FAST,
            Rewriter(world.media / "vid-big.mp4", changed, when="progress"),
        )  # fmt: skip
    (job,) = result.jobs
    assert job.status == "failed" and "changed after it was planned" in (job.error or "")
    assert "Contents" not in s3(s3_endpoint).list_objects_v2(Bucket=bucket)
    assert uploads(s3_endpoint, bucket) == []
    assert rows(world, "SELECT sync_status FROM platform_assets") == [("failed",)]
    # the next run sends the master as it is now, and S3's own checksum backs the record
    again = apply_run(world, FAST)
    assert again.counts()["completed"] == 1
    assert body(s3_endpoint, bucket, "m/vid-big.mp4") == changed
    (remote,) = rows(world, "SELECT remote_checksum FROM platform_assets")[0]
    assert remote == hashlib.sha256(changed).hexdigest()
    assert verify(world.manifests(), world.store).ok == 1


@pytest.mark.parametrize("size", [3000, BIG])
def test_an_overwritten_object_with_forged_metadata_is_not_a_match(
    tmp_path: Path, state_at: str, s3_endpoint: str, bucket: str, size: int
) -> None:
    world = world_on(tmp_path, s3_endpoint, bucket, state_at)
    master = os.urandom(size)
    world.asset("VID-A", master)
    assert apply_run(world, FAST).counts()["completed"] == 1
    assert verify(world.manifests(), world.store).ok == 1
    forged = hashlib.sha256(master).hexdigest()
    s3(s3_endpoint).put_object(
        Bucket=bucket, Key="m/vid-a.mp4", Body=os.urandom(size), Metadata={"sha256": forged}
    )
    result = verify(world.manifests(), world.store)
    assert [c["conflict_type"] for c in result.conflicts] == ["remote_modified"]
    assert result.conflicts[0]["found"] != forged


def test_a_multipart_copy_verifies_by_its_recorded_composite_without_reading_it(
    tmp_path: Path, state_at: str, s3_endpoint: str, bucket: str
) -> None:
    world = world_on(tmp_path, s3_endpoint, bucket, state_at)
    world.asset("VID-BIG", os.urandom(BIG))
    apply_run(world, FAST)
    (recorded,) = rows(world, "SELECT remote_checksum FROM upload_sessions WHERE state = 'done'")[0]
    head = s3(s3_endpoint).head_object(Bucket=bucket, Key="m/vid-big.mp4", ChecksumMode="ENABLED")
    assert recorded.split("-")[0] == head["ChecksumSHA256"].split("-")[0]
    assert verify(world.manifests(), world.store).ok == 1


def test_a_create_over_a_foreign_object_is_a_conflict_or_an_adoption(
    tmp_path: Path, state_at: str, s3_endpoint: str, bucket: str
) -> None:
    """Defect 11 on S3: an object this tool did not make is never overwritten silently."""
    world = world_on(tmp_path, s3_endpoint, bucket, state_at)
    world.asset("VID-SAME", b"same bytes " * 100).asset("VID-OTHER", b"mine " * 100)
    client = s3(s3_endpoint)
    client.put_object(Bucket=bucket, Key="m/vid-same.mp4", Body=b"same bytes " * 100)
    client.put_object(Bucket=bucket, Key="m/vid-other.mp4", Body=b"someone else's")
    result = apply_run(world, FAST)
    by_asset = {j.action.asset: j for j in result.jobs}
    assert (by_asset["VID-SAME"].job_type, by_asset["VID-SAME"].status) == ("adopt", "completed")
    assert by_asset["VID-OTHER"].status == "failed"
    assert "did not make" in (by_asset["VID-OTHER"].error or "")
    assert body(s3_endpoint, bucket, "m/vid-other.mp4") == b"someone else's"
    assert rows(world, "SELECT conflict_type FROM sync_conflicts") == [("foreign_object",)]
    assert rows(world, "SELECT job_type FROM sync_jobs ORDER BY job_type") == [
        ("adopt",),
        ("initial",),
    ]


def test_recovery_aborts_only_the_multipart_uploads_this_tool_recorded(
    tmp_path: Path, state_at: str, s3_endpoint: str, bucket: str
) -> None:
    """Defect 12: another writer's multipart upload under the same prefix survives a
    recovery; ours, left by a kill -9, is aborted."""
    world = world_on(tmp_path, s3_endpoint, bucket, short_lease(state_at))
    world.asset("VID-HUGE", os.urandom(60 * 1024 * 1024))
    world.manifests()
    theirs = s3(s3_endpoint).create_multipart_upload(Bucket=bucket, Key="m/theirs.bin")
    command = [sys.executable, "-m", "reconciler", *world.cli_args(), "-o", "jsonl",
               "--parallel", "1"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ)
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    for line in process.stdout:  # killed once its own multipart upload has started
        if time.monotonic() > deadline or len(uploads(s3_endpoint, bucket)) >= 2:
            break
        if json.loads(line).get("event_type") == "upload_start":
            time.sleep(0.3)
    process.kill()
    process.wait()
    started = uploads(s3_endpoint, bucket)
    assert theirs["UploadId"] in started and len(started) == 2, started
    again = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert again.returncode == 0, again.stdout + again.stderr
    assert uploads(s3_endpoint, bucket) == [theirs["UploadId"]]
    head = s3(s3_endpoint).head_object(Bucket=bucket, Key="m/vid-huge.mp4", ChecksumMode="ENABLED")
    assert head["ContentLength"] == 60 * 1024 * 1024
    digest = base64.b64decode(head["ChecksumSHA256"].split("-")[0])
    assert len(digest) == 32
