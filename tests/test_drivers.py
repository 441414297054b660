"""The local driver on real folders, and the driver registry."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest
from rich.console import Console

from reconciler.apply.run import Job
from reconciler.drivers import driver_for
from reconciler.drivers.base import Cancelled, PermanentError, resolve_secret
from reconciler.drivers.local import CHUNK, LocalDriver
from reconciler.model import Platform, SecretRef
from reconciler.observe.masters import open_master
from reconciler.observe.payload import Payload
from reconciler.plan.actions import Action
from reconciler.render.progress import LiveProgress, PlainLines

from helpers import payload_of


def local(tmp_path: Path) -> LocalDriver:
    platform = Platform(
        code="NAS",
        platform_name="NAS",
        platform_type="other",
        driver="local",
        target=tmp_path / "target",
    )
    driver = driver_for(platform)
    assert isinstance(driver, LocalDriver)
    return driver


def master(tmp_path: Path, content: bytes) -> Payload:
    path = tmp_path / "master.bin"
    path.write_bytes(content)
    return payload_of(path)


@pytest.mark.parametrize("size", [0, 3, CHUNK, CHUNK + 1, 2 * CHUNK + 3])
def test_upload_lands_whole_and_reports_its_checksum(tmp_path: Path, size: int) -> None:
    driver = local(tmp_path)
    content = os.urandom(size)  # one chunk, or several: read back while the copy goes on
    seen: list[int] = []
    uploaded = driver.upload(master(tmp_path, content), "A/clip.mp4", {}, seen.append)
    dest = tmp_path / "target" / "A" / "clip.mp4"
    assert dest.read_bytes() == content
    assert uploaded.remote_checksum == hashlib.sha256(content).hexdigest()
    assert uploaded.url == dest.as_uri()
    assert seen == sorted(seen) and (seen[-1] == len(content) if seen else size == 0)
    assert [p.name for p in dest.parent.iterdir()] == ["clip.mp4"]  # no temporary left


def test_an_upload_stopped_mid_file_leaves_nothing(tmp_path: Path) -> None:
    driver = local(tmp_path)

    def stop(sent: int) -> None:
        if sent > CHUNK:
            raise Cancelled("A/clip.mp4")

    threads = threading.active_count()
    with pytest.raises(Cancelled):
        driver.upload(master(tmp_path, os.urandom(3 * CHUNK)), "A/clip.mp4", {}, stop)
    assert list((tmp_path / "target" / "A").iterdir()) == []  # the partial file is gone
    assert threading.active_count() == threads  # the read-back thread ended too


def test_stat_delete_and_empty_folders(tmp_path: Path) -> None:
    driver = local(tmp_path)
    driver.upload(master(tmp_path, b"abc"), "A/b/clip.mp4", {})
    remote = driver.stat("A/b/clip.mp4")
    assert remote is not None and remote.checksum == hashlib.sha256(b"abc").hexdigest()
    assert driver.stat("A/missing.mp4") is None
    driver.delete("A/b/clip.mp4")
    driver.delete("A/b/clip.mp4")  # a missing object is not an error
    assert not (tmp_path / "target" / "A").exists()
    assert (tmp_path / "target").is_dir()


def test_cleanup_removes_partial_uploads_only(tmp_path: Path) -> None:
    driver = local(tmp_path)
    driver.upload(master(tmp_path, b"keep"), "A/keep.mp4", {})
    part = tmp_path / "target" / "A" / ".keep.mp4.reconcile-1a2b3c4d.part"
    part.write_bytes(b"half")
    assert driver.cleanup() == 1
    assert not part.exists() and (tmp_path / "target" / "A" / "keep.mp4").exists()


def test_keys_cannot_leave_the_target(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="would leave the target folder"):
        local(tmp_path).upload(master(tmp_path, b"x"), "../escape.mp4", {})


def test_a_vanished_master_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="has vanished"):
        open_master(str(tmp_path / "gone.mp4"), str(tmp_path))


def test_health(tmp_path: Path) -> None:
    assert local(tmp_path).health_check()[0] == "healthy"
    (tmp_path / "file").write_text("x")
    blocked = Platform(
        code="X",
        platform_name="X",
        platform_type="other",
        driver="local",
        target=tmp_path / "file" / "sub",
    )
    assert driver_for(blocked).health_check()[0] == "down"


def test_secrets_are_read_when_needed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SOME_TOKEN", " s3cr3t \n")
    assert resolve_secret(SecretRef(env="SOME_TOKEN"), "CDN") == "s3cr3t"
    (tmp_path / "key").write_text("from-file\n")
    assert resolve_secret(SecretRef(file=str(tmp_path / "key")), "CDN") == "from-file"
    monkeypatch.delenv("SOME_TOKEN")
    with pytest.raises(PermanentError, match="SOME_TOKEN is not set"):
        resolve_secret(SecretRef(env="SOME_TOKEN"), "CDN")


def job(status: str, error: str | None = None) -> Job:
    action = Action("create", "VID-A", "CDN", "R", "", 1, None, 2048, "0" * 64, file="a.mp4")
    return Job(
        id=1,
        code="R1-00001",
        action=action,
        job_type="initial",
        key="VID-A/a.mp4",
        previous_key=None,
        previous_remote_checksum=None,
        platform_id=1,
        asset_id=1,
        config_id=1,
        pa_id=1,
        status=status,
        error=error,
    )


def test_plain_lines_show_one_line_per_job() -> None:
    lines: list[str] = []
    observer = PlainLines(lines.append)
    done, failed = job("pending"), job("pending")
    observer.run_started([done, failed, job("deferred", "rate limit reached")])
    done.status = "completed"
    observer.job_finished(done)
    failed.status, failed.error = "failed", "no space left on the target"
    observer.job_finished(failed)
    assert lines == [
        "[-] deferred  initial  VID-A -> CDN: rate limit reached",
        "[1/2] completed initial  VID-A -> CDN (2.0 KiB)",
        "[2/2] failed    initial  VID-A -> CDN: no space left on the target",
    ]


def test_live_progress_draws_transfers() -> None:
    buffer = io.StringIO()
    observer = LiveProgress(Console(file=buffer, force_terminal=True, width=100))
    running = job("pending")
    observer.run_started([running])
    observer.job_started(running)
    observer.job_progress(running, 1024)
    running.status, running.error = "failed", "boom"
    observer.job_finished(running)
    observer.run_finished()
    text = buffer.getvalue()
    assert "1 changes" in text and "failed" in text and "boom" in text
