"""Reports as tables: status, distribution, events, jobs and conflicts, in text, json or csv.

The store returns each report as a :class:`reconciler.store.queries.Report` (a name, columns
and rows); the CLI's report commands pick one of these renderers through
:mod:`reconciler.render.formats` by ``--output``. Renderers return strings and never print.
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
