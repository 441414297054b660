"""Markdown for a pull-request comment: a plan as a summary heading and a table.

Picked by the CLI through :mod:`reconciler.render.formats` for ``--output markdown`` (plans
only: CI runs ``reconcile --dry-run -o markdown`` and posts the result). ``color`` is accepted
for a uniform signature and ignored.
"""

from __future__ import annotations

from typing import Any

from reconciler.plan.actions import Plan
from reconciler.render.phrases import (
    LISTED_IN_MARKDOWN,
    PLAN_SIGNS,
    listed,
    more,
    plan_summary,
    reason_of,
    rendition_of,
    versions,
)
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
    lines += [f"> {_md(n)}" for n in plan.notes]
    if plan.notes:
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
