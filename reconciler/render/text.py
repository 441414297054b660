"""Text for people: validation problems, plans, explanations, apply and verify results.

Picked by the CLI through :mod:`reconciler.render.formats` for ``--output text``. Each renderer
takes a result and ``color`` (the CLI's decision: text on a terminal) and returns a string; it
never prints. Colour comes from :mod:`reconciler.render.style`.
"""

from __future__ import annotations

from typing import Any

from reconciler.apply.run import ApplyResult
from reconciler.apply.verify import VerifyResult
from reconciler.manifests.validate import ValidationResult
from reconciler.model import ActionKind, JobStatus
from reconciler.plan.actions import Action, Plan
from reconciler.plan.explain import Explanation, PlatformExplanation
from reconciler.render.phrases import (
    LISTED_PER_PLATFORM,
    PLAN_SIGNS,
    apply_summary,
    listed,
    more,
    plan_summary,
    reason_of,
    refresh_header,
    rendition_of,
    validation_summary,
    versions,
)
from reconciler.render.style import paint, style
from reconciler.units import human_size

# -- validation --------------------------------------------------------------------------------


def validation_text(result: ValidationResult, color: bool = False) -> str:
    lines = []
    for problem in result.problems:
        line = problem.format()
        if color:
            location, _, rest = line.partition(": ")
            tint = "red" if problem.severity == "error" else "yellow"
            line = style(location, bold=True) + ": " + style(rest, fg=tint)
        lines.append(line)
    summary = validation_summary(result)
    lines.append(paint(summary, color, fg="green" if result.ok else "red", bold=True))
    return "\n".join(lines)


# -- plans -------------------------------------------------------------------------------------


def _by_platform(plan: Plan) -> dict[str, list[Action]]:
    groups: dict[str, list[Action]] = {}
    for action in plan.actions:
        groups.setdefault(action.platform, []).append(action)
    return groups


def _platform_lines(plan: Plan, actions: list[Action], width: int, color: bool) -> list[str]:
    """One platform's changes, at most LISTED_PER_PLATFORM of them, and what was left out."""
    visible = [a for a in actions if a.action != ActionKind.NOOP]
    out = []
    for a in visible[:LISTED_PER_PLATFORM]:
        sign, tint = PLAN_SIGNS[a.action]
        head = (
            f"  {sign} {a.action:<15} {a.asset:<{width}}  {versions(a):<12} "
            f"{human_size(a.size_bytes):>10}  {reason_of(a)}"
        )
        out.append(paint(head, color, fg=tint))
        if (rendition := rendition_of(plan, a)) is not None:
            out.append(f"      rendition: {rendition}")
    if len(visible) > LISTED_PER_PLATFORM:
        out.append("    " + more(visible[LISTED_PER_PLATFORM:]))
    if unchanged := len(actions) - len(visible):
        out.append(f"    ({unchanged:,} unchanged)")
    return out


def plan_text(plan: Plan, color: bool = False) -> str:
    """Terraform-like: changes grouped by platform, one line each, then a summary. A platform
    with more than LISTED_PER_PLATFORM changes lists the first ones and counts the rest."""
    header = refresh_header(plan)
    out = [f"note: {n}" for n in ([header] if header else []) + plan.notes]
    width = min(max((len(a.asset) for a in listed(plan)), default=0), 40)
    for platform, actions in _by_platform(plan).items():
        if all(a.action == ActionKind.NOOP for a in actions):
            continue
        out += ["", paint(platform, color, bold=True)]
        out += _platform_lines(plan, actions, width, color)
    if not plan.changes:
        out += ["", "No changes to make."]
    out += ["", paint(plan_summary(plan), color, bold=True)]
    return "\n".join(out).lstrip("\n")


# -- explain -----------------------------------------------------------------------------------


def _asset_lines(a: dict[str, Any]) -> list[str]:
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
    return lines


def _recorded_line(r: dict[str, Any] | None) -> str:
    if not r:
        return "  recorded: no copy on this platform"
    local, remote = (r["local_checksum"] or "-")[:16], (r["remote_checksum"] or "-")[:16]
    copy = f" (the copy's {remote})" if remote not in ("-", local) else ""
    return (
        f"  recorded: copy #{r['id']} {r['sync_status']}, version {r['synced_version']}, "
        f"checksum {local}{copy}, last synced "
        f"{r['last_synced_at'] or 'never'}, {r['open_conflicts']} open conflicts"
    )


def _placement_lines(p: PlatformExplanation, color: bool) -> list[str]:
    action = p.action.action if p.action else "nothing"
    lines = ["", paint(f"{p.platform}: {action}", color, bold=True)]
    if p.action is not None:
        lines.append(f"  why:      {p.action.reason}")
    for v in p.rules:
        state = "wins" if v.won else ("matches" if v.matched else "does not match")
        tail = f" ({'; '.join(v.why_not)})" if v.why_not else ""
        lines.append(f"  rule:     {v.rule} (priority {v.priority}) {state}{tail}")
    for check, ok in p.checks:
        lines.append(f"  check:    {'ok  ' if ok else 'FAIL'} {check}")
    lines.append(f"  sends:    {_sends(p.rendition)}")
    lines.append(_recorded_line(p.recorded))
    return lines


def explain_text(ex: Explanation, color: bool = False) -> str:
    lines = _asset_lines(ex.asset)
    for p in ex.platforms:
        lines += _placement_lines(p, color)
    if ex.unmatched:
        lines += ["", "Rules that send this asset nowhere:"]
        for v in ex.unmatched:
            lines.append(f"  {v.rule} -> {v.platform}: {'; '.join(v.why_not)}")
    if not ex.platforms and not ex.unmatched:
        lines += ["", "No sync rule targets any platform."]
    return "\n".join(lines)


def _sends(rendition: dict[str, Any] | None) -> str:
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


# -- apply and verify --------------------------------------------------------------------------


def apply_text(result: ApplyResult, color: bool = False) -> str:
    lines = [f"recovered: {note}" for note in result.recovered]
    for job in result.jobs:
        if job.status in (JobStatus.FAILED, JobStatus.DEFERRED):
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
    for action in result.with_workers:
        lines.append(f"queued already: {action.action} {action.asset} -> {action.platform}")
    if not result.jobs:
        lines.append("Nothing to queue." if result.queued else "Nothing to apply.")
    lines.append(apply_summary(result))
    return "\n".join(lines)


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
