"""`reconcile watch` as a real subprocess with a real watchdog observer on a temporary folder:
add, edit, break, fix and delete manifests, replace a media file, and stop it with SIGTERM."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from planning import World
from test_apply import rows

from reconciler.observe.sources import sha256_file

from helpers import lock_record


class Watch:
    """A running `reconcile watch --log-format json` and the lines it has logged."""

    def __init__(self, world: World, *extra: str) -> None:
        self.world = world
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "reconciler",
                "watch",
                *world.cli_args(),
                "--debounce",
                "0.3",
                "--interval",
                "3600",
                "--log-format",
                "json",
                "--lock-timeout",
                "10",
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def wait_for(self, match: Callable[[dict], bool], timeout: float = 15) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if match(line):
                return line
        raise AssertionError(f"no matching log line in {timeout} s; saw: {self.seen[-10:]}")

    def cycle(self, timeout: float = 15) -> dict:
        return self.wait_for(lambda line: line["event"] == "cycle", timeout)

    def stop(self) -> tuple[int, float]:
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=15)
        return code, time.monotonic() - started


@pytest.fixture
def watched(tmp_path: Path, state_at: str) -> Iterator[tuple[World, Watch]]:
    world = World(tmp_path, state_at).platform("CDN").platform("S3")
    world.rule("R-CDN", "CDN").rule("R-S3", "S3").asset("VID-A", b"first a")
    world.manifests()
    watch = Watch(world)
    try:
        yield world, watch
    finally:
        if watch.process.poll() is None:
            watch.process.kill()
            watch.process.wait()


def add_asset(world: World, code: str, content: bytes) -> None:
    (world.media / f"{code.lower()}.mp4").write_bytes(content)
    doc = {
        "apiVersion": "mediasync/v1",
        "kind": "Asset",
        "metadata": {"code": code},
        "spec": {
            "title": code,
            "asset_type": "video",
            "category": "marketing",
            "file": f"{code.lower()}.mp4",
        },
    }
    (world.manifests_dir / f"{code.lower()}.yaml").write_text(yaml.safe_dump(doc))


def copies(world: World, code: str) -> dict[str, str]:
    found = {}
    for platform in ("cdn", "s3"):
        path = world.root / "out" / platform / f"{code.lower()}.mp4"
        if path.exists():
            found[platform] = sha256_file(path)
    return found


@pytest.mark.slow
def test_watch_follows_changes_survives_broken_edits_and_stops_cleanly(watched) -> None:
    world, watch = watched
    first = watch.cycle()
    assert first["completed"] == 2

    # adding an asset document puts it on its platforms within seconds
    started = time.monotonic()
    add_asset(world, "VID-B", b"b content")
    assert watch.cycle()["completed"] == 2
    assert time.monotonic() - started < 10
    assert set(copies(world, "VID-B")) == {"cdn", "s3"}

    # replacing a media file updates its copies (these rules have no schedule)
    (world.media / "vid-a.mp4").write_bytes(b"second a")
    assert watch.cycle()["completed"] == 2
    assert set(copies(world, "VID-A").values()) == {sha256_file(world.media / "vid-a.mp4")}

    # a broken file is logged with file and line, and nothing changes
    jobs_before = rows(world, "SELECT count(*) FROM sync_jobs")
    broken = world.manifests_dir / "vid-b.yaml"
    good_text = broken.read_text()
    broken.write_text(good_text.replace("kind: Asset", "kind: Asset\n  oops: [unclosed"))
    add_asset(world, "VID-C", b"c content")  # part of the broken revision
    invalid = watch.wait_for(lambda line: line["event"] == "invalid" and "line" in line)
    assert invalid["file"].endswith("vid-b.yaml") and invalid["line"] >= 1
    assert (
        "keeping the last good manifests"
        in watch.wait_for(lambda line: line["event"] == "invalid" and "line" not in line)["message"]
    )
    assert watch.cycle()["completed"] == 0
    assert rows(world, "SELECT count(*) FROM sync_jobs") == jobs_before
    assert copies(world, "VID-C") == {} and set(copies(world, "VID-B")) == {"cdn", "s3"}

    # a second terminal can read while watch runs
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "reconciler",
            "status",
            "--state",
            world.state,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert len(json.loads(status.stdout)["platforms"]) == 2

    # fixing the file resumes, and what waited goes out
    broken.write_text(good_text)
    watch.wait_for(lambda line: line["event"] == "cycle" and line["completed"] == 2)
    assert set(copies(world, "VID-C")) == {"cdn", "s3"}

    # deleting a manifest leaves the copies alone (no pruning by default)
    (world.manifests_dir / "vid-c.yaml").unlink()
    assert watch.cycle()["completed"] == 0
    assert set(copies(world, "VID-C")) == {"cdn", "s3"}

    code, took = watch.stop()
    assert code == 0 and took < 10
    assert watch.process.stderr is not None and "Traceback" not in watch.process.stderr.read()
    assert rows(
        world, "SELECT count(*) FROM sync_jobs WHERE status IN ('pending', 'processing')"
    ) == [(0,)]
    assert lock_record(world.state) is None  # the lock was released


@pytest.mark.slow
def test_sigterm_during_a_transfer_records_it_and_exits_cleanly(
    tmp_path: Path, state_at: str
) -> None:
    world = World(tmp_path, state_at).platform("CDN").rule("R", "CDN")
    for i in range(6):
        world.asset(f"VID-{i}", bytes([i]) * (24 * 1024 * 1024))
    world.manifests()
    watch = Watch(world)
    try:
        watch.wait_for(lambda line: line["event"] == "watch")
        time.sleep(0.8)  # into the first cycle's transfers
        code, took = watch.stop()
    finally:
        if watch.process.poll() is None:
            watch.process.kill()
    assert code == 0 and took < 10
    assert rows(
        world, "SELECT count(*) FROM sync_jobs WHERE status IN ('pending', 'processing')"
    ) == [(0,)]
    leftovers = [p for p in (world.root / "out").rglob("*") if p.name.endswith(".part")]
    assert leftovers == []
