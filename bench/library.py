"""Data sets E-H: the large library a media team lives with, each measured beside its anchor.

One AssetSet over N small files (1-4 KB, 500 a folder), one `local` platform, one rule:

  G  first apply of the 100,000 files: fresh target, empty state, empty hash cache, beside
     `rclone copy --checksum` of the same tree into a fresh folder (who goes first rotates)
  E  the plan of that fully synced library, nothing changed (`reconcile --dry-run`, the hash
     cache the apply left), beside `rclone sync --dry-run` of the tree rclone copied
  F  the plan after 1 % of the masters got new bytes and mtimes, absolute and per changed
     file; the hashing of those files (sha256 in this process) is measured too, for the
     target F <= E + hashing + 0.5 s
  H  the cost curve: apply and no-change plan at 1,000, 10,000 and 100,000 files, per file
     (100,000 is G and E)

Every measured apply is checked: every job completed and every copy verified.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import time
from pathlib import Path

from measure import Measure, Sample, check_recorded, reconcile, run, sync, write_random_tree

SIZES = (1_000, 10_000, 100_000)
CHANGED_SHARE = 0.01
LIBRARY = "L"  # the data set key of E-H in the results


def build(work: Path, count: int) -> dict[str, Path]:
    """The library of ``count`` files and its manifests (built once per work folder)."""
    media, manifests = work / f"L{count}-media", work / f"L{count}-manifests"
    if not (media / "done").exists():
        shutil.rmtree(media, ignore_errors=True)
        write_random_tree(media, count, 1024, 4096, seed=5)
        (media / "done").write_text(str(count))
    manifests.mkdir(exist_ok=True)
    target = work / f"L{count}-target"
    (manifests / "all.yaml").write_text(
        "apiVersion: mediasync/v1\nkind: Platform\nmetadata: {code: NAS}\n"
        f"spec: {{platform_name: NAS, platform_type: other, driver: local, target: {target}}}\n"
        "---\napiVersion: mediasync/v1\nkind: AssetSet\nmetadata: {code: LIB}\n"
        'spec: {include: "files/**/*.bin", asset_type: document, category: library, '
        'code_template: "F-{path}", mime_type: application/octet-stream}\n---\n'
        "apiVersion: mediasync/v1\nkind: SyncRule\nmetadata: {code: ALL}\n"
        "spec: {platform: NAS, source_category: all, asset_types: all, sync_mode: full}\n"
    )
    return {
        "media": media,
        "manifests": manifests,
        "target": target,
        "state": work / f"L{count}-state.duckdb",
        "cache": work / f"L{count}-cache",
        "rclone": work / f"L{count}-rclone",
    }


def _set_aside(path: Path) -> None:
    """Move a previous run's target out of the way, to be deleted after the measurements:
    ext4 makes every file created soon after many deletions slower (it scans past the
    recently deleted inodes), which made each run slower than the one before, whoever ran."""
    if path.exists():
        trash = path.parent / "L-trash"
        trash.mkdir(exist_ok=True)
        path.rename(trash / f"{path.name}-{time.monotonic_ns()}")


def _fresh(data: dict[str, Path]) -> None:
    _set_aside(data["target"])
    shutil.rmtree(data["cache"], ignore_errors=True)
    for leftover in data["state"].parent.glob(data["state"].name + "*"):
        leftover.unlink()


def _args(data: dict[str, Path], *extra: str) -> list[str]:
    """reconcile on the library: an apply reports in JSON (every job), a dry run prints the
    plan as a person reads it (the text plan; JSON would list every unchanged placement)."""
    return reconcile(
        *extra,
        "--manifests",
        str(data["manifests"]),
        "--media-root",
        str(data["media"]),
        "--state",
        str(data["state"]),
        "--output",
        "text" if "--dry-run" in extra else "json",
    )


def _env(data: dict[str, Path]) -> dict[str, str]:
    return {"RECONCILE_CACHE_DIR": str(data["cache"])}


def first_apply(data: dict[str, Path], runs: int, label: str) -> dict[str, Measure]:
    """reconcile's first apply beside rclone copy --checksum, who goes first rotating; the
    last reconcile run leaves its target, state and hash cache for the plans."""
    ours, theirs = Measure(f"{label} reconcile"), Measure(f"{label} rclone")
    rclone = ["rclone", "copy", "--checksum", "--config", "/dev/null"]
    for i in range(runs):
        for tool in ("reconcile", "rclone") if i % 2 == 0 else ("rclone", "reconcile"):
            if tool == "rclone":
                _set_aside(data["rclone"])
                sync()
                theirs.samples.append(run([*rclone, str(data["media"]), str(data["rclone"])]))
            else:
                _fresh(data)
                sync()
                ours.samples.append(run(_args(data), _env(data)))
                check_recorded(data["state"])
        print(
            f"  {label} run {i + 1}: reconcile {ours.samples[-1].seconds:.2f} s, "
            f"rclone {theirs.samples[-1].seconds:.2f} s",
            flush=True,
        )
    if runs % 2 == 0:  # the last run was rclone's: leave reconcile's world for the plans
        _fresh(data)
        run(_args(data), _env(data))
    return {"reconcile": ours, "rclone": theirs}


def no_change_plan(data: dict[str, Path], runs: int, label: str) -> dict[str, Measure]:
    """The dry run of the synced library beside rclone's no-op sync, alternating."""
    ours, theirs = Measure(f"{label} reconcile"), Measure(f"{label} rclone")
    rclone = ["rclone", "sync", "--dry-run", "--config", "/dev/null"]
    for i in range(runs):
        ours.samples.append(run(_args(data, "--dry-run"), _env(data)))
        theirs.samples.append(run([*rclone, str(data["media"]), str(data["rclone"])]))
        print(
            f"  {label} run {i + 1}: reconcile {ours.samples[-1].seconds:.2f} s, "
            f"rclone {theirs.samples[-1].seconds:.2f} s",
            flush=True,
        )
    first = Measure(f"{label} first", ours.samples[:1])
    return {"reconcile": ours, "rclone": theirs, "first": first}


