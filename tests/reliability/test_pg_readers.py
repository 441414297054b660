"""Readers never block writers on a PostgreSQL state (issue 16): a BI tool holds one
read-only REPEATABLE READ transaction over every table of the state for more than 60 s, while
a real `reconcile` applies the shipped example and a real `reconcile watch` runs cycles,
picks up a manifest change and applies it, and other processes poll `reconcile status` the
whole time. Nothing waits on a lock, nothing fails, every job completes, and the reader's
snapshot stays the one it began with."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from leasekit import SCHEMA, TABLES, connect, query, start

from reconciler.store.pg import PgLocation
from reconciler.store.postgres import PgStore

EXAMPLE = Path(__file__).resolve().parents[2] / "manifests"
HOLD = 60.0  # seconds the reader keeps its transaction, at least
NEW_ASSET = """---
apiVersion: mediasync/v1
kind: Asset
metadata:
  code: IMG-HERO-COPY
spec:
  title: Product Hero Image, a copy for the watch
  asset_type: image
  category: marketing
  file: media/images/hero_copy.jpg
"""


class LockWatch:
    """Every 50 ms, the sessions of the database that wait for a lock (pg_stat_activity)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[Any, ...]] = []
        self.polls = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        with connect(self.url) as con:
            while not self.done.wait(0.05):
                self.seen += con.execute(
                    "SELECT application_name, wait_event, left(query, 120) "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                ).fetchall()
                self.polls += 1

    def stop(self) -> None:
        self.done.set()
        self.thread.join(10)


class Pollers:
    """Two processes' worth of `reconcile status`, each run again as soon as it ends."""

    def __init__(self, url: str, cwd: Path) -> None:
        self.command = [sys.executable, "-m", "reconciler", "status", "--state", url]
        self.cwd = cwd
        self.runs = 0
        self.slowest = 0.0
        self.failures: list[str] = []
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(2)]
        for thread in self.threads:
            thread.start()

    def _loop(self) -> None:
        while not self.done.is_set():
            began = time.monotonic()
            result = subprocess.run(
                self.command, cwd=self.cwd, capture_output=True, text=True, timeout=60
            )
            self.slowest = max(self.slowest, time.monotonic() - began)
            self.runs += 1
            if result.returncode != 0 or result.stderr or "CDN-PRIMARY" not in result.stdout:
                self.failures.append(f"exit {result.returncode}: {result.stderr}")

    def stop(self) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(60)


def counts(con: Any) -> dict[str, int]:
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def watch_logs(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_a_reader_holding_a_snapshot_for_a_minute_blocks_no_apply_and_no_watch(
    tmp_path: Path, pg_url: str
) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "manifests")
    with PgStore(PgLocation.parse(pg_url)).writing():
        pass  # the state's tables, migrated: there for the reader to read
    reader = connect(pg_url)
    reader.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    seen = counts(reader)
    reader.execute("SELECT * FROM run_lease").fetchall()
    holding_since = time.monotonic()
    locks = LockWatch(pg_url)

    applied = subprocess.run(
        [sys.executable, "-m", "reconciler", "--state", pg_url, "-o", "jsonl"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    took = time.monotonic() - holding_since
    assert applied.returncode == 0, applied.stderr
    summary = json.loads(applied.stdout.splitlines()[-1])["summary"]
    assert summary["completed"] == 15 and summary["failed"] == 0, summary
    assert took < 30, took  # the example's apply takes seconds: it waited for nothing

    watch = start(
        "watch", "--state", pg_url, "--interval", "5", "--debounce", "0.5",
        "--log-format", "json", cwd=tmp_path,
    )  # fmt: skip
    try:
        watch.wait_for(lambda e: e.get("event") == "cycle" and e.get("reason") == "start")
        pollers = Pollers(pg_url, tmp_path)
        media = tmp_path / "manifests" / "media" / "images"
        shutil.copyfile(media / "hero_product.jpg", media / "hero_copy.jpg")
        with (tmp_path / "manifests" / "assets.yaml").open("a") as assets:
            assets.write(NEW_ASSET)
        change = watch.wait_for(lambda e: e.get("event") == "cycle" and e.get("reason") == "change")
        assert (change["completed"], change["failed"]) == (3, 0), change
        while time.monotonic() - holding_since < HOLD:  # interval cycles, verifying
            time.sleep(0.5)
        pollers.stop()
        watch.signal(signal.SIGTERM)
        code, err = watch.finish(30)
    finally:
        watch.kill_if_running()
    locks.stop()
    assert code == 0, err
    logs = watch_logs(watch.lines)
    assert [e for e in logs if e.get("level") == "error" or e.get("event") == "error"] == []
    cycles = [e for e in logs if e.get("event") == "cycle"]
    assert len([e for e in cycles if e["reason"] == "interval"]) >= 3, cycles
    assert all(e["failed"] == 0 for e in cycles), cycles

    assert pollers.failures == [] and pollers.runs >= 10, (pollers.runs, pollers.failures[:3])
    assert locks.seen == [] and locks.polls > 100, locks.seen[:5]
    # the reader: still in its transaction, alive, seeing the state as it was when it began
    assert counts(reader) == seen
    held = time.monotonic() - holding_since
    reader.execute("ROLLBACK")
    reader.close()
    assert held >= HOLD
    print(f"reader held its snapshot {held:.1f} s; apply took {took:.1f} s; "
          f"{len(cycles)} watch cycles; {pollers.runs} status polls, the slowest "
          f"{pollers.slowest:.1f} s")  # fmt: skip
    jobs = query(pg_url, f"SELECT status, count(*) FROM {SCHEMA}.sync_jobs GROUP BY status")
    assert jobs == [("completed", 18)], jobs
    copies = query(
        pg_url,
        "SELECT pa.sync_status, count(*) FROM platform_assets pa "
        "JOIN source_assets sa ON sa.id = pa.source_asset_id "
        "WHERE sa.asset_code = 'IMG-HERO-COPY' GROUP BY 1",
    )
    assert copies == [("synced", 3)], copies
