"""Target faults on real file systems: a target that cannot be written, and one that fills up
in the middle of a file. Jobs fail with clear messages; the masters are never modified.

Both targets are tmpfs mounts made by the test (the suite runs as root in CI, where DAC
permissions alone would not stop a write): a read-only mount, and a 1 MiB one that a 3 MiB
master cannot fit.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from planning import World
from test_apply import FAST, apply, rows

from reconciler.observe.sources import sha256_file


@contextmanager
def mounted(path: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:  # an ordinary user: plain permissions are enough for read-only
        if not read_only:
            raise AssertionError("a size-limited target needs root to mount a tmpfs")
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    options = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def masters(world: World) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in world.media.iterdir()}


@pytest.mark.slow
def test_a_target_without_write_permission(tmp_path: Path) -> None:
    world = World(tmp_path).platform("NAS", target=str(tmp_path / "ro")).rule("R", "NAS")
    world.asset("VID-A", b"a" * 5000).asset("VID-B", b"b" * 5000)
    before = masters(world)
    with mounted(tmp_path / "ro", "1m", read_only=True):
        result = apply(world)
    assert {j.status for j in result.jobs} == {"failed"}
    for job in result.jobs:
        assert job.error is not None
        assert (
            "not writable" in job.error
            or "Read-only" in job.error
            or ("Permission denied" in job.error)
        ), job.error
    assert rows(world, "SELECT DISTINCT status FROM sync_jobs") == [("failed",)]
    assert rows(world, "SELECT DISTINCT health_status FROM sync_platforms") == [("down",)]
    assert masters(world) == before


@pytest.mark.slow
def test_a_target_that_fills_up_mid_file(tmp_path: Path) -> None:
    world = World(tmp_path).platform("NAS", target=str(tmp_path / "small")).rule("R", "NAS")
    world.asset("VID-SMALL", b"s" * 100_000).asset("VID-BIG", os.urandom(3 * 1024 * 1024))
    before = masters(world)
    with mounted(tmp_path / "small", "1m"):
        # one at a time: run side by side, the big file could take the space the small one
        # needs, and which of them fails would depend on the scheduler
        result = apply(world, dataclasses.replace(FAST, parallel=1))
        jobs = {j.action.asset: j for j in result.jobs}
        assert jobs["VID-SMALL"].status == "completed"
        big = jobs["VID-BIG"]
        assert big.status == "failed" and big.retries == 0  # no space: permanent
        assert big.error is not None and "no space left on the target" in big.error
        leftovers = [p.name for p in (tmp_path / "small").rglob("*") if p.is_file()]
        assert leftovers == ["vid-small.mp4"]  # the partial file was removed
    assert masters(world) == before
    assert rows(
        world,
        "SELECT sa.asset_code, pa.sync_status FROM platform_assets pa JOIN "
        "source_assets sa ON sa.id = pa.source_asset_id ORDER BY 1",
    ) == [("VID-BIG", "failed"), ("VID-SMALL", "synced")]
