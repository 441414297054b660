"""Defect 5: a real `reconcile` killed with SIGKILL in the middle of updates that go through a
transform (encrypted copies), on the local driver and on S3. The killed jobs had recorded what
they were about to write, so the next plain `reconcile` recognises its own uploads: it
converges, every copy decrypts to its master, and no conflict claims a copy was changed
outside reconcile."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3
import pytest
from planning import World, rows

from reconciler.transforms.crypto import decrypt_file

from helpers import short_lease

ASSETS = 60
SIZE = 2 * 1024 * 1024
KEY_HEX = "22" * 32


def build(
    tmp_path: Path, driver: str, endpoint: str | None = None, state: str | None = None
) -> World:
    world = World(tmp_path, state)
    if driver == "s3":
        bucket = f"kill-{uuid.uuid4().hex[:10]}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        world.platform("BACKUP", platform_type="cloud_storage", driver="s3", target=None,
                       bucket=bucket, region="us-east-1", endpoint_url=endpoint)  # fmt: skip
        world.bucket = bucket  # type: ignore[attr-defined]
    else:
        world.platform("BACKUP", platform_type="cloud_storage")
    world.rule(
        "R", "BACKUP",
        transform_rules={"encrypt": True, "encryption_key": {"secret_env": "KILL_TEST_KEY"}},
    )  # fmt: skip
    rng = random.Random(5)
    for i in range(ASSETS):
        world.asset(f"VID-{i:02d}", rng.randbytes(SIZE))
    world.manifests()
    return world


def command(world: World) -> list[str]:
    return [sys.executable, "-m", "reconciler", *world.cli_args(), "--parallel", "2",
            "-o", "jsonl"]  # fmt: skip


def copy_of(world: World, endpoint: str | None, key: str) -> bytes:
    if endpoint is None:
        return (world.root / "out" / "backup" / key).read_bytes()
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket = world.bucket  # type: ignore[attr-defined]
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["local", "s3"])
def test_a_kill_during_transformed_updates_converges_without_false_conflicts(
    tmp_path: Path,
    state_at: str,
    driver: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KILL_TEST_KEY", KEY_HEX)
    endpoint = None
    if driver == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        request.getfixturevalue("aws_env")
    world = build(tmp_path, driver, endpoint, short_lease(state_at))
    first = subprocess.run(command(world), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr
    rng = random.Random(9)
    for i in range(ASSETS):  # every master rewritten: every copy is an update
        world.write_file(f"vid-{i:02d}.mp4", rng.randbytes(SIZE))
    process = subprocess.Popen(command(world), stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    started = 0
    for line in process.stdout:  # killed once a few transformed updates are under way
        if json.loads(line).get("event_type") == "transform_complete":
            started += 1
            if started == 5:
                time.sleep(random.Random(driver).uniform(0.0, 0.3))
                break
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    again = subprocess.run(command(world), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr
    assert rows(world, "SELECT conflict_type, count(*) FROM sync_conflicts GROUP BY 1") == []
    assert {a.action for a in world.plan().actions} == {"noop"}
    key = bytes.fromhex(KEY_HEX)
    for i in range(ASSETS):
        sealed = world.root / "sealed"
        sealed.write_bytes(copy_of(world, endpoint, f"vid-{i:02d}.mp4.enc"))
        decrypt_file(sealed, world.root / "plain", key)
        assert (world.root / "plain").read_bytes() == (
            world.media / f"vid-{i:02d}.mp4"
        ).read_bytes()
    recovered = rows(world, "SELECT count(*) FROM sync_events_log WHERE event_type = 'recovered'")
    assert recovered[0][0] >= 1  # the kill did leave jobs to recover
