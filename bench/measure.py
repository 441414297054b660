"""What the benchmark measures with: a command's wall time and peak RSS in a subprocess, the
median of samples, random data trees, and the check that a measured apply did all its work.

Shared by :mod:`run` (data sets A-D and the report) and :mod:`library` (E-H).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

WARM = "reconcile, warm hash cache"
TOOLS = ("reconcile", WARM, "rclone", "cp")


@dataclass
class Sample:
    seconds: float
    rss_mb: float


@dataclass
class Measure:
    name: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def rss_mb(self) -> float:
        return statistics.median(s.rss_mb for s in self.samples)


# Linux carries a process's peak RSS across fork and exec, so a command started straight from
# this (large) process would report at least this process's size. The command is started from
# a small launcher instead, which times it and reads its peak RSS from wait4.
LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    out.write(f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def run(cmd: list[str], env: dict[str, str] | None = None, check: bool = True) -> Sample:
    """Run a command; its wall time and peak RSS (through the launcher above)."""
    with tempfile.NamedTemporaryFile("r", suffix=".measure") as result:
        process = subprocess.run(
            [sys.executable, "-S", "-c", LAUNCHER, result.name, *cmd],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
            check=False,
        )
        fields = result.read().split()
    if len(fields) != 3:
        raise SystemExit(f"could not run {cmd[0]}: {process.stderr.decode()}")
    seconds, rss_kb, code = float(fields[0]), int(fields[1]), int(fields[2])
    if check and code not in (0, 2):
        raise SystemExit(f"{' '.join(cmd)} exited {code}:\n{process.stderr.decode()}")
    return Sample(seconds, rss_kb / 1024)


def sync() -> None:
    os.sync()
    time.sleep(0.5)


def reconcile(*args: str) -> list[str]:
    return [sys.executable, "-m", "reconciler", *args]


# -- data sets ---------------------------------------------------------------------------------


def write_random_tree(
    root: Path,
    count: int,
    low: int,
    high: int,
    seed: int,
    groups: list[tuple[str, str]] | None = None,
    per_dir: int = 500,
) -> None:
    """``count`` files of random bytes, ``per_dir`` per folder, spread over ``groups``."""
    rng = random.Random(seed)
    groups = groups or [("files", "bin")]
    per_group = count // len(groups)
    for folder, ext in groups:
        for i in range(per_group):
            path = root / folder / f"d{i // per_dir:03d}" / f"f{i:06d}.{ext}"
            if i % per_dir == 0:
                path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.randbytes(rng.randint(low, high)))


def check_recorded(state: Path) -> None:
    """Every job recorded and completed, every copy verified (the run did not cut corners)."""
    import duckdb

    con = duckdb.connect(str(state), read_only=True)
    jobs = con.execute("SELECT status, count(*) FROM sync_jobs GROUP BY 1").fetchall()
    unverified = con.execute(
        "SELECT count(*) FROM platform_assets WHERE sync_status <> 'synced' OR "
        "remote_checksum IS DISTINCT FROM local_checksum"
    ).fetchone()
    con.close()
    if [s for s, _ in jobs] != ["completed"] or unverified != (0,):
        raise SystemExit(f"the benchmark apply did not complete every job: {jobs}")


def machine() -> list[tuple[str, str]]:
    def first(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=False).stdout
            return out.strip().splitlines()[0] if out.strip() else "?"
        except OSError:
            return "not found"

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    import duckdb

    from reconciler import __version__

    return [
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", f"{cpu}, {os.cpu_count()} cores, {memory}"),
        ("system", f"{platform.system()} {platform.release()}"),
        ("python", platform.python_version()),
        ("reconcile", __version__),
        ("duckdb", duckdb.__version__),
        ("rclone", first(["rclone", "version"])),
        ("cp", first(["cp", "--version"])),
    ]
