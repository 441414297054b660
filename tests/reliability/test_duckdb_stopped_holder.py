"""A SIGSTOPped holder of a DuckDB state file's run lock (the flock): the kernel keeps its lock
as long as it lives, so a second writing command can only wait; when it gives up, its message
says the holder is stopped (its process state), not merely busy, and how to resume it; and
`reconcile state info` says so too. Resumed, the holder finishes its run."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from apiservers import FakePlatforms
from cli_process import one_error_line, reconcile
from leasekit import MiB, start, vimeo_world


def test_a_stopped_flock_holder_is_named_as_stopped(tmp_path: Path, fake: FakePlatforms) -> None:
    fake.chunk_delay = 0.1
    world = vimeo_world(tmp_path, fake, 1, 4 * MiB)
    holder = start(*world.cli_args(), "-o", "jsonl")
    try:
        holder.wait_for(lambda e: e.get("event_type") == "upload_start")
        holder.signal(signal.SIGSTOP)
        stopped = f"pid {holder.pid} (reconcile, since "
        advice = (
            "which is stopped (SIGSTOP): it holds the lock and does no work; resume it with "
            f"kill -CONT {holder.pid} or end it"
        )

        started = time.monotonic()
        line = one_error_line(reconcile(*world.cli_args(), "--lock-timeout", "1"))
        assert time.monotonic() - started >= 1
        assert line.startswith(f"error: the state file is locked by {stopped}"), line
        assert advice in line and "gave up after 1 s" in line, line

        info = reconcile("state", "info", "--state", str(world.store.path))
        assert info.returncode == 0, info.stderr
        (lock,) = [x for x in info.stdout.splitlines() if x.startswith("lock: ")]
        assert lock.startswith(f"lock: held by {stopped}") and advice in lock, lock

        holder.signal(signal.SIGCONT)
        code, err = holder.finish(120)
        assert code == 0, err
        assert holder.events()[-1]["summary"]["completed"] == 1
        info = reconcile("state", "info", "--state", str(world.store.path))
        assert info.stdout.splitlines()[-1] == "lock: free"
    finally:
        holder.kill_if_running()
