"""Renderers: one result object, several output formats (text for people, json for machines).

The core returns data (for instance :class:`~reconciler.manifests.validate.ValidationResult`);
the CLI picks a renderer by ``--output`` from the ``*_RENDERERS`` tables here. Renderers return
strings and never print, so they are easy to test.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import click

from reconciler.apply.run import ApplyResult
from reconciler.apply.verify import VerifyResult
from reconciler.manifests.validate import ValidationResult
from reconciler.plan.actions import Action, Plan
from reconciler.plan.explain import Explanation
from reconciler.store.queries import Report
from reconciler.units import human_size

JSON_FORMAT_VERSION = 1


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def validation_summary(result: ValidationResult) -> str:
    """One line: what was found, and whether it is valid."""
    c = result.counts
    assets = _plural(c["assets"], "asset")
    if c["generated_assets"]:
        assets += f" ({c['generated_assets']} from asset sets)"
    found = (
        f"{_plural(c['platforms'], 'platform')}, {assets}, {_plural(c['sync_rules'], 'sync rule')}"
        f", {_plural(c['asset_sets'], 'asset set')} in {_plural(c['files'], 'file')}"
    )
    warnings = len(result.warnings)
    warned = f", {_plural(warnings, 'warning')}" if warnings else ""
    if result.ok:
        return f"valid: {found}{warned}"
    files = len({p.file for p in result.errors})
    return (
        f"invalid: {_plural(len(result.errors), 'error')} in {_plural(files, 'file')}{warned} "
        f"({found})"
    )


def validation_text(result: ValidationResult, color: bool = False) -> str:
    lines = []
    for problem in result.problems:
        line = problem.format()
        if color:
            location, _, rest = line.partition(": ")
            tint = "red" if problem.severity == "error" else "yellow"
            line = click.style(location, bold=True) + ": " + click.style(rest, fg=tint)
        lines.append(line)
    summary = validation_summary(result)
    if color:
        summary = click.style(summary, fg="green" if result.ok else "red", bold=True)
    lines.append(summary)
    return "\n".join(lines)


def validation_json(result: ValidationResult, color: bool = False) -> str:
    payload: dict[str, Any] = {
        "format_version": JSON_FORMAT_VERSION,
        "valid": result.ok,
        "manifests": str(result.manifests_dir),
        "media_root": str(result.media_root),
        "summary": {
            **result.counts,
            "errors": len(result.errors),
            "warnings": len(result.warnings),
        },
        "problems": [p.to_dict() for p in result.problems],
    }
    return json.dumps(payload, indent=2, ensure_ascii=False)


VALIDATION_RENDERERS: dict[str, Callable[[ValidationResult, bool], str]] = {
    "text": validation_text,
    "json": validation_json,
}


# -- reports (status, distribution, events, jobs, conflicts) ---------------------------------

# Columns too long for a terminal table; they stay in json and csv.
TEXT_HIDDEN = {"details", "created_at"}
NO_WRAP_WIDTH = 10_000


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _plain(column: str, value: Any) -> Any:
    """A value as JSON has it: ISO times, numbers, details parsed back into objects."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if column == "details" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def report_text(report: Report, color: bool = False) -> str:
    """Aligned columns, kubectl style: a bold header on a terminal, nothing wrapped, so that a
    pipe gets one line per row (long rows wrap in the terminal, not in the table)."""
    from rich.console import Console  # imported when a table is drawn, not on every run
    from rich.table import Table

    if not report.rows:
        return report.empty
    shown = [i for i, c in enumerate(report.columns) if c not in TEXT_HIDDEN]
    table = Table(box=None, show_edge=False, pad_edge=False, header_style="bold" if color else "")
    for i in shown:
        table.add_column(report.columns[i], no_wrap=True)
    for row in report.rows:
        table.add_row(*(_cell(row[i]) for i in shown))
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=NO_WRAP_WIDTH,
        force_terminal=color,
        color_system="standard" if color else None,
        highlight=False,
    )
    console.print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def report_json(report: Report, color: bool = False) -> str:
    rows = [
        {c: _plain(c, v) for c, v in zip(report.columns, row, strict=True)} for row in report.rows
    ]
    return json.dumps(
        {"format_version": JSON_FORMAT_VERSION, report.name: rows}, indent=2, ensure_ascii=False
    )


