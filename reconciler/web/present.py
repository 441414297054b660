"""The dashboard's results as JSON-ready data: what the API answers and what the templates
read. Reports become exactly what ``reconcile status -o json`` (and the other report
commands) print, so the browser, the API and the terminal show the same figures.
"""

from __future__ import annotations

import json
from typing import Any

from reconciler.plan.actions import Plan
from reconciler.render.json import explain_json, plan_json
from reconciler.render.markdown import plan_markdown
from reconciler.render.tables import report_json
from reconciler.store.dashboard import Page
from reconciler.store.queries import Report
from reconciler.viewing import AssetView


def rows(report: Report) -> list[dict[str, Any]]:
    """A report's rows as its JSON output gives them (times as ISO text)."""
    found: list[dict[str, Any]] = json.loads(report_json(report))[report.name]
    return found


def report(report: Report) -> dict[str, Any]:
    """A report as its JSON output."""
    found: dict[str, Any] = json.loads(report_json(report))
    if report.notes:
        found["notes"] = report.notes
    return found


def page(found: Page) -> dict[str, Any]:
    return {
        **report(found.report),
        "total": found.total,
        "offset": found.offset,
        "limit": found.limit,
    }


def asset(view: AssetView) -> dict[str, Any]:
    record = (
        rows(Report("asset", list(view.record), [tuple(view.record.values())]))[0]
        if (view.record)
        else None
    )
    explanation = json.loads(explain_json(view.explanation)) if view.explanation else None
    return {
        "asset_code": view.code,
        "asset": record,
        "placements": rows(view.placements),
        "events": rows(view.events),
        "explanation": explanation,
        "thumbnail": f"/thumbs/{view.code}" if view.image else None,
    }


def plan(made: Plan) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(plan_json(made))
    found["markdown"] = plan_markdown(made)
    return found
