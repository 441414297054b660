"""Crash safety: a real `reconcile` subprocess killed with SIGKILL at seeded random moments,
ten trials; after each, a plain `reconcile` must converge: every placement synced with a
matching checksum, nothing temporary or partial left on the targets, no job left
processing, and an event log consistent with the jobs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from planning import World
from test_apply import rows

from reconciler.observe.sources import sha256_file

from helpers import short_lease

FILES = 16
SIZE = 3 * 1024 * 1024


def build(tmp_path: Path, state: str) -> World:
    world = World(tmp_path, state).platform("NAS").platform("BACKUP")
    world.rule("TO-NAS", "NAS").rule("TO-BACKUP", "BACKUP")
    rng = random.Random(7)
    for i in range(FILES):
        world.asset(f"VID-{i:02d}", rng.randbytes(SIZE))
    world.manifests()
    return world


def command(world: World) -> list[str]:
    return [
        sys.executable,
        "-m",
        "reconciler",
        *world.cli_args(),
        "--parallel",
        "2",
        "--output",
        "jsonl",
    ]


def check_converged(world: World) -> None:
    plan = world.plan()
    assert {a.action for a in plan.actions} == {"noop"}, [
        (a.asset, a.platform, a.action) for a in plan.actions if a.action != "noop"
    ]
    for platform in ("nas", "backup"):
        folder = world.root / "out" / platform
        leftovers = [p for p in folder.rglob("*") if p.is_file() and p.name.endswith(".part")]
        assert leftovers == []
        for i in range(FILES):
            copy = folder / f"vid-{i:02d}.mp4"
            assert sha256_file(copy) == sha256_file(world.media / f"vid-{i:02d}.mp4")
    assert rows(
        world, "SELECT count(*) FROM sync_jobs WHERE status IN ('pending', 'processing')"
    ) == [(0,)]
    # every completed job has its proof in the log: a verified upload, or a recovery
    unproven = rows(
        world,
        """
        SELECT j.job_code FROM sync_jobs j WHERE j.status = 'completed' AND NOT EXISTS (
            SELECT 1 FROM sync_events_log e WHERE e.job_id = j.id AND (
                (e.event_type = 'verification' AND e.event_status = 'success')
                OR (e.event_type = 'recovered' AND e.event_status = 'success')))""",
    )
    assert unproven == []
    failed = rows(
        world, "SELECT count(*) FROM sync_jobs WHERE status = 'failed' AND error_message IS NULL"
    )
    assert failed == [(0,)]


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10))
def test_killed_apply_converges(tmp_path: Path, state_at: str, seed: int) -> None:
    """SIGKILL at a seeded random moment between start-up and the end of the transfers."""
    world = build(tmp_path, short_lease(state_at))
    delay = random.Random(seed).uniform(0.2, 1.8)
    process = subprocess.Popen(command(world), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    again = subprocess.run(command(world), capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr + again.stdout
    check_converged(world)
