"""The state file on a disk that cannot take it: a read-only folder and a full disk.

Both are real tmpfs mounts made by the test (the suite runs as root in CI, where permissions
alone would not stop a write); the tests are skipped only where mounting is impossible. Each
failing command must end in one `error:` line, exit 1, with the state file unchanged.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import duckdb
from attack_kit import tmpfs
from cli_process import one_error_line, reconcile
from test_state_file import world_with_assets

from reconciler.store.db import StateStore
from reconciler.store.records import load_sample


def remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


def test_a_read_only_state_folder(tmp_path: Path) -> None:
    world = world_with_assets(tmp_path)
    with tmpfs(tmp_path / "ro", "8m") as folder:
        state = folder / "reconciler.duckdb"
        args = [*world.cli_args()[:4], "--state", str(state)]
        assert reconcile(*args).returncode == 0  # synced once, while it was writable
        world.asset("VID-NEW", b"a new master")
        world.manifests()
        remount_read_only(folder)
        before = state.read_bytes()

        line = one_error_line(reconcile(*args))
        assert f"cannot write {state}.lock: Read-only file system" in line
        assert "make it writable, or pass --state" in line
        new = folder / "new.duckdb"
        line = one_error_line(reconcile("state", "load-sample", "--state", str(new)))
        assert "Read-only file system" in line and not new.exists()

        status = reconcile("status", "--state", str(state))  # readers still answer
        assert status.returncode == 0, status.stderr
        planned = reconcile("--dry-run", *args, "--detailed-exitcode")
        assert planned.returncode == 2, planned.stderr  # VID-NEW waits to be created
        assert state.read_bytes() == before


def fill(folder: Path, leave: int) -> Path:
    """Fill the file system of ``folder`` up, then give back ``leave`` bytes."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        block = b"\0" * 65536
        while True:
            try:
                os.write(fd, block)
            except OSError:
                if len(block) == 1:
                    break
                block = block[: len(block) // 2]
        os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_a_one_line_error_and_nothing_is_half_written(tmp_path: Path) -> None:
    world = world_with_assets(tmp_path)
    with tmpfs(tmp_path / "small", "32m") as folder:
        state = folder / "reconciler.duckdb"
        load_sample(StateStore(state))
        renditions = str(tmp_path / "renditions")  # off the small disk
        args = [*world.cli_args()[:4], "--state", str(state), "--renditions", renditions]
        filler = fill(folder, leave=4096)  # a page for the lock record, none for a commit
        before = state.read_bytes()

        line = one_error_line(
            reconcile("conflicts", "--state", str(state), "resolve", "1", "--use", "source",
                      "--by", "test")
        )  # fmt: skip
        assert f"no space left on the disk holding {state}" in line
        assert "Free some space and run again" in line
        line = one_error_line(reconcile(*args))
        assert "no space left on the disk holding" in line
        assert state.read_bytes() == before

        filler.unlink()
        with duckdb.connect(str(state), read_only=True) as con:
            assert con.execute("SELECT resolution FROM sync_conflicts").fetchall() == [("pending",)]
            assert con.execute("SELECT count(*) FROM sync_jobs").fetchone() == (7,)
        resolved = reconcile(
            "conflicts", "--state", str(state), "resolve", "1", "--use", "source", "--by", "t"
        )
        assert resolved.returncode == 0, resolved.stderr


def test_a_new_state_file_on_a_full_disk_leaves_nothing_behind(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", "1m") as folder:
        fill(folder, leave=32 * 1024)  # room for the lock file; not for a new state file
        state = folder / "reconciler.duckdb"
        line = one_error_line(reconcile("state", "load-sample", "--state", str(state)))
        assert "no space left on the disk holding" in line
        assert sorted(p.name for p in folder.iterdir()) == ["filler", f"{state.name}.lock"]
