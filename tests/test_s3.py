"""The s3 driver against a real S3 server started on loopback (moto's standalone server)."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import boto3
from planning import World
from test_apply import apply, rows

from reconciler.apply.verify import verify


def composite(data: bytes, part: int = 8 * 1024 * 1024) -> str:
    """S3's checksum of a multipart object: the SHA-256 of its parts' SHA-256s."""
    digests = b"".join(
        hashlib.sha256(data[i : i + part]).digest() for i in range(0, len(data), part)
    )
    return base64.b64encode(hashlib.sha256(digests).digest()).decode()


def client(endpoint: str):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def s3_world(tmp_path: Path, endpoint: str, bucket: str, state: str | None = None) -> World:
    world = World(tmp_path, state)
    world.platform(
        "BACKUP",
        platform_type="cloud_storage",
        driver="s3",
        target=None,
        bucket=bucket,
        prefix="masters/",
        region="us-east-1",
        endpoint_url=endpoint,
    )
    world.rule("ALL", "BACKUP")
    world.asset("VID-SMALL", b"small master " * 10)
    return world


def test_apply_uploads_with_sha256_and_verifies(
    tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    world = s3_world(tmp_path, s3_endpoint, bucket)
    big = os.urandom(20 * 1024 * 1024 + 5)  # over the multipart threshold
    world.asset("VID-BIG", big)
    result = apply(world)
    assert result.counts()["completed"] == 2, [j.error for j in result.jobs]
    s3 = client(s3_endpoint)
    head = s3.head_object(Bucket=bucket, Key="masters/vid-big.mp4", ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(big)
    assert "sha256" not in head["Metadata"]  # nothing anyone could forge is relied on
    assert head["ETag"].strip('"').endswith("-3")  # it went in three parts
    assert head["ChecksumSHA256"].split("-")[0] == composite(big)  # S3's own, part by part
    body = s3.get_object(Bucket=bucket, Key="masters/vid-small.mp4")["Body"].read()
    assert body == b"small master " * 10
    assert rows(
        world, "SELECT DISTINCT sync_status, local_checksum = remote_checksum FROM platform_assets"
    ) == [("synced", True)]
    ids = [r[0] for r in rows(world, "SELECT platform_asset_id FROM platform_assets ORDER BY id")]
    assert ids == [
        f"s3://{bucket}/masters/vid-big.mp4",
        f"s3://{bucket}/masters/vid-small.mp4",
    ]
    assert world.plan().summary()["noop"] == 2


def test_verify_detects_changes_made_on_the_bucket(
    tmp_path: Path, s3_endpoint: str, bucket: str
) -> None:
    world = s3_world(tmp_path, s3_endpoint, bucket)
    world.asset("IMG-OTHER", b"other")
    apply(world)
    s3 = client(s3_endpoint)
    s3.put_object(Bucket=bucket, Key="masters/vid-small.mp4", Body=b"overwritten")
    s3.delete_object(Bucket=bucket, Key="masters/img-other.mp4")
    result = verify(world.manifests(), world.store)
    assert sorted((c["asset"], c["conflict_type"]) for c in result.conflicts) == [
        ("IMG-OTHER", "remote_deleted"),
        ("VID-SMALL", "remote_modified"),
    ]
    assert result.health["BACKUP"][0] == "healthy"


def test_metadata_update_and_delete(tmp_path: Path, s3_endpoint: str, bucket: str) -> None:
    world = s3_world(tmp_path, s3_endpoint, bucket)
    apply(world)
    world.asset("VID-SMALL", b"small master " * 10, title="Renamed", mime_type="video/mp4")
    (job,) = apply(world).jobs
    assert (job.job_type, job.status) == ("metadata", "completed")
    world.asset("VID-GONE", b"gone soon")
    apply(world)
    world.remove("Asset", "VID-GONE")
    (job,) = apply(world, prune=True, force=True).jobs
    assert (job.job_type, job.status) == ("delete", "completed")
    keys = [o["Key"] for o in client(s3_endpoint).list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["masters/vid-small.mp4"]


def test_a_missing_bucket_means_the_platform_is_down(
    tmp_path: Path, s3_endpoint: str, aws_env: None
) -> None:
    world = s3_world(tmp_path, s3_endpoint, "no-such-bucket-here")
    result = apply(world)
    (job,) = result.jobs
    assert job.status == "failed"
    assert job.error.startswith("the platform is down: bucket no-such-bucket-here: ")
    assert int(result.exit_code) == 3
    assert rows(world, "SELECT health_status FROM sync_platforms") == [("down",)]
