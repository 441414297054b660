#!/usr/bin/env python3
"""Benchmarks: planning at 100,000 assets, and transfer throughput side by side with rclone and cp.

Run from a clone with the project installed (`pip install .`) and rclone on PATH
(`apt-get install rclone`):

    python bench/run.py                 # everything, median of 3 runs
    python bench/run.py --only A,C      # some of it
    python bench/run.py --scale 0.1     # a quick smoke run on a tenth of the data

It builds its data sets once in a work folder (default: a temporary folder), measures wall time
and peak RSS of each command in a subprocess, prints a table and writes bench/RESULTS.md
(machine, date, command, every sample, medians, ratios, targets). The hand-written analysis in
bench/ANALYSIS.md, if present, is appended to RESULTS.md.

Data sets:
  A  100,000 small files (1-4 KB) declared through 5 AssetSets; the example's 6 platforms, 5 rules
  B  100,000 Asset documents written out in YAML (100 files, about 26 MB); same platforms, rules
  C  10,000 files of 20-70 KB (about 450 MB), applied to a `local` driver target
  D  one 1 GiB file, applied to a `local` driver target
  E-H  a library of 100,000 files of 1-4 KB, one AssetSet, one `local` platform (see
     bench/library.py): G its first apply beside rclone copy --checksum, E the plan of the
     synced library beside rclone sync --dry-run, F the plan after 1 % changed, H the cost
     per file at 1,000, 10,000 and 100,000 files
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

import library
from measure import (
    TOOLS,
    WARM,
    Measure,
    check_recorded,
    machine,
    reconcile,
    run,
    sync,
    write_random_tree,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SHIPPED = REPO / "manifests"

GROUPS = [  # (folder, asset_type, category, extension, code prefix) for A's AssetSets
    ("videos/corporate", "video", "corporate", "mp4", "VC"),
    ("videos/marketing", "video", "marketing", "mp4", "VM"),
    ("videos/education", "video", "education", "mp4", "VE"),
    ("images/marketing", "image", "marketing", "jpg", "IM"),
    ("images/corporate", "image", "corporate", "jpg", "IC"),
]
TARGETS = {  # (data set, measure) -> (limit, kind) where kind is seconds, MB or ratio
    ("A", "warm"): (2.0, "s"),
    ("A", "cold"): (6.0, "s"),
    ("B", "warm"): (2.0, "s"),
    ("B", "cold"): (10.0, "s"),
    ("A", "rss"): (library.RSS_LIMIT, "MB"),
    ("B", "rss"): (library.RSS_LIMIT, "MB"),
    ("C", "vs rclone"): (1.0, "x"),
    ("D", "vs rclone"): (1.0, "x"),
}


def platforms_yaml(targets: Path) -> str:
    text = (SHIPPED / "platforms.yaml").read_text()
    return text.replace("target: ../state/platforms/", f"target: {targets}/")


def build_a(work: Path, scale: float) -> dict[str, Path]:
    media, manifests = work / "A-media", work / "A-manifests"
    count = int(100_000 * scale)
    if not (media / "done").exists():
        shutil.rmtree(media, ignore_errors=True)
        write_random_tree(
            media, count, 1024, 4096, seed=1, groups=[(g[0], g[3]) for g in GROUPS], per_dir=200
        )
        (media / "done").write_text(str(count))
    manifests.mkdir(exist_ok=True)
    (manifests / "platforms.yaml").write_text(platforms_yaml(work / "targets-A"))
    shutil.copy(SHIPPED / "sync-rules.yaml", manifests / "sync-rules.yaml")
    sets = []
    for folder, kind, category, ext, prefix in GROUPS:
        sets.append(
            f"apiVersion: mediasync/v1\nkind: AssetSet\nmetadata: {{code: SET-{prefix}}}\n"
            f'spec:\n  include: "{folder}/**/*.{ext}"\n  asset_type: {kind}\n'
            f'  category: {category}\n  code_template: "{prefix}-{{dir}}-{{stem}}"\n'
        )
    (manifests / "asset-sets.yaml").write_text("---\n".join(sets))
    return {"media": media, "manifests": manifests}


def build_b(work: Path, scale: float, a_media: Path) -> dict[str, Path]:
    manifests = work / "B-manifests"
    if not (manifests / "done").exists():
        shutil.rmtree(manifests, ignore_errors=True)
        manifests.mkdir()
        (manifests / "platforms.yaml").write_text(platforms_yaml(work / "targets-B"))
        shutil.copy(SHIPPED / "sync-rules.yaml", manifests / "sync-rules.yaml")
        files = sorted(
            p.relative_to(a_media).as_posix() for p in a_media.rglob("*.*") if p.name != "done"
        )
        assets = manifests / "assets"
        assets.mkdir()
        for chunk in range(0, len(files), 1000):
            docs = []
            for rel in files[chunk : chunk + 1000]:
                group = next(g for g in GROUPS if rel.startswith(g[0]))
                stem = rel.rsplit("/", 1)[1].split(".")[0]
                code = f"{group[4]}-{rel.split('/')[2]}-{stem}"
                docs.append(
                    f"apiVersion: mediasync/v1\nkind: Asset\nmetadata:\n  code: {code}\nspec:\n"
                    f'  title: "Library item {stem} of {group[2]}"\n'
                    f"  description: Generated for the planning benchmark\n"
                    f"  asset_type: {group[1]}\n  category: {group[2]}\n  file: {rel}\n"
                    f"  metadata: {{campaign: spring, region: emea}}\n"
                )
            (assets / f"assets-{chunk // 1000:03d}.yaml").write_text("---\n".join(docs))
        (manifests / "done").write_text("")
    return {"media": a_media, "manifests": manifests}


def build_transfer(work: Path, name: str, scale: float) -> dict[str, Path]:
    media, manifests = work / f"{name}-media", work / f"{name}-manifests"
    if not (media / "done").exists():
        shutil.rmtree(media, ignore_errors=True)
        media.mkdir(parents=True)
        if name == "C":
            write_random_tree(media, int(10_000 * scale), 20_000, 70_000, seed=3)
        else:
            block = random.Random(4).randbytes(1024 * 1024)
            with (media / "files").open("wb") as handle:  # D: one 1 GiB file
                for _ in range(int(1024 * scale)):
                    handle.write(block)
        (media / "done").write_text("")
    manifests.mkdir(exist_ok=True)
    include = "files/**/*.bin" if name == "C" else "files"
    (manifests / "all.yaml").write_text(
        "apiVersion: mediasync/v1\nkind: Platform\nmetadata: {code: NAS}\n"
        f"spec: {{platform_name: NAS, platform_type: other, driver: local, "
        f"target: {work / f'target-{name}'}}}\n---\n"
        "apiVersion: mediasync/v1\nkind: AssetSet\nmetadata: {code: LIB}\n"
        f'spec: {{include: "{include}", asset_type: document, category: library, '
        'code_template: "F-{path}", mime_type: application/octet-stream}\n---\n'
        "apiVersion: mediasync/v1\nkind: SyncRule\nmetadata: {code: ALL}\n"
        "spec: {platform: NAS, source_category: all, asset_types: all, sync_mode: full}\n"
    )
    return {"media": media, "manifests": manifests}


# -- measurements -----------------------------------------------------------------------------


def plan_runs(work: Path, name: str, data: dict[str, Path], runs: int) -> dict[str, Measure]:
    cold, warm = Measure(f"{name} cold"), Measure(f"{name} warm")
    state = work / f"{name}-state-none.duckdb"  # never created: a dry run writes no state
    args = reconcile(
        "--dry-run",
        "--manifests",
        str(data["manifests"]),
        "--media-root",
        str(data["media"]),
        "--state",
        str(state),
        "--output",
        "text",
    )
    for i in range(runs):
        cache = work / f"cache-{name}-{i}"
        shutil.rmtree(cache, ignore_errors=True)
        env = {"RECONCILE_CACHE_DIR": str(cache)}
        cold.samples.append(run(args, env))
        warm.samples.append(run(args, env))
        assert not state.exists()
        print(
            f"  {name} run {i + 1}: cold {cold.samples[-1].seconds:.2f} s, "
            f"warm {warm.samples[-1].seconds:.2f} s",
            flush=True,
        )
    return {"cold": cold, "warm": warm}


def transfer_runs(work: Path, name: str, data: dict[str, Path], runs: int) -> dict[str, Measure]:
    """Each tool copies the data set into a fresh target, one after the other, rotating who
    goes first. reconcile also starts from an empty state file each time; it is measured twice:
    with an empty hash cache (it hashes every master first), and with the hash cache its own
    previous runs left (as in daily use, where masters rarely change)."""
    measures = {tool: Measure(f"{name} {tool}") for tool in TOOLS}
    target = work / f"target-{name}"
    state = work / f"{name}-state.duckdb"
    source = data["media"]
    apply = reconcile("--manifests", str(data["manifests"]), "--media-root", str(source),
                      "--state", str(state), "--output", "json")  # fmt: skip
    commands = {
        "reconcile": apply,
        WARM: apply,
        "rclone": [
            "rclone",
            "copy",
            "--checksum",
            "--config",
            "/dev/null",
            str(source),
            str(target),
        ],
        "cp": ["cp", "-r", str(source), str(target)],
    }
    order = list(commands)
    for i in range(runs):
        for tool in order[i % 4 :] + order[: i % 4]:
            shutil.rmtree(target, ignore_errors=True)
            for leftover in work.glob(f"{name}-state.duckdb*"):
                leftover.unlink()
            cache = work / f"cache-{name}-{'warm' if tool == WARM else 'cold'}"
            if tool != WARM:
                shutil.rmtree(cache, ignore_errors=True)
            elif not cache.exists():  # fill it once, unmeasured
                run(commands[tool], {"RECONCILE_CACHE_DIR": str(cache)})
                shutil.rmtree(target, ignore_errors=True)
                for leftover in work.glob(f"{name}-state.duckdb*"):
                    leftover.unlink()
            sync()
            measures[tool].samples.append(run(commands[tool], {"RECONCILE_CACHE_DIR": str(cache)}))
            if tool in ("reconcile", WARM):
                check_recorded(state)
        print(
            f"  {name} run {i + 1}: "
            + ", ".join(f"{t} {m.samples[-1].seconds:.2f} s" for t, m in measures.items()),
            flush=True,
        )
    shutil.rmtree(target, ignore_errors=True)
    return measures


# -- report ------------------------------------------------------------------------------------


def verdicts(results: dict[str, dict[str, Measure]]) -> list[tuple[str, str, str, str]]:
    rows = []
    for (data, what), (limit, unit) in TARGETS.items():
        if data not in results:
            continue
        m = results[data]
        if what in ("cold", "warm"):
            value, shown = m[what].seconds, f"{m[what].seconds:.2f} s"
        elif what == "rss":
            value = max(m["cold"].rss_mb, m["warm"].rss_mb)
            shown = f"{value:.0f} MB"
        else:
            value = m["reconcile"].seconds / m["rclone"].seconds
            shown = f"{value:.2f} x"
            warm = m[WARM].seconds / m["rclone"].seconds
            rows.append(
                (
                    f"{data} {what}, warm hash cache",
                    f"<= {limit:g} {unit}",
                    f"{warm:.2f} x",
                    "met" if warm <= limit else "missed",
                )
            )
        rows.append(
            (f"{data} {what}", f"<= {limit:g} {unit}", shown, "met" if value <= limit else "missed")
        )
    return rows


def report(
    results: dict[str, dict[str, Measure]],
    facts: dict[str, int],
    command: str,
    runs: int,
    scale: float,
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Produced by `{command}` (median of {runs} runs"
        + (f", data scaled by {scale:g}" if scale != 1 else "")
        + ").",
        "",
    ]
    lines += ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in machine()] + [""]
    lines += _planning(results) + _transfers(results) + library.report(results, facts)
    lines += ["", "## Targets", "", "| target | limit | measured | |", "|---|---|---|---|"]
    rows = verdicts(results) + library.verdicts(results, facts)
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    analysis = HERE / "ANALYSIS.md"
    if analysis.exists():
        lines += ["", analysis.read_text().strip()]
    return "\n".join(lines) + "\n"


def _planning(results: dict[str, dict[str, Measure]]) -> list[str]:
    if not results.keys() & {"A", "B"}:
        return []
    lines = [
        "## Planning (`reconcile --dry-run`)",
        "",
        "| data set | run | median | peak RSS | samples (s) |",
        "|---|---|---|---|---|",
    ]
    for data in ("A", "B"):
        for what in ("cold", "warm"):
            if data in results:
                m = results[data][what]
                samples = ", ".join(f"{s.seconds:.2f}" for s in m.samples)
                lines.append(
                    f"| {data} | {what} | {m.seconds:.2f} s | {m.rss_mb:.0f} MB | {samples} |"
                )
    return lines


def _transfers(results: dict[str, dict[str, Measure]]) -> list[str]:
    if not results.keys() & {"C", "D"}:
        return []
    lines = [
        "",
        "## Transfers (fresh target and empty state each run)",
        "",
        "| data set | tool | median | vs rclone | vs cp | peak RSS | samples (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for data in ("C", "D"):
        if data not in results:
            continue
        m = results[data]
        for tool in TOOLS:
            samples = ", ".join(f"{s.seconds:.2f}" for s in m[tool].samples)
            lines.append(
                f"| {data} | {tool} | {m[tool].seconds:.2f} s | "
                f"{m[tool].seconds / m['rclone'].seconds:.2f} x | "
                f"{m[tool].seconds / m['cp'].seconds:.2f} x | {m[tool].rss_mb:.0f} MB | "
                f"{samples} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per measure (median)")
    parser.add_argument(
        "--only", default="A,B,C,D,E", help="data sets to run, e.g. A,C (E runs E-H)"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the data sizes")
    parser.add_argument("--workdir", type=Path, help="keep data sets here between runs")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md")
    args = parser.parse_args()
    only = {x.strip().upper() for x in args.only.split(",")}
    if only & {"C", "D", "E"} and not shutil.which("rclone"):
        raise SystemExit("rclone is not installed: apt-get install rclone (or --only A,B)")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="reconcile-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}", flush=True)
    results: dict[str, dict[str, Measure]] = {}
    if only & {"A", "B"}:
        a = build_a(work, args.scale)
        if "A" in only:
            results["A"] = plan_runs(work, "A", a, args.runs)
        if "B" in only:
            results["B"] = plan_runs(work, "B", build_b(work, args.scale, a["media"]), args.runs)
    for name in ("C", "D"):
        if name in only:
            results[name] = transfer_runs(
                work, name, build_transfer(work, name, args.scale), args.runs
            )
    facts: dict[str, int] = {}
    if only & {"E", "F", "G", "H"}:
        library_results, facts = library.measure_library(work, args.scale, args.runs)
        results.update(library_results)
    command = "python bench/run.py " + " ".join(sys.argv[1:])
    text = report(results, facts, command.strip(), args.runs, args.scale)
    args.results.write_text(text)
    print()
    print(text)
    print(
        json.dumps({k: {m: round(v.seconds, 3) for m, v in d.items()} for k, d in results.items()})
    )
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