def report_csv(report: Report, color: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(report.columns)
    for row in report.rows:
        writer.writerow(_cell(v) for v in row)
    return buffer.getvalue().rstrip("\n")


REPORT_RENDERERS: dict[str, Callable[..., str]] = {
    "text": report_text,
    "json": report_json,
    "csv": report_csv,
}


# -- plans -------------------------------------------------------------------------------------

PLAN_SIGNS = {
    "create": ("+", "green"),
    "update": ("~", "yellow"),
    "update-metadata": ("~", "yellow"),
    "delete": ("-", "red"),
    "blocked": ("!", "red"),
    "held": ("#", "magenta"),
    "orphan": ("?", "bright_black"),
    "noop": (" ", ""),
}


def versions(action: Action) -> str:
    if action.action == "update" and action.target_version is not None:
        return f"v{action.target_version} -> v{action.source_version}"
    if action.action in ("delete", "orphan"):
        return f"v{action.target_version}" if action.target_version is not None else ""
    return f"v{action.source_version}" if action.source_version is not None else ""


def rendition_of(plan: Plan, action: Action) -> str | None:
    """What an upload sends when its rule transforms the master, and whether it is made."""
    if not action.rendition_id or action.action not in ("create", "update"):
        return None
    made = "cached" if action.rendition_id in plan.cached_renditions else "to make"
    return f"{action.transforms} ({made}, rule {action.rule})"


def reason_of(action: Action) -> str:
    return f"{action.reason}; waits: {action.waiting}" if action.waiting else action.reason


def plan_summary(plan: Plan) -> str:
    s = plan.summary()
    changes = (
        f"{s['create']} to create, {s['update']} to update, {s['update-metadata']} metadata "
        f"updates, {s['delete']} to delete"
    )
    rest = (
        f"{s['blocked']} blocked, {s['held']} held by conflicts, {s['orphan']} orphaned, "
        f"{s['noop']} unchanged"
    )
    waiting = len(plan.waiting)
    later = (
        f" {waiting} of the changes wait for their schedule or an explicit run." if waiting else ""
    )
    return f"Plan: {changes}; {rest}.{later}"


def _by_platform(plan: Plan) -> dict[str, list[Action]]:
    groups: dict[str, list[Action]] = {}
    for action in plan.actions:
        groups.setdefault(action.platform, []).append(action)
    return groups


LISTED_PER_PLATFORM = 200  # text lines per platform; json always lists every action
LISTED_IN_MARKDOWN = 500  # table rows in a pull-request comment


def _more(hidden: list[Action]) -> str:
    kinds = Counter(a.action for a in hidden)
    detail = ", ".join(f"{n:,} {kind}" for kind, n in kinds.most_common())
    return f"... and {len(hidden):,} more ({detail}); --output json lists every action"


def plan_text(plan: Plan, color: bool = False) -> str:
    """Terraform-like: changes grouped by platform, one line each, then a summary. A platform
    with more than LISTED_PER_PLATFORM changes lists the first ones and counts the rest."""
    out = [f"note: {n}" for n in plan.notes]
    shown = [a for a in plan.actions if a.action != "noop"]
    width = min(max((len(a.asset) for a in shown), default=0), 40)
    for platform, actions in _by_platform(plan).items():
        visible = [a for a in actions if a.action != "noop"]
        unchanged = len(actions) - len(visible)
        if not visible:
            continue
        out.append("")
        out.append(click.style(platform, bold=True) if color else platform)
        for a in visible[:LISTED_PER_PLATFORM]:
            sign, tint = PLAN_SIGNS[a.action]
            head = (
                f"  {sign} {a.action:<15} {a.asset:<{width}}  {versions(a):<12} "
                f"{human_size(a.size_bytes):>10}  {reason_of(a)}"
            )
            out.append(click.style(head, fg=tint) if color and tint else head)
            if (rendition := rendition_of(plan, a)) is not None:
                out.append(f"      rendition: {rendition}")
        if len(visible) > LISTED_PER_PLATFORM:
            out.append("    " + _more(visible[LISTED_PER_PLATFORM:]))
        if unchanged:
            out.append(f"    ({unchanged:,} unchanged)")
    if not plan.changes:
        out.append("")
        out.append("No changes to make.")
    out.append("")
    summary = plan_summary(plan)
    out.append(click.style(summary, bold=True) if color else summary)
    return "\n".join(out).lstrip("\n")


def plan_json(plan: Plan, color: bool = False) -> str:
    return json.dumps(plan.to_dict(), indent=2, ensure_ascii=False)


def _md(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def plan_markdown(plan: Plan, color: bool = False) -> str:
    """For a pull-request comment: a summary heading and one table row per non-noop action."""
    lines = [f"### {plan_summary(plan)}", ""]
    lines += [f"> {_md(n)}" for n in plan.notes]
    if plan.notes:
        lines.append("")
    shown = [a for a in plan.actions if a.action != "noop"]
    if not shown:
        lines.append("No changes to make.")
        return "\n".join(lines)
    lines.append("| | action | platform | asset | versions | size | rule | reason | rendition |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for a in shown[:LISTED_IN_MARKDOWN]:
        sign = PLAN_SIGNS[a.action][0]
        lines.append(
            f"| `{sign}` | {a.action} | {_md(a.platform)} | {_md(a.asset)} | {versions(a)} | "
            f"{human_size(a.size_bytes)} | {_md(a.rule)} | {_md(reason_of(a))} | "
            f"{_md(rendition_of(plan, a) or '')} |"
        )
    if len(shown) > LISTED_IN_MARKDOWN:
        lines += ["", _more(shown[LISTED_IN_MARKDOWN:])]
    return "\n".join(lines)


PLAN_RENDERERS: dict[str, Callable[[Plan, bool], str]] = {
    "text": plan_text,
    "json": plan_json,
    "markdown": plan_markdown,
}


# -- explain -----------------------------------------------------------------------------------


def explain_text(ex: Explanation, color: bool = False) -> str:
    a = ex.asset
    size = human_size(a["size_bytes"]) if a["size_bytes"] is not None else "unreadable"
    digest = (a["checksum"] or "")[:16]
    lines = [
        f"{a['code']}: {a['title']}",
        f"  {a['asset_type']}, category {a['category']}, status {a['status']}, "
        f"{a['mime_type']}, {size}" + (f", sha256 {digest}..." if digest else ""),
        f"  file {a['file']}" + (f" (from AssetSet {a['asset_set']})" if a["asset_set"] else ""),
    ]
    if a["error"]:
        lines.append(f"  cannot read it: {a['error']}")
    for p in ex.platforms:
        action = p.action.action if p.action else "nothing"
        lines += [
            "",
            click.style(f"{p.platform}: {action}", bold=True)
            if color
            else f"{p.platform}: {action}",
        ]
        if p.action is not None:
            lines.append(f"  why:      {p.action.reason}")
        for v in p.rules:
            state = "wins" if v.won else ("matches" if v.matched else "does not match")
            tail = f" ({'; '.join(v.why_not)})" if v.why_not else ""
            lines.append(f"  rule:     {v.rule} (priority {v.priority}) {state}{tail}")
        for check, ok in p.checks:
            lines.append(f"  check:    {'ok  ' if ok else 'FAIL'} {check}")
        lines.append(f"  sends:    {_sends(p.rendition)}")
        if p.recorded:
            r = p.recorded
            local, remote = (r["local_checksum"] or "-")[:16], (r["remote_checksum"] or "-")[:16]
            copy = f" (the copy's {remote})" if remote not in ("-", local) else ""
            lines.append(
                f"  recorded: copy #{r['id']} {r['sync_status']}, version {r['synced_version']}, "
                f"checksum {local}{copy}, last synced "
                f"{r['last_synced_at'] or 'never'}, {r['open_conflicts']} open conflicts"
            )
        else:
            lines.append("  recorded: no copy on this platform")
    if ex.unmatched:
        lines += ["", "Rules that send this asset nowhere:"]
        for v in ex.unmatched:
            lines.append(f"  {v.rule} -> {v.platform}: {'; '.join(v.why_not)}")
    if not ex.platforms and not ex.unmatched:
        lines += ["", "No sync rule targets any platform."]
    return "\n".join(lines)


def _sends(rendition: dict | None) -> str:
    """The explain line saying what the platform receives."""
    if rendition is None or rendition["id"] is None:
        sent = "the master itself (no transform rules)"
        if rendition is not None:
            sent += f"; the recorded copy is rendition {rendition['recorded_id'][:12]}"
        return sent
    rid = rendition["id"]
    where = "cached" if rendition["cached"] else "not cached yet: made on apply"
    sent = f"rendition {rid[:12]} ({rendition['transforms']}; rule {rendition['rule']}), {where}"
    recorded = rendition["recorded_id"]
    if recorded and recorded != rid:
        sent += f"; the recorded copy is rendition {recorded[:12]}"
    return sent


def explain_json(ex: Explanation, color: bool = False) -> str:
    return json.dumps(
        {"format_version": JSON_FORMAT_VERSION, **ex.to_dict()},
        indent=2,
        ensure_ascii=False,
        default=str,
    )


EXPLAIN_RENDERERS: dict[str, Callable[[Explanation, bool], str]] = {
    "text": explain_text,
    "json": explain_json,
}


# -- apply and verify ---------------------------------------------------------------------------


def apply_summary(result: ApplyResult) -> str:
    c = result.counts()
    line = (
        f"Apply {result.run_id}: {c['completed']} completed, {c['failed']} failed, "
        f"{c['deferred']} deferred; {len(result.blocked)} blocked, {len(result.held)} held, "
        f"{len(result.waiting)} waiting; "
        f"{result.open_conflicts} open conflicts."
    )
    undone = result.undone()
    if undone:
        line += f" Exit 3: not everything was done ({', '.join(undone)})."
    return line


def apply_text(result: ApplyResult, color: bool = False) -> str:
    lines = [f"recovered: {note}" for note in result.recovered]
    for job in result.jobs:
        if job.status in ("failed", "deferred"):
            lines.append(
                f"{job.status}: {job.action.asset} -> {job.action.platform} "
                f"({job.job_type}): {job.error}"
            )
    for action in result.blocked + result.held:
        lines.append(f"{action.action}: {action.asset} -> {action.platform}: {action.reason}")
    for action in result.waiting:
        lines.append(
            f"waiting: {action.action} {action.asset} -> {action.platform}: {action.waiting}"
        )
    if not result.jobs:
        lines.append("Nothing to apply.")
    lines.append(apply_summary(result))
    return "\n".join(lines)


def apply_record(result: ApplyResult) -> dict[str, Any]:
    c = result.counts()
    return {
        "format_version": JSON_FORMAT_VERSION,
        "run_id": result.run_id,
        "exit_code": int(result.exit_code),
        "summary": {
            **c,
            "blocked": len(result.blocked),
            "held": len(result.held),
            "waiting": len(result.waiting),
            "open_conflicts": result.open_conflicts,
        },
        "recovered": result.recovered,
        "jobs": [
            {
                "job_code": j.code,
                "job_type": j.job_type,
                "asset": j.action.asset,
                "platform": j.action.platform,
                "rule": j.action.rule,
                "status": j.status,
                "error": j.error,
                "retries": j.retries,
                "key": j.key,
                "eligible_at": j.eligible_at.isoformat() if j.eligible_at else None,
            }
            for j in result.jobs
        ],
        "blocked": [
            {"asset": a.asset, "platform": a.platform, "reason": a.reason} for a in result.blocked
        ],
        "held": [
            {"asset": a.asset, "platform": a.platform, "reason": a.reason} for a in result.held
        ],
        "waiting": [
            {
                "asset": a.asset,
                "platform": a.platform,
                "action": a.action,
                "waiting": a.waiting,
                "scheduled_for": a.scheduled_for,
            }
            for a in result.waiting
        ],
    }


def apply_json(result: ApplyResult, color: bool = False) -> str:
    return json.dumps(apply_record(result), indent=2, ensure_ascii=False)


def apply_jsonl(result: ApplyResult, color: bool = False) -> str:
    """The closing line of a JSON-lines stream: the run's summary."""
    return json.dumps(
        {
            "summary": apply_record(result)["summary"],
            "run_id": result.run_id,
            "exit_code": int(result.exit_code),
        }
    )


APPLY_RENDERERS: dict[str, Callable[[ApplyResult, bool], str]] = {
    "text": apply_text,
    "json": apply_json,
    "jsonl": apply_jsonl,
}


def verify_text(result: VerifyResult, color: bool = False) -> str:
    lines = [f"{p}: {status} ({detail})" for p, (status, detail) in result.health.items()]
    for c in result.conflicts:
        lines.append(
            f"conflict: {c['conflict_type']}: {c['asset']} on {c['platform']} ({c['key']})"
        )
    for c in result.resynced:
        lines.append(
            f"re-sync: {c['conflict_type']}: {c['asset']} on {c['platform']} "
            "(on_conflict: source_wins)"
        )
    for e in result.errors:
        lines.append(f"error: {e['asset']} on {e['platform']}: {e['error']}")
    lines.append(
        f"Verified {result.checked} copies: {result.ok} match, "
        f"{len(result.conflicts)} conflicts, {len(result.resynced)} to re-sync, "
        f"{len(result.errors)} could not be checked."
    )
    return "\n".join(lines)


def verify_json(result: VerifyResult, color: bool = False) -> str:
    return json.dumps(
        {
            "format_version": JSON_FORMAT_VERSION,
            "checked": result.checked,
            "ok": result.ok,
            "conflicts": result.conflicts,
            "resynced": result.resynced,
            "errors": result.errors,
            "health": {p: {"status": s, "detail": d} for p, (s, d) in result.health.items()},
        },
        indent=2,
        ensure_ascii=False,
    )


VERIFY_RENDERERS: dict[str, Callable[[VerifyResult, bool], str]] = {
    "text": verify_text,
    "json": verify_json,
}
