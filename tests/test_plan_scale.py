"""Planning over a large recorded state under the planner's memory limit.

A real state file with 1,000,000 placement rows (built in SQL), a few hundred declared
assets, and `reconcile --dry-run` in a real subprocess: the plan must come out under the same
memory limit at which the old fingerprint (string_agg over every row) raised DuckDB's
OutOfMemoryException.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import duckdb
import pytest
from planning import World

from reconciler.store.planning import PLANNING_MEMORY

ASSETS = 300
PLACEMENTS = 1_000_000

# What FINGERPRINT_SQL was until it crashed at 100,000 synced files: it cannot spill.
OLD_FINGERPRINT_SQL = """
SELECT sha256(coalesce(string_agg(x, chr(10) ORDER BY x), '')) FROM (
    SELECT concat_ws('|', 'a', asset_code, checksum, version, metadata_hash, status) AS x
    FROM source_assets
    UNION ALL
    SELECT concat_ws('|', 'p', id, source_asset_id, platform_id, sync_status, synced_version,
                     local_checksum, remote_checksum, metadata_hash, transform_hash)
    FROM platform_assets
    UNION ALL
    SELECT concat_ws('|', 'c', id, platform_asset_id, resolution) FROM sync_conflicts
    UNION ALL
    SELECT concat_ws('|', 's', id, platform_code, sync_enabled) FROM sync_platforms
)
"""

# More copies of each (asset, platform) pair, with other checksums and statuses: the rows a
# library's history leaves. The last of each pair is synced again afterwards.
HISTORY_SQL = """
INSERT INTO platform_assets (id, source_asset_id, platform_id, rule_code, sync_status,
    synced_version, local_checksum, remote_checksum, metadata_hash, transform_hash,
    remote_key, managed, last_synced_at)
SELECT $first + r.range, p.source_asset_id, p.platform_id, p.rule_code,
       CASE r.range % 3 WHEN 0 THEN 'failed' WHEN 1 THEN 'outdated' ELSE 'synced' END,
       1, sha256(r.range::VARCHAR), sha256((r.range + 1)::VARCHAR), md5(r.range::VARCHAR),
       md5((r.range * 7)::VARCHAR), p.remote_key, TRUE, TIMESTAMP '2026-01-01'
FROM range($rows) r
JOIN (SELECT row_number() OVER (ORDER BY id) - 1 AS k, * FROM platform_assets) p
  ON p.k = r.range % $pairs
"""


@pytest.fixture(scope="module")
def large_state(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("large")
    world = World(root).platform("CDN").platform("BACKUP")
    world.rule("R-CDN", "CDN").rule("R-BACKUP", "BACKUP")
    for n in range(ASSETS):
        world.asset(f"IMG-{n:04d}", f"image {n}".encode(), file=f"img/{n:04d}.jpg")
    world.applied()  # one synced copy per (asset, platform)
    pairs = 2 * ASSETS
    with world.store.writing() as con:
        con.execute(HISTORY_SQL, {"first": pairs + 1, "rows": PLACEMENTS - pairs, "pairs": pairs})
        (count,) = con.execute("SELECT count(*) FROM platform_assets").fetchone()
    assert count == PLACEMENTS
    world.applied()  # the newest copy of each pair is the synced one
    return world


def test_the_old_fingerprint_fails_under_the_planning_memory_limit(large_state: World) -> None:
    """The limit is one that the crash happened under: the old query cannot plan this."""
    con = duckdb.connect(str(large_state.store.path), read_only=True, config={"threads": 1})
    try:
        con.execute("SET memory_limit = ?", [PLANNING_MEMORY])
        with pytest.raises(duckdb.OutOfMemoryException):
            con.execute(OLD_FINGERPRINT_SQL).fetchone()
    finally:
        con.close()


LAUNCH = """
import resource, subprocess, sys, time
started = time.monotonic()
done = subprocess.run([sys.executable, "-m", "reconciler", *sys.argv[1:]], capture_output=True,
                      text=True)
seconds = time.monotonic() - started
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"{done.returncode} {seconds:.2f} {peak_kib}")
sys.stdout.write(done.stdout)
sys.stderr.write(done.stderr)
"""


def test_a_dry_run_at_a_million_placements_plans_under_the_limit(large_state: World) -> None:
    started = time.monotonic()
    # measured through a small launcher, so that the peak is the planner's own
    result = subprocess.run(
        [sys.executable, "-c", LAUNCH, "--dry-run", *large_state.cli_args(), "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    head, _, body = result.stdout.partition("\n")
    code, seconds, peak_kib = head.split()
    assert code == "0", result.stderr
    assert "Traceback" not in result.stderr and "OutOfMemory" not in result.stderr
    plan = json.loads(body)
    assert plan["summary"]["noop"] == 2 * ASSETS and plan["changes"] == 0
    print(
        f"dry run at {PLACEMENTS:,} placements: {seconds} s, peak RSS {int(peak_kib) // 1024} MiB"
    )
    assert time.monotonic() - started < 120
    assert int(peak_kib) < 1024 * 1024  # DuckDB kept to its limit: far below 1 GiB
