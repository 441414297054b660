"""Markdown for a pull-request comment: a plan as a summary heading and a table, or the
manifests' problems as a list.

Picked by the CLI through :mod:`reconciler.render.formats` for ``--output markdown``: CI runs
``reconcile --dry-run -o markdown`` and posts the result, so invalid manifests print their
problems here (``FILE:LINE:COL``: message) rather than nothing; ``reconcile validate -o
markdown`` prints the same list. ``color`` is accepted for a uniform signature and ignored.
"""

from __future__ import annotations

from typing import Any

from reconciler.manifests.problems import Problem
from reconciler.manifests.validate import ValidationResult
from reconciler.plan.actions import Plan
from reconciler.render.phrases import (
    LISTED_IN_MARKDOWN,
    PLAN_SIGNS,
    listed,
    more,
    plan_summary,
    problem_detail,
    reason_of,
    refresh_header,
    rendition_of,
    validation_summary,
    versions,
)
from reconciler.render.tables import short_commit
from reconciler.units import human_size

TABLE_HEAD = [
    "| | action | platform | asset | versions | size | rule | reason | rendition |",
    "|---|---|---|---|---|---|---|---|---|",
]


def _md(text: Any) -> str:
    """A table cell: pipes escaped, on one line."""
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def plan_markdown(plan: Plan, color: bool = False) -> str:
    """A summary heading and one table row per non-noop action (the first LISTED_IN_MARKDOWN)."""
    lines = [f"### {plan_summary(plan)}", ""]
    if (against := planned_against(plan)) is not None:
        lines += [against, ""]
    header = refresh_header(plan)
    notes = ([header] if header else []) + plan.notes
    lines += [f"> {_md(n)}" for n in notes]
    if notes:
        lines.append("")
    shown = listed(plan)
    if not shown:
        lines.append("No changes to make.")
        return "\n".join(lines)
    lines += TABLE_HEAD
    for a in shown[:LISTED_IN_MARKDOWN]:
        sign = PLAN_SIGNS[a.action][0]
        lines.append(
            f"| `{sign}` | {a.action} | {_md(a.platform)} | {_md(a.asset)} | {versions(a)} | "
            f"{human_size(a.size_bytes)} | {_md(a.rule)} | {_md(reason_of(a))} | "
            f"{_md(rendition_of(plan, a) or '')} |"
        )
    if len(shown) > LISTED_IN_MARKDOWN:
        lines += ["", more(shown[LISTED_IN_MARKDOWN:])]
    return "\n".join(lines)


def planned_against(plan: Plan) -> str | None:
    """The recorded state a plan was planned against, in one sentence; None when the plan
    does not say (a plan read from a file)."""
    state = plan.against
    if state is None:
        return None
    kind = {"duckdb": "DuckDB", "postgresql": "PostgreSQL"}.get(state.backend, state.backend)
    where = f"{_inline(kind)} state {_code(state.location)}"
    if not state.exists:
        return f"Planned against empty recorded state: no {where} yet."
    applied = "no apply recorded yet"
    if state.last_apply_at is not None:
        when = state.last_apply_at.replace("T", " ").replace("Z", " UTC")
        commit = short_commit(state.last_apply_commit, state.last_apply_dirty)
        applied = f"last apply {_inline(when)}, " + (
            f"commit {_code(commit)}" if commit else "no git commit recorded"
        )
    return f"Planned against the {where} (schema version {state.schema_version}); {applied}."


_INLINE_SPECIALS = str.maketrans(
    {c: "\\" + c for c in "\\`*[]<>"}
)  # what would turn into markup or HTML


def _inline(text: str) -> str:
    """Running text in a list item: markup characters escaped, on one line."""
    return " ".join(text.translate(_INLINE_SPECIALS).splitlines())


def _code(text: str) -> str:
    """A code span that holds ``text`` whatever backticks it contains."""
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def _problem_item(problem: Problem) -> str:
    where = _code(f"{problem.file}:{problem.line}:{problem.column}")
    severity = "" if problem.severity == "error" else f"**{problem.severity}**: "
    return f"- {where}: {severity}{_inline(problem_detail(problem))}"


def validation_markdown(result: ValidationResult, color: bool = False) -> str:
    """A heading that says whether the manifests are valid, and one list item per problem."""
    lines = [f"### Manifests {_inline(validation_summary(result))}", ""]
    if not result.problems:
        lines.append("No problems found.")
    lines += [_problem_item(p) for p in result.problems]
    return "\n".join(lines)
