"""Reports as tables: status, distribution, events, jobs and conflicts, in text, json or csv.

The store returns each report as a :class:`reconciler.store.queries.Report` (a name, columns
and rows); the CLI's report commands pick one of these renderers through
:mod:`reconciler.render.formats` by ``--output``. Renderers return strings and never print.
A terminal table shows the git provenance of jobs and events as one short ``commit`` column
(``abc1234``, ``abc1234+dirty``); json and csv keep the full ``git_commit`` and ``git_dirty``.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from reconciler.render.json import JSON_FORMAT_VERSION
from reconciler.store.queries import Report

# Columns too long for a terminal table; they stay in json and csv.
TEXT_HIDDEN = {"details", "created_at", "git_dirty"}
NO_WRAP_WIDTH = 10_000
SHORT_COMMIT = 7  # hex digits of a commit in a terminal table, as `git log --oneline`
TEXT_HEADERS = {"git_commit": "commit"}


def short_commit(commit: str | None, dirty: bool | None) -> str:
    """``abc1234``, ``abc1234+dirty`` when the manifests had uncommitted changes, or empty."""
    if not commit:
        return ""
    return commit[:SHORT_COMMIT] + ("+dirty" if dirty else "")


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
        column = report.columns[i]
        table.add_column(TEXT_HEADERS.get(column, column), no_wrap=True)
    for row in report.records():
        table.add_row(*(_text_cell(row, report.columns[i]) for i in shown))
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=NO_WRAP_WIDTH,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
    )
    console.print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def _text_cell(row: dict[str, Any], column: str) -> str:
    if column == "git_commit":
        return short_commit(row["git_commit"], row.get("git_dirty"))
    return _cell(row[column])


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
