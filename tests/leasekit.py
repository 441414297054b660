"""What the tests of the PostgreSQL run lock (the lease) share: a state URL with a short TTL,
a slow platform to keep a run busy, `reconcile` subprocesses whose jsonl events are read as
they come, and snapshots of the state's tables taken straight from PostgreSQL."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from apiservers import FakePlatforms
from planning import World

MiB = 1024 * 1024
SCHEMA = "mediasync"
# every table a run writes; run_lease is the lock's own and changes with every heartbeat
TABLES = (
    "sync_platforms",
    "source_assets",
    "file_hashes",
    "sync_configurations",
    "sync_jobs",
    "platform_assets",
    "platform_assets_pruned",
    "upload_sessions",
    "platform_quota",
    "sync_conflicts",
    "sync_events_log",
    "schema_migrations",
)


def with_ttl(url: str, ttl: float) -> str:
    """The state URL with a lease TTL of ``ttl`` seconds."""
    return f"{url}{'&' if '?' in url else '?'}lease_ttl={ttl:g}"


def vimeo_world(tmp_path: Path, fake: FakePlatforms, assets: int, size: int) -> World:
    """Manifests of ``assets`` videos of ``size`` bytes for a Vimeo account on the fake
    server, sent in chunks of 256 KiB (``fake.chunk_delay`` makes each chunk take time)."""
    world = World(tmp_path).platform(
        "VIMEO", driver="vimeo", platform_type="video_platform", target=None,
        api_endpoint=f"{fake.url}/vimeo", auth_type="oauth2",
        auth={"secret_env": "TEST_VIMEO_TOKEN"}, chunk_size_kib=256, poll_interval=0,
    ).rule("R", "VIMEO")  # fmt: skip
    for n in range(assets):
        world.asset(f"VID-{n:02d}", bytes([n]) * size)
    world.manifests()
    return world


def world_args(world: World, state: str) -> list[str]:
    return ["--manifests", str(world.manifests_dir), "--media-root", str(world.media),
            "--state", state]  # fmt: skip


@dataclass
class Proc:
    """A `reconcile` subprocess; its stdout lines are collected by a thread as they come."""

    popen: subprocess.Popen[str]
    started: float
    lines: list[str] = field(default_factory=list)
    _new: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line)
            self._new.put(line)
        self._new.put(None)

    def events(self) -> list[dict[str, Any]]:
        """The jsonl objects printed so far."""
        found = []
        for line in list(self.lines):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def wait_for(self, test: Any, timeout: float = 60) -> dict[str, Any]:
        """The first jsonl object (printed from now on) for which ``test(obj)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"pid {self.pid} printed nothing matching in {timeout} s")
            try:
                line = self._new.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"pid {self.pid} ended first: {self.finish(5)[1]}")
            try:
                found = json.loads(line)
            except ValueError:
                continue
            if test(found):
                return dict(found)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        """Wait for the exit; (exit code, stderr)."""
        code = self.popen.wait(timeout=timeout)
        assert self.popen.stderr is not None
        return code, self.popen.stderr.read()

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def kill_if_running(self) -> None:
        if self.popen.poll() is None:
            with_cont = [signal.SIGCONT, signal.SIGKILL]
            for signum in with_cont:
                os.kill(self.pid, signum)
            self.popen.wait(timeout=10)


def start(*args: str, cwd: Path | None = None) -> Proc:
    """Start `python -m reconciler ARGS` (inheriting the environment: PGPASSWORD)."""
    popen = subprocess.Popen(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc = Proc(popen, time.monotonic())
    threading.Thread(target=proc._pump, daemon=True).start()
    return proc


def connect(url: str) -> psycopg.Connection[Any]:
    """A plain psycopg connection to the state's database (PGPASSWORD from the env)."""
    return psycopg.connect(url.split("?")[0], autocommit=True, options=f"-c search_path={SCHEMA}")


def query(url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with connect(url) as con:
        return con.execute(sql, params).fetchall()


def execute(url: str, sql: str, params: Any = None) -> None:
    with connect(url) as con:
        con.execute(sql, params)


def lease(url: str) -> dict[str, Any]:
    """The run lease's row."""
    with connect(url) as con:
        cur = con.execute("SELECT * FROM run_lease WHERE name = 'run'")
        row = cur.fetchone()
        assert row is not None and cur.description is not None
        return dict(zip([c.name for c in cur.description], row, strict=True))


def snapshot(url: str) -> dict[str, Any]:
    """Every table's row count and greatest id, and the rows of the jobs, the copies and
    the upload sessions: what a write by any command would change."""
    found: dict[str, Any] = {}
    with connect(url) as con:
        for table in TABLES:
            columns = {
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = %s",
                    [SCHEMA, table],
                )
            }
            top = "max(id)" if "id" in columns else "NULL"
            found[table] = con.execute(f"SELECT count(*), {top} FROM {table}").fetchone()
        for table in ("sync_jobs", "platform_assets", "upload_sessions"):
            found[f"{table} rows"] = con.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
    return found
