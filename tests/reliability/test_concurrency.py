"""Concurrent commands on one state file, as real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from planning import World

BIG = 16 * 1024 * 1024


def busy_world(tmp_path: Path, files: int = 12) -> World:
    world = World(tmp_path).platform("NAS").rule("R", "NAS")
    for i in range(files):
        world.asset(f"VID-{i:02d}", bytes([i]) * BIG)
    world.manifests()
    return world


def reconcile(world: World, *args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler", *args, *world.cli_args()]


@pytest.mark.slow
def test_two_applies_started_together_one_works_one_names_the_holder(tmp_path: Path) -> None:
    # enough work (512 MiB, one transfer at a time) that the first to take the lock still
    # holds it when the other gives up, however slowly the other starts
    world = busy_world(tmp_path, files=32)
    cmd = reconcile(world, "--parallel", "1", "--lock-timeout", "0.5", "--output", "json")
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = {p.pid: (p.wait(timeout=120), *p.communicate()) for p in (first, second)}
    codes = sorted(code for code, _, _ in results.values())
    assert codes == [0, 1], results
    (winner,) = [pid for pid, (code, _, _) in results.items() if code == 0]
    (loser,) = [r for r in results.values() if r[0] == 1]
    assert loser[2].startswith(f"error: the state file is locked by pid {winner} (reconcile")
    assert "gave up after 0.5 s" in loser[2] and "Traceback" not in loser[2]
    assert json.loads(results[winner][1])["summary"]["completed"] == 32

    # the state file is intact and complete
    status = subprocess.run(
        [sys.executable, "-m", "reconciler", "status", "--state", str(world.store.path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    plan = subprocess.run(
        reconcile(world, "--dry-run", "--detailed-exitcode"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert plan.returncode == 0, plan.stdout + plan.stderr


@pytest.mark.slow
def test_status_answers_while_watch_works(tmp_path: Path) -> None:
    world = busy_world(tmp_path, files=10)
    watch = subprocess.Popen(
        reconcile(world, "watch", "--parallel", "1", "--debounce", "0.2", "--log-format", "json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        assert json.loads(watch.stdout.readline())["event"] == "watch"
        answered = []
        for _ in range(5):
            started = time.monotonic()
            status = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "reconciler",
                    "status",
                    "--state",
                    str(world.store.path),
                    "--lock-timeout",
                    "5",
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            assert status.returncode == 0, status.stderr
            answered.append(time.monotonic() - started)
            time.sleep(0.2)
        assert max(answered) < 5
    finally:
        watch.terminate()
        assert watch.wait(timeout=15) == 0
