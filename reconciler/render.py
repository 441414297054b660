"""Renderers: one result object, several output formats (text for people, json for machines).

The core returns data (for instance :class:`~reconciler.manifests.validate.ValidationResult`);
the CLI picks a renderer by ``--output`` from the ``*_RENDERERS`` tables here. Renderers return
strings and never print, so they are easy to test.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from reconciler.manifests.validate import ValidationResult
from reconciler.store.queries import Report

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
