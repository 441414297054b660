"""The sentences and cells that several output formats share.

Summary lines (of a validation, a plan, an apply run) and the pieces of a plan line (its sign,
its versions, its rendition, its reason) read the same in text, markdown and error messages, so
they are made once, here. Called by :mod:`reconciler.render.text`,
:mod:`reconciler.render.markdown` and, for the "manifests are invalid" message, by the CLI.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from reconciler.apply.run import ApplyResult
from reconciler.manifests.problems import Problem
from reconciler.manifests.validate import ValidationResult
from reconciler.model import ActionKind
from reconciler.plan.actions import Action, Plan, Refresh

# the sign and the colour of each kind of plan action
PLAN_SIGNS: dict[str, tuple[str, str]] = {
    ActionKind.CREATE: ("+", "green"),
    ActionKind.UPDATE: ("~", "yellow"),
    ActionKind.UPDATE_METADATA: ("~", "yellow"),
    ActionKind.DELETE: ("-", "red"),
    ActionKind.BLOCKED: ("!", "red"),
    ActionKind.HELD: ("#", "magenta"),
    ActionKind.ORPHAN: ("?", "bright_black"),
    ActionKind.NOOP: (" ", ""),
    ActionKind.IMPORT: ("<", "cyan"),
    ActionKind.MOVED: (">", "cyan"),
    ActionKind.ADOPT: ("=", "cyan"),
}
# the kinds a plan summary names only when the plan has some (adopting what is out there)
ADOPTION = ((ActionKind.IMPORT, "to import"), (ActionKind.MOVED, "to move"),
            (ActionKind.ADOPT, "to adopt"))  # fmt: skip

LISTED_PER_PLATFORM = 200  # text lines per platform; json always lists every action
LISTED_IN_MARKDOWN = 500  # table rows in a pull-request comment


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def validation_summary(result: ValidationResult) -> str:
    """One line: what was found, and whether it is valid."""
    c = result.counts
    assets = plural(c["assets"], "asset")
    if c["generated_assets"]:
        assets += f" ({c['generated_assets']} from asset sets)"
    found = (
        f"{plural(c['platforms'], 'platform')}, {assets}, {plural(c['sync_rules'], 'sync rule')}"
        f", {plural(c['asset_sets'], 'asset set')}"
    )
    for kind, word in (("imports", "import"), ("moves", "move")):
        if c.get(kind):
            found += f", {plural(c[kind], word)}"
    found += f" in {plural(c['files'], 'file')}"
    warnings = len(result.warnings)
    warned = f", {plural(warnings, 'warning')}" if warnings else ""
    if result.ok:
        return f"valid: {found}{warned}"
    files = len({p.file for p in result.errors})
    return (
        f"invalid: {plural(len(result.errors), 'error')} in {plural(files, 'file')}{warned} "
        f"({found})"
    )


def problem_detail(problem: Problem) -> str:
    """A problem without its location: ``KIND CODE: FIELD.PATH: message``, as the text line
    has it after ``FILE:LINE:COL: `` (and its severity)."""
    parts = [problem.subject(), problem.field or "", problem.message]
    return ": ".join(p for p in parts if p)


def versions(action: Action) -> str:
    """``v1 -> v2`` for an update, the version concerned otherwise."""
    if action.action == ActionKind.UPDATE and action.target_version is not None:
        return f"v{action.target_version} -> v{action.source_version}"
    if action.action in (ActionKind.DELETE, ActionKind.ORPHAN):
        return f"v{action.target_version}" if action.target_version is not None else ""
    return f"v{action.source_version}" if action.source_version is not None else ""


def rendition_of(plan: Plan, action: Action) -> str | None:
    """What an upload sends when its rule transforms the master, and whether it is made."""
    if not action.rendition_id or action.action not in (ActionKind.CREATE, ActionKind.UPDATE):
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
    changes += "".join(f", {s[kind]} {words}" for kind, words in ADOPTION if s[kind])
    rest = (
        f"{s['blocked']} blocked, {s['held']} held by conflicts, {s['orphan']} orphaned, "
        f"{s['noop']} unchanged"
    )
    waiting = len(plan.waiting)
    later = (
        f" {waiting} of the changes wait for their schedule or an explicit run." if waiting else ""
    )
    return f"Plan: {changes}; {rest}.{later}"


def age(seconds: float) -> str:
    """A duration as people say it: ``40 s``, ``12 min``, ``5 h``, ``3 d``."""
    for unit, size, up_to in (("s", 1, 90), ("min", 60, 90 * 60), ("h", 3600, 36 * 3600)):
        if seconds < up_to:
            return f"{max(0, round(seconds / size))} {unit}"
    return f"{round(seconds / 86400)} d"


def _moment(text: str | None) -> datetime | None:
    try:
        return datetime.strptime(text or "", "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return None


def refresh_header(plan: Plan) -> str | None:
    """What a plan of ``--no-refresh`` did not read, and how old what it used instead is;
    None for a plan that read the masters."""
    if plan.refresh != Refresh.NONE:
        return None
    made, oldest = _moment(plan.created_at), _moment(plan.observed_at)
    since = (
        f"oldest observation {age((made - oldest).total_seconds())} ago"
        if made is not None and oldest is not None
        else "no recorded observation used"
    )
    return f"planned against recorded observations (--no-refresh): masters not read; {since}"


def listed(plan: Plan) -> list[Action]:
    """The actions a person is shown: every one but the no-ops."""
    return [a for a in plan.actions if a.action != ActionKind.NOOP]


def more(hidden: list[Action]) -> str:
    """The line that counts the actions a listing left out."""
    kinds = Counter(a.action for a in hidden)
    detail = ", ".join(f"{n:,} {kind}" for kind, n in kinds.most_common())
    return f"... and {len(hidden):,} more ({detail}); --output json lists every action"


def apply_summary(result: ApplyResult) -> str:
    c = result.counts()
    if result.queued:
        pending = sum(1 for j in result.jobs if j.status == "pending")
        line = (
            f"Queue {result.run_id}: {pending} jobs queued for workers, "
            f"{len(result.with_workers)} changes already queued, {c['failed']} failed; "
            f"{len(result.blocked)} blocked, {len(result.held)} held, "
            f"{len(result.waiting)} waiting; {result.open_conflicts} open conflicts."
        )
        undone = result.undone()
        return line + (f" Exit 3: {', '.join(undone)}." if undone else "")
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