def changed_plan(data: dict[str, Path], runs: int) -> tuple[dict[str, Measure], int]:
    """The dry run after 1 % of the masters changed (new bytes, new mtime; other files each
    run), and the time this process takes to hash the changed files."""
    files = sorted((data["media"] / "files").rglob("*.bin"))
    count = max(1, int(len(files) * CHANGED_SHARE))
    rng = random.Random(11)
    plan, hashing = Measure("F reconcile"), Measure("F hashing")
    for i in range(runs):
        changed = rng.sample(files, count)
        for path in changed:
            path.write_bytes(rng.randbytes(rng.randint(1024, 4096)))
            later = time.time() + 60 + i
            os.utime(path, (later, later))
        sync()
        started = time.perf_counter()
        for path in changed:
            hashlib.sha256(path.read_bytes()).hexdigest()
        hashing.samples.append(Sample(time.perf_counter() - started, 0.0))
        plan.samples.append(run(_args(data, "--dry-run"), _env(data)))
        print(f"  F run {i + 1}: {plan.samples[-1].seconds:.2f} s for {count} changed", flush=True)
    return {"reconcile": plan, "hashing": hashing}, count


def measure_library(
    work: Path, scale: float, runs: int
) -> tuple[dict[str, dict[str, Measure]], dict[str, int]]:
    """G, E, F at the largest size, then H's smaller sizes (apply and plan); with the facts
    the report needs (the sizes, how many files F changed)."""
    sizes = [max(10, int(n * scale)) for n in SIZES]
    results: dict[str, dict[str, Measure]] = {}
    large = build(work, sizes[-1])
    results["G"] = first_apply(large, runs, "G")
    results["E"] = no_change_plan(large, runs, "E")
    results["F"], changed = changed_plan(large, runs)
    for size in sizes[:-1]:
        small = build(work, size)
        results[f"H{size}"] = {
            "apply": first_apply(small, runs, f"H {size}")["reconcile"],
            "plan": no_change_plan(small, runs, f"H {size}")["reconcile"],
        }
    results[f"H{sizes[-1]}"] = {
        "apply": results["G"]["reconcile"],
        "plan": results["E"]["reconcile"],
    }
    shutil.rmtree(work / "L-trash", ignore_errors=True)
    return results, {"changed": changed, "files": sizes[-1], **{f"H{n}": n for n in sizes}}


# -- report ------------------------------------------------------------------------------------

RSS_LIMIT = 400.0  # MB, every scenario


def _per_file_ms(m: Measure, files: int) -> float:
    return 1000 * m.seconds / files


