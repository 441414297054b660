#!/usr/bin/env python3
"""Benchmark of the dashboard's reads at scale: how long `reconcile serve` takes to answer its
pages and API calls over a DuckDB state of --assets synced assets (default 100,000) on three
platforms, with one completed job per copy.

    python bench/dashboard.py                 # 100,000 assets, median of 5 requests each
    python bench/dashboard.py --assets 10000 --runs 3

The state is made by the product (its migrations), then filled by bulk SQL (not timed): the
shipped example's six platforms and rules from `reconcile state load-sample`, and the assets,
copies and jobs. What is timed is each request through the application in this process
(Starlette's test client, no network), from the request to the last byte of the answer; each
request opens, reads and closes the state file as the server does. It prints a table of
medians and writes bench/DASHBOARD.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

REQUESTS = [
    ("dashboard page", "/"),
    ("status API", "/api/status"),
    ("distribution, first page", "/api/distribution"),
    ("distribution, searched", "/api/distribution?q=asset-0999"),
    ("distribution, by title, page 1,000", "/api/distribution?sort=title&offset=50000"),
    ("distribution page (HTML)", "/assets?sort=asset_code&desc=0"),
    ("newest 200 jobs (the live poll)", "/api/jobs"),
    ("newest 100 events", "/api/events"),
    ("activity chart data", "/api/activity"),
]


def build(state: Path, assets: int) -> None:
    from reconciler.store.db import StateStore
    from reconciler.store.records import load_sample

    store = StateStore(state)
    load_sample(store)
    con = duckdb.connect(str(state))
    try:
        con.execute("DELETE FROM sync_events_log")
        con.execute("DELETE FROM sync_conflicts")
        con.execute("DELETE FROM sync_jobs")
        con.execute("DELETE FROM platform_assets")
        con.execute("DELETE FROM source_assets")
        con.execute(
            "INSERT INTO source_assets (id, asset_code, title, asset_type, category, file_path, "
            "checksum, version, status) SELECT i, printf('ASSET-%06d', i), "
            "printf('Title %06d', (i * 7919) % $n), 'image', 'marketing', "
            "printf('media/%06d.jpg', i), sha256(i::VARCHAR), 1, 'active' "
            "FROM range(1, $n + 1) t(i)",
            {"n": assets},
        )
        platforms = [
            r[0]
            for r in con.execute("SELECT id FROM sync_platforms ORDER BY id LIMIT 3").fetchall()
        ]
        rule = con.execute("SELECT id, config_code FROM sync_configurations LIMIT 1").fetchone()
        for k, pid in enumerate(platforms):
            con.execute(
                "INSERT INTO platform_assets (id, source_asset_id, platform_id, synced_version, "
                "local_checksum, remote_checksum, sync_status, last_synced_at, rule_code) "
                "SELECT $base + i, i, $pid, 1, sha256(i::VARCHAR), sha256(i::VARCHAR), "
                "'synced', now(), $rule FROM range(1, $n + 1) t(i)",
                {"base": k * assets, "pid": pid, "n": assets, "rule": rule[1]},
            )
            con.execute(
                "INSERT INTO sync_jobs (id, job_code, config_id, asset_id, platform_id, job_type, "
                "status, progress_percent, created_at, started_at, completed_at) "
                "SELECT $base + i, printf('R1-%d-%06d', $k, i), $cfg, i, $pid, 'initial', "
                "'completed', 100, now() - INTERVAL 1 HOUR, now() - INTERVAL 1 HOUR, "
                "now() - to_minutes((i % 600)::BIGINT) FROM range(1, $n + 1) t(i)",
                {"base": k * assets, "k": k, "cfg": rule[0], "pid": pid, "n": assets},
            )
        con.execute(
            "INSERT INTO sync_events_log (id, event_type, event_status, message, event_time) "
            "SELECT i, 'upload_complete', 'success', 'uploaded', now() FROM range(1, 1001) t(i)"
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "DASHBOARD.md")
    args = parser.parse_args()

    from starlette.testclient import TestClient

    from reconciler import ops
    from reconciler.web.app import create_app
    from reconciler.web.context import Served

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "manifests").mkdir()
        state = root / "state" / "reconciler.duckdb"
        state.parent.mkdir()
        started = time.perf_counter()
        build(state, args.assets)
        built = time.perf_counter() - started
        where = ops.Workspace(root / "manifests", None, state, 30.0, None, "bench")
        web = TestClient(create_app(Served(where, None, False)), base_url="http://127.0.0.1")
        results = []
        for name, path in REQUESTS:
            samples = []
            for _ in range(args.runs):
                begin = time.perf_counter()
                answer = web.get(path)
                samples.append(time.perf_counter() - begin)
                assert answer.status_code == 200, (path, answer.text[:300])
            results.append((name, path, statistics.median(samples), samples, len(answer.content)))
            median_ms = statistics.median(samples) * 1000
            print(f"{name:40} {median_ms:8.1f} ms  {len(answer.content):>9,} B")
        total = web.get("/api/distribution").json()["total"]
        assert total == args.assets, total

    lines = [
        "# The dashboard at scale",
        "",
        f"`python bench/dashboard.py --assets {args.assets} --runs {args.runs}` on "
        f"{dt.date.today()}, {platform.machine()}, Python {platform.python_version()}, "
        f"DuckDB {duckdb.__version__}: a state of {args.assets:,} synced assets on 3 "
        f"platforms ({3 * args.assets:,} copies and completed jobs), built in {built:.1f} s.",
        "Each request goes through the whole application in-process (no network) and opens, "
        "reads and closes the state file, as `reconcile serve` does.",
        "",
        "| request | path | median | samples (ms) | answer |",
        "|---|---|---|---|---|",
    ]
    for name, path, median, samples, size in results:
        shown = ", ".join(f"{s * 1000:.0f}" for s in samples)
        lines.append(f"| {name} | `{path}` | {median * 1000:.0f} ms | {shown} | {size:,} B |")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
