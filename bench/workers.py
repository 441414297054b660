#!/usr/bin/env python3
"""Benchmark of the job queue: how `reconcile worker` processes scale, and what a claim costs.

Run from a clone with the project installed (`pip install '.[test]'`: PostgreSQL comes from
the system or the pgserver wheel, as in the tests):

    python bench/workers.py                  # everything, median of 3 runs
    python bench/workers.py --runs 1 --jobs 100 --images 12 --claims 1000   # a quick smoke run

It starts a throwaway PostgreSQL on loopback (tests/pgcluster.py), builds its data sets once
in a work folder (default: a temporary folder), and gives every run a fresh database and a
fresh target folder. Each run's queue is filled beforehand by `reconcile --queue` (not timed);
what is timed is the wall time from starting the worker processes until the last one exits
(`reconcile worker --concurrency 1 --exit-when-idle` each). After every run the state is
checked: every job completed, each exactly once (one upload_start event per job, one job per
placement), every file in the target; a run that lost or duplicated a job stops the benchmark.

Sets:
  latency  --jobs small files (2-4 KB) to a `local` platform whose uploads each wait 50 ms
           first (bench/slow_local.py, standing for a remote API), by 1, 2 and 4 workers
  cpu      --images noise JPEGs of 2000x2000 px resized to at most 800 px (a rule's
           resize_images), to a plain `local` platform, by 1, 2 and 4 workers; a fresh
           rendition cache per run, shared by its workers (--renditions)
  claims   --claims queued jobs: the time of each claim in this process (PgStore, one write
           transaction around reconciler.store.queue.claim), and one worker draining as many
           jobs end to end (copy included)

It prints a table and writes bench/WORKERS.md (machine, date, command, every sample, medians,
speed-ups, targets).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))

from pgcluster import Cluster, start_cluster  # noqa: E402

WORKER_COUNTS = (1, 2, 4)
SCHEMA = "mediasync"
SLOW = HERE / "slow_local.py"
UPLOAD_DELAY = 0.05  # seconds, per upload of the latency-bound set
IMAGE_SIDE = 2000
MAX_DIMENSION = 800
TARGET_SPEEDUP = 1.8  # two workers vs one, latency-bound
TARGET_CLAIM_MS = 5.0  # per claim, at 10,000 queued jobs
SETTINGS = "binaries; fsync, synchronous_commit, full_page_writes off"


@dataclass
class Run:
    """One timed run of N workers: wall time, and where it went (from the jobs' rows)."""

    workers: int
    seconds: float
    startup: float  # first worker spawned -> first job claimed
    drain: float  # first job claimed -> last job completed
    tail: float  # last job completed -> last worker exited
    per_worker: list[int]  # jobs completed by each worker


@dataclass
class Series:
    name: str
    jobs: int
    runs: dict[int, list[Run]] = field(default_factory=dict)

    def median(self, workers: int, what: str = "seconds") -> float:
        return statistics.median(getattr(r, what) for r in self.runs[workers])

    def speedup(self, workers: int, what: str = "seconds") -> float:
        return self.median(1, what) / self.median(workers, what)


@dataclass
class Claims:
    """Per-claim times (ms) of one run: the whole write transaction, and claim() inside it."""

    total_ms: list[float]
    inner_ms: list[float]
    plan: str = ""


# -- data sets ----------------------------------------------------------------------------------


def manifests(folder: Path, target: Path, include: str, kind: str, transform: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    mime = "image/jpeg" if kind == "image" else "application/octet-stream"
    (folder / "all.yaml").write_text(
        "apiVersion: mediasync/v1\nkind: Platform\nmetadata: {code: REMOTE}\n"
        f"spec: {{platform_name: Remote, platform_type: other, driver: local, target: {target}}}\n"
        "---\napiVersion: mediasync/v1\nkind: AssetSet\nmetadata: {code: LIB}\n"
        f'spec: {{include: "{include}", asset_type: {kind}, category: library, '
        f'code_template: "F-{{path}}", mime_type: {mime}}}\n---\n'
        "apiVersion: mediasync/v1\nkind: SyncRule\nmetadata: {code: ALL}\n"
        "spec: {platform: REMOTE, source_category: all, asset_types: all, sync_mode: full"
        f"{transform}}}\n"
    )


def small_files(work: Path, name: str, count: int) -> dict[str, Path]:
    """``count`` files of 2-4 KB (500 a folder) and manifests sending them to one folder."""
    media = work / f"{name}-media"
    if not (media / f"done-{count}").exists():
        shutil.rmtree(media, ignore_errors=True)
        rng = random.Random(count)
        for i in range(count):
            path = media / "files" / f"d{i // 500:03d}" / f"f{i:06d}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rng.randbytes(rng.randint(2048, 4096)))
        (media / f"done-{count}").write_text("")
    data = {"media": media, "manifests": work / f"{name}-manifests", "target": work / f"{name}-out"}
    manifests(data["manifests"], data["target"], "files/**/*.bin", "document")
    return data


def images(work: Path, count: int) -> dict[str, Path]:
    """``count`` JPEGs of random noise, 2000x2000 px, and a rule resizing them to 800 px."""
    from PIL import Image

    media = work / "cpu-media"
    if not (media / f"done-{count}").exists():
        shutil.rmtree(media, ignore_errors=True)
        (media / "images").mkdir(parents=True)
        rng = random.Random(7)
        for i in range(count):
            noise = rng.randbytes(IMAGE_SIDE * IMAGE_SIDE * 3)
            image = Image.frombytes("RGB", (IMAGE_SIDE, IMAGE_SIDE), noise)
            image.save(media / "images" / f"img{i:04d}.jpg", quality=85)
        (media / f"done-{count}").write_text("")
    data = {"media": media, "manifests": work / "cpu-manifests", "target": work / "cpu-out"}
    rule = f", transform_rules: {{resize_images: true, max_dimension: {MAX_DIMENSION}}}"
    manifests(data["manifests"], data["target"], "images/*.jpg", "image", rule)
    return data


# -- running ------------------------------------------------------------------------------------


class Bench:
    """The cluster, the work folder, and how commands are run against a fresh database."""

    def __init__(self, cluster: Cluster, work: Path) -> None:
        self.cluster = cluster
        self.work = work
        self.env = {**cluster.env(), "RECONCILE_CACHE_DIR": str(work / "cache")}
        self.serial = 0

    def fresh(self, data: dict[str, Path], label: str) -> str:
        """A new database and an empty target; the database's URL."""
        self.serial += 1
        shutil.rmtree(data["target"], ignore_errors=True)
        shutil.rmtree(self.work / "renditions", ignore_errors=True)
        return self.cluster.createdb(f"bench_{label}_{self.serial}")

    def args(self, data: dict[str, Path], url: str, *extra: str) -> list[str]:
        return ["--manifests", str(data["manifests"]), "--media-root", str(data["media"]),
                "--state", url, "--renditions", str(self.work / "renditions"), *extra]  # fmt: skip

    def queue(self, data: dict[str, Path], url: str, jobs: int) -> None:
        """Plan and write the jobs (not timed); exactly ``jobs`` must be pending."""
        command = [sys.executable, "-m", "reconciler", *self.args(data, url, "--queue")]
        done = subprocess.run(command, cwd=self.work, env=self.env, capture_output=True,
                              text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"reconcile --queue exited {done.returncode}:\n{done.stderr}")
        found = self.query(url, "SELECT status, count(*) FROM sync_jobs GROUP BY 1")
        if found != [("pending", jobs)]:
            raise SystemExit(f"reconcile --queue wrote {found}, not {jobs} pending jobs")

    def workers(self, data: dict[str, Path], url: str, count: int, slow: bool) -> Run:
        """Start ``count`` workers at once and wait for all; the run as timed and recorded."""
        program = [sys.executable, str(SLOW)] if slow else [sys.executable, "-m", "reconciler"]
        command = [*program, "worker", *self.args(data, url),
                   "--concurrency", "1", "--exit-when-idle"]  # fmt: skip
        env = {**self.env, "BENCH_UPLOAD_DELAY": str(UPLOAD_DELAY)}
        logs = [self.work / f"worker-{n}.log" for n in range(count)]
        exits: list[float] = [0.0] * count
        procs: list[subprocess.Popen[bytes]] = []
        spawned_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        started = time.perf_counter()
        for log in logs:
            with log.open("wb") as err:
                procs.append(subprocess.Popen(command, cwd=self.work, env=env,
                                              stdout=subprocess.DEVNULL, stderr=err))  # fmt: skip

        def wait(n: int) -> None:
            procs[n].wait()
            exits[n] = time.perf_counter()

        waiters = [threading.Thread(target=wait, args=(n,)) for n in range(count)]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join()
        seconds = max(exits) - started
        for proc, log in zip(procs, logs, strict=True):
            if proc.returncode != 0:
                raise SystemExit(f"a worker exited {proc.returncode}:\n{log.read_text()}")
        first, last = self.query(url, "SELECT min(started_at), max(completed_at) FROM sync_jobs")[0]
        startup = (first - spawned_at).total_seconds()
        drain = (last - first).total_seconds()
        shares = self.query(url, "SELECT count(*) FROM sync_jobs GROUP BY claimed_by ORDER BY 1")
        return Run(count, seconds, startup, drain, seconds - startup - drain,
                   [int(n) for (n,) in shares])  # fmt: skip

    def check(self, data: dict[str, Path], url: str, jobs: int, workers: int) -> None:
        """Every job completed exactly once, every file landed; else the benchmark fails."""
        problems = []
        statuses = self.query(url, "SELECT status, count(*) FROM sync_jobs GROUP BY 1")
        if statuses != [("completed", jobs)]:
            problems.append(f"jobs by status {statuses}, not {jobs} completed")
        twice = self.query(url, "SELECT asset_id, platform_id FROM sync_jobs GROUP BY 1, 2 "
                                "HAVING count(*) > 1")  # fmt: skip
        if twice:
            problems.append(f"{len(twice)} placements with more than one job")
        starts = self.query(url, "SELECT count(*), count(DISTINCT job_id) FROM sync_events_log "
                                 "WHERE event_type = 'upload_start'")  # fmt: skip
        if starts != [(jobs, jobs)]:
            problems.append(f"upload_start events (all, distinct jobs) {starts}, not {jobs} each")
        unsynced = self.query(url, "SELECT count(*) FROM platform_assets WHERE sync_status <> "
                                   "'synced' OR remote_checksum IS NULL")  # fmt: skip
        if unsynced != [(0,)]:
            problems.append(f"{unsynced[0][0]} placements not synced")
        claimers = self.query(url, "SELECT count(DISTINCT claimed_by) FROM sync_jobs")[0][0]
        if claimers > workers:
            problems.append(f"{claimers} claimers for {workers} workers")
        landed = sum(1 for p in data["target"].rglob("*") if p.is_file())
        if landed != jobs:
            problems.append(f"{landed} files in the target, not {jobs}")
        if problems:
            raise SystemExit("the run lost or duplicated work: " + "; ".join(problems))

    def query(self, url: str, sql: str) -> list[tuple[Any, ...]]:
        with self.cluster.connect(url.rsplit("/", 1)[1]) as con:
            con.execute(f"SET search_path TO {SCHEMA}")
            return [tuple(r) for r in con.execute(sql).fetchall()]  # type: ignore[arg-type]


def scaling(bench: Bench, name: str, data: dict[str, Path], jobs: int, runs: int,
            slow: bool) -> Series:  # fmt: skip
    """N = 1, 2, 4 workers, ``runs`` times each (the order of N rotating per run)."""
    series = Series(name, jobs, {n: [] for n in WORKER_COUNTS})
    for i in range(runs):
        order = WORKER_COUNTS[i % 3 :] + WORKER_COUNTS[: i % 3]
        for count in order:
            url = bench.fresh(data, name)
            bench.queue(data, url, jobs)
            run = bench.workers(data, url, count, slow)
            bench.check(data, url, jobs, count)
            series.runs[count].append(run)
            print(f"  {name} run {i + 1}, {count} worker(s): {run.seconds:.2f} s "
                  f"(startup {run.startup:.2f}, drain {run.drain:.2f}, tail {run.tail:.2f}; "
                  f"jobs per worker {run.per_worker})", flush=True)  # fmt: skip
    return series


def claim_times(bench: Bench, data: dict[str, Path], jobs: int) -> Claims:
    """Claim every queued job one at a time in this process, timing each claim's write
    transaction (and claim() inside it); each job is then marked completed, untimed."""
    from reconciler.store.db import location, utcnow
    from reconciler.store.postgres import PgStore
    from reconciler.store.queue import _NEXT, claim

    url = bench.fresh(data, "claims")
    bench.queue(data, url, jobs)
    os.environ["PGPASSWORD"] = bench.cluster.password  # the throwaway cluster's
    where = location(url)
    store = PgStore(where, lease="worker:bench")  # type: ignore[arg-type]
    total, inner = [], []
    plan = "\n".join(
        row[0]
        for row in bench.query(
            url, "EXPLAIN ANALYZE " + _NEXT.format(only="").replace("?", "now()::timestamp")
        )
    )
    with store.session():
        for _ in range(jobs):
            t0 = time.perf_counter()
            with store.writing() as con:
                t1 = time.perf_counter()
                row = claim(con, "bench", utcnow())
                t2 = time.perf_counter()
            t3 = time.perf_counter()
            if row is None:
                raise SystemExit("a claim found nothing while jobs were pending")
            total.append(1000 * (t3 - t0))
            inner.append(1000 * (t2 - t1))
            with store.writing() as con:
                con.execute("UPDATE sync_jobs SET status = 'completed' WHERE id = ?", [row.id])
    left = bench.query(url, "SELECT status, count(*) FROM sync_jobs GROUP BY 1")
    if left != [("completed", jobs)]:
        raise SystemExit(f"after {jobs} claims the queue holds {left}")
    return Claims(total, inner, plan)


def drain_times(bench: Bench, data: dict[str, Path], jobs: int, runs: int) -> list[Run]:
    """One worker, --concurrency 1, no injected delay, draining ``jobs`` jobs."""
    samples = []
    for i in range(runs):
        url = bench.fresh(data, "drain")
        bench.queue(data, url, jobs)
        run = bench.workers(data, url, 1, slow=False)
        bench.check(data, url, jobs, 1)
        samples.append(run)
        print(f"  drain run {i + 1}: {run.seconds:.2f} s, {1000 * run.seconds / jobs:.2f} ms "
              f"per job (drain {1000 * run.drain / jobs:.2f} ms per job)", flush=True)  # fmt: skip
    return samples


# -- report -------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def commit() -> str:
    """HEAD, and whether the product's code differs from it (the run measured that code)."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "reconciler"], capture_output=True,
                           text=True)  # fmt: skip
    return (head.stdout.strip() or "?") + (" with uncommitted changes" if dirty.stdout else "")


def machine(bench: Bench) -> list[tuple[str, str]]:
    import PIL
    import psycopg

    from reconciler import __version__

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    with bench.cluster.connect() as con:
        version = con.execute("SHOW server_version").fetchone()
    return [
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", f"{cpu}, {os.cpu_count()} cores, {memory:.1f} GiB"),
        ("load average at start", " ".join(f"{x:.2f}" for x in os.getloadavg())),
        ("system", f"{platform.system()} {platform.release()}"),
        ("python", platform.python_version()),
        ("reconcile", f"{__version__}, commit {commit()}"),
        (
            "PostgreSQL",
            f"{version[0] if version else '?'} ({bench.cluster.binaries.origin} {SETTINGS})",
        ),
        ("psycopg", psycopg.__version__),
        ("Pillow", PIL.__version__),
    ]


def series_table(series: Series, unit: str) -> list[str]:
    lines = [
        "| workers | median wall | jobs/s | speed-up | median drain | drain speed-up "
        "| median startup | median tail | wall samples (s) | drain samples (s) | jobs per worker |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in WORKER_COUNTS:
        runs = series.runs[n]
        walls = ", ".join(f"{r.seconds:.2f}" for r in runs)
        drains = ", ".join(f"{r.drain:.2f}" for r in runs)
        shares = "; ".join("/".join(map(str, r.per_worker)) for r in runs)
        lines.append(
            f"| {n} | {series.median(n):.2f} s | {series.jobs / series.median(n):.1f} {unit} | "
            f"{series.speedup(n):.2f} x | {series.median(n, 'drain'):.2f} s | "
            f"{series.speedup(n, 'drain'):.2f} x | {series.median(n, 'startup'):.2f} s | "
            f"{series.median(n, 'tail'):.2f} s | {walls} | {drains} | {shares} |"
        )
    return lines


def report(
    facts: list[tuple[str, str]],
    command: str,
    runs: int,
    latency: Series,
    cpu: Series,
    claims: list[Claims],
    drains: list[Run],
    claimed: int,
) -> str:
    every = [ms for c in claims for ms in c.total_ms]
    inner = [ms for c in claims for ms in c.inner_ms]
    drain_ms = 1000 * statistics.median(r.seconds for r in drains) / claimed
    lines = [
        "# Queue workers: scaling and claim overhead",
        "",
        f"Produced by `{command}` (median of {runs} runs; each run a fresh database and target;"
        " the queue filled by `reconcile --queue` beforehand, not timed; wall time from starting"
        " the workers until the last one exits; each worker `--concurrency 1 --exit-when-idle`)."
        " Every run was checked: every job completed, exactly one upload_start per job, one job"
        " per placement, every file in the target.",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in facts),
        "",
        "Where a run's time went, from the jobs' rows: *startup* from spawning the workers to the"
        " first claim (interpreter, imports, manifests, lease, reclaim check), *drain* from the"
        " first claim to the last job's completion, *tail* from then until the last worker"
        " exited.",
        "",
        f"## Latency-bound: {latency.jobs} files of 2-4 KB, {1000 * UPLOAD_DELAY:.0f} ms injected"
        " per upload",
        "",
        "`bench/slow_local.py` wraps `LocalDriver.upload` with `time.sleep(0.05)` before the"
        " real copy.",
        "",
        *series_table(latency, "jobs/s"),
        "",
        f"## CPU-bound: {cpu.jobs} noise JPEGs of {IMAGE_SIDE}x{IMAGE_SIDE} px resized to"
        f" {MAX_DIMENSION} px",
        "",
        f"No injected delay; a fresh rendition cache per run. This machine has {os.cpu_count()}"
        " cores (and was shared with another job), so at most about 2x is possible.",
        "",
        *series_table(cpu, "images/s"),
        "",
        f"## Claim overhead at {claimed:,} queued jobs",
        "",
        f"In this process: `PgStore(location, lease='worker:bench')`, inside `store.session()`,"
        f" {claimed:,} times `with store.writing() as con: claim(con, 'bench', utcnow())`, each"
        " job then marked completed in a second, untimed write.",
        "",
        "| measure | median | p95 | mean | max |",
        "|---|---|---|---|---|",
        f"| whole write transaction (BEGIN, schema check, lease fence, claim, COMMIT) | "
        f"{statistics.median(every):.2f} ms | {percentile(every, 0.95):.2f} ms | "
        f"{statistics.fmean(every):.2f} ms | {max(every):.2f} ms |",
        f"| claim() alone, inside it | {statistics.median(inner):.2f} ms | "
        f"{percentile(inner, 0.95):.2f} ms | {statistics.fmean(inner):.2f} ms | "
        f"{max(inner):.2f} ms |",
        "",
        "Per run (whole transaction): "
        + "; ".join(
            f"run {i + 1}: median {statistics.median(c.total_ms):.2f}, p95 "
            f"{percentile(c.total_ms, 0.95):.2f}, mean {statistics.fmean(c.total_ms):.2f} ms"
            for i, c in enumerate(claims)
        )
        + ".",
        "",
        f"The claim query's plan at {claimed:,} pending jobs (EXPLAIN ANALYZE, first run):",
        "",
        "```",
        claims[0].plan,
        "```",
        "",
        f"End to end: one worker, `--concurrency 1`, no injected delay, draining {claimed:,} jobs"
        " to a local folder; wall time per job, which includes the copy, its read-back and the"
        " recording, not the claim alone:",
        "",
        "| median wall | per job | drain per job | samples (s) |",
        "|---|---|---|---|",
        f"| {statistics.median(r.seconds for r in drains):.2f} s | {drain_ms:.2f} ms | "
        f"{1000 * statistics.median(r.drain for r in drains) / claimed:.2f} ms | "
        + ", ".join(f"{r.seconds:.2f}" for r in drains)
        + " |",
        "",
        "## Targets",
        "",
        "| target | limit | measured | |",
        "|---|---|---|---|",
    ]
    two = latency.speedup(2)
    lines.append(f"| latency-bound, 2 workers vs 1 (wall, start-up included) | "
                 f">= {TARGET_SPEEDUP} x | {two:.2f} x | "
                 f"{'met' if two >= TARGET_SPEEDUP else 'missed'} |")  # fmt: skip
    steady = latency.speedup(2, "drain")
    lines.append(f"| latency-bound, 2 workers vs 1 (drain: first claim to last completion) | "
                 f">= {TARGET_SPEEDUP} x | {steady:.2f} x | "
                 f"{'met' if steady >= TARGET_SPEEDUP else 'missed'} |")  # fmt: skip
    mean = statistics.fmean(every)
    lines.append(f"| claim overhead at {claimed:,} jobs (mean of the whole transaction) | "
                 f"< {TARGET_CLAIM_MS:g} ms | {mean:.2f} ms (median "
                 f"{statistics.median(every):.2f}, p95 {percentile(every, 0.95):.2f}) | "
                 f"{'met' if mean < TARGET_CLAIM_MS else 'missed'} |")  # fmt: skip
    lines.append(f"| CPU-bound, 2 and 4 workers vs 1 | reported ({os.cpu_count()} cores: <= 2 x) "
                 f"| {cpu.speedup(2):.2f} x, {cpu.speedup(4):.2f} x | reported |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measure (median)")
    parser.add_argument("--jobs", type=int, default=1000, help="jobs of the latency-bound set")
    parser.add_argument("--images", type=int, default=60, help="images of the CPU-bound set")
    parser.add_argument("--claims", type=int, default=10_000, help="jobs of the claim measure")
    parser.add_argument("--workdir", type=Path, help="keep data sets here between runs")
    parser.add_argument("--results", type=Path, default=HERE / "WORKERS.md")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="reconcile-workers-"))
    work.mkdir(parents=True, exist_ok=True)
    work = work.resolve()
    print(f"work folder: {work}", flush=True)
    cluster = start_cluster()
    try:
        bench = Bench(cluster, work)
        facts = machine(bench)
        print(f"PostgreSQL on {cluster.host}:{cluster.port}", flush=True)
        latency = scaling(bench, "latency", small_files(work, "latency", args.jobs), args.jobs,
                          args.runs, slow=True)  # fmt: skip
        cpu = scaling(bench, "cpu", images(work, args.images), args.images, args.runs, slow=False)
        many = small_files(work, "claims", args.claims)
        claims = []
        for i in range(args.runs):
            claims.append(claim_times(bench, many, args.claims))
            c = claims[-1].total_ms
            print(f"  claims run {i + 1}: median {statistics.median(c):.2f} ms, p95 "
                  f"{percentile(c, 0.95):.2f} ms, mean {statistics.fmean(c):.2f} ms",
                  flush=True)  # fmt: skip
        drains = drain_times(bench, many, args.claims, args.runs)
    finally:
        cluster.stop()
    command = "python bench/workers.py " + " ".join(sys.argv[1:])
    text = report(facts, command.strip(), args.runs, latency, cpu, claims, drains, args.claims)
    args.results.write_text(text)
    print()
    print(text)
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