def verdicts(
    results: dict[str, dict[str, Measure]], facts: dict[str, int]
) -> list[tuple[str, str, str, str]]:
    """(target, limit, measured, met or missed) for E-H."""
    if "E" not in results:
        return []
    rows: list[tuple[str, str, str, str]] = []

    def verdict(name: str, limit: str, shown: str, ok: bool) -> None:
        rows.append((name, limit, shown, "met" if ok else "missed"))

    e, f, g = results["E"], results["F"], results["G"]
    verdict("E no-change plan", "<= 1.5 s", f"{e['reconcile'].seconds:.2f} s",
            e["reconcile"].seconds <= 1.5)  # fmt: skip
    e_ratio = e["reconcile"].seconds / e["rclone"].seconds
    verdict("E vs rclone sync --dry-run", "<= 1.25 x", f"{e_ratio:.2f} x", e_ratio <= 1.25)
    f_limit = e["reconcile"].seconds + f["hashing"].seconds + 0.5
    verdict("F plan after 1 % changed", f"<= E + hashing + 0.5 s = {f_limit:.2f} s",
            f"{f['reconcile'].seconds:.2f} s", f["reconcile"].seconds <= f_limit)  # fmt: skip
    g_ratio = g["reconcile"].seconds / g["rclone"].seconds
    verdict("G first apply vs rclone copy --checksum", "<= 2.0 x", f"{g_ratio:.2f} x",
            g_ratio <= 2.0)  # fmt: skip
    sizes = sorted(v for k, v in facts.items() if k.startswith("H"))
    if len(sizes) >= 2:
        big, small = sizes[-1], sizes[-2]
        growth = _per_file_ms(results[f"H{big}"]["apply"], big) / _per_file_ms(
            results[f"H{small}"]["apply"], small
        )
        verdict(f"H apply per file, {big:,} vs {small:,}", "<= 1.25 x", f"{growth:.2f} x",
                growth <= 1.25)  # fmt: skip
    for name in ("E", "F", "G"):
        rss = results[name]["reconcile"].rss_mb
        verdict(f"{name} peak RSS", f"<= {RSS_LIMIT:g} MB", f"{rss:.0f} MB", rss <= RSS_LIMIT)
    return rows


def report(results: dict[str, dict[str, Measure]], facts: dict[str, int]) -> list[str]:
    """The markdown sections of E-H."""
    if "E" not in results:
        return []
    files = facts["files"]

    def line(name: str, what: str, m: Measure, anchor: Measure | None) -> str:
        samples = ", ".join(f"{s.seconds:.2f}" for s in m.samples)
        ratio = f"{m.seconds / anchor.seconds:.2f} x" if anchor else ""
        return (f"| {name} | {what} | {m.seconds:.2f} s | {ratio} | {m.rss_mb:.0f} MB | "
                f"{samples} |")  # fmt: skip

    e, f, g = results["E"], results["F"], results["G"]
    changed = facts["changed"]
    extra = f["reconcile"].seconds - e["reconcile"].seconds
    lines = [
        "",
        f"## A large library ({files:,} files of 1-4 KB, one AssetSet, one local platform)",
        "",
        "| scenario | tool | median | vs anchor | peak RSS | samples (s) |",
        "|---|---|---|---|---|---|",
        line("G first apply", "reconcile", g["reconcile"], g["rclone"]),
        line("G first apply", "rclone copy --checksum", g["rclone"], None),
        line("E no-change plan", "reconcile --dry-run", e["reconcile"], e["rclone"]),
        line("E no-change plan", "rclone sync --dry-run", e["rclone"], None),
        line("E: its first run, after the apply", "reconcile --dry-run", e["first"], None),
        line(f"F plan, {changed:,} changed", "reconcile --dry-run", f["reconcile"], None),
        line(f"F hashing the {changed:,} changed", "sha256 in Python", f["hashing"], None),
        "",
        f"F per changed file: {1000 * extra / changed:.2f} ms beyond the no-change plan.",
        "",
        "### H: cost per file as the library grows",
        "",
        "| files | apply | apply per file | no-change plan | plan per file | apply RSS "
        "| plan RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in sorted(v for k, v in facts.items() if k.startswith("H")):
        apply, plan = results[f"H{size}"]["apply"], results[f"H{size}"]["plan"]
        lines.append(
            f"| {size:,} | {apply.seconds:.2f} s | {_per_file_ms(apply, size):.3f} ms | "
            f"{plan.seconds:.2f} s | {_per_file_ms(plan, size):.3f} ms | "
            f"{apply.rss_mb:.0f} MB | {plan.rss_mb:.0f} MB |"
        )
    return lines
