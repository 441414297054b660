"""Defect 14: a reader can never fail an upload in flight. A BI tool holds a read-only DuckDB
connection to the state file (which keeps every writer out) for longer than --lock-timeout,
in the middle of a resumable upload whose session is written after every chunk: the writes
wait in memory, the transfer goes on, and everything is recorded once the file is free."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from apiservers import VIMEO_TOKEN, FakePlatforms
from planning import World, rows

MiB = 1024 * 1024
HOLD = 4.0  # seconds the reader keeps the file; the lock timeout is 1 s

HOLDER = """
import sys, time, duckdb
while True:  # as a BI tool would: in as soon as the writer lets go for a moment
    try:
        con = duckdb.connect(sys.argv[1], read_only=True)
        break
    except duckdb.IOException:
        time.sleep(0.005)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
"""


def test_a_reader_holding_the_state_file_does_not_fail_an_upload(
    tmp_path: Path, fake: FakePlatforms, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_VIMEO_TOKEN", VIMEO_TOKEN)
    size = 6 * MiB
    fake.chunk_delay = 0.25  # 24 chunks of 256 KiB: about 6 s, longer than the hold
    world = World(tmp_path).platform(
        "VIMEO", driver="vimeo", platform_type="video_platform", target=None,
        api_endpoint=f"{fake.url}/vimeo", auth_type="oauth2",
        auth={"secret_env": "TEST_VIMEO_TOKEN"}, chunk_size_kib=256, poll_interval=0,
    ).rule("R", "VIMEO")  # fmt: skip
    world.asset("VID-A", bytes(range(256)) * (size // 256))
    world.manifests()
    command = [sys.executable, "-m", "reconciler", *world.cli_args(), "--lock-timeout", "1",
               "-o", "jsonl"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    holder = None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if holder is None and json.loads(line).get("event_type") == "upload_start":
            holder = subprocess.Popen(
                [sys.executable, "-c", HOLDER, str(world.store.path), str(HOLD)],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            arrived_when_held = fake.bytes_received()
    process.wait(timeout=120)
    assert holder is not None
    holder.wait(timeout=30)
    assert arrived_when_held < size  # the reader came in while the upload was going
    assert process.returncode == 0, "".join(lines[-5:]) + process.stderr.read()
    summary = json.loads(lines[-1])
    assert summary["summary"]["completed"] == 1 and summary["summary"]["failed"] == 0
    assert fake.bytes_received() == size  # every byte once: nothing started over
    assert rows(world, "SELECT status, error_message FROM sync_jobs") == [("completed", None)]
    assert rows(world, "SELECT state, bytes_confirmed FROM upload_sessions") == [("done", size)]
    assert rows(world, "SELECT sync_status FROM platform_assets") == [("synced",)]


def test_a_chunk_saved_while_another_thread_writes_waits_for_it(tmp_path: Path) -> None:
    """Chunks that land faster than the recorder's flush: the session write waits for that
    thread's short transaction instead of staying in memory, where a kill would lose where
    the upload stood (and the next run would start it over)."""
    import threading
    import time

    from reconciler.drivers.state import DriverState, Session, SessionState
    from reconciler.store.sessions import StoredSessions

    world = World(tmp_path)
    with world.store.writing():
        pass  # the file exists, migrated
    state = DriverState(StoredSessions(world.store), "VIMEO")
    assert state.session("a.mp4") is None  # what is recorded, read before the upload starts
    holding, release = threading.Event(), threading.Event()

    def recorder() -> None:
        with world.store.writing():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=recorder)
    thread.start()
    assert holding.wait(10)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    session = Session("a.mp4", "vimeo", SessionState.UPLOADING, "0" * 64, 10, bytes_confirmed=4)
    state.save(session)
    thread.join(10)
    assert time.monotonic() - started >= 0.25  # it waited for the other thread
    assert rows(world, "SELECT remote_key, bytes_confirmed FROM upload_sessions") == [("a.mp4", 4)]
