"""Renderers: one result object, several output formats (text for people, json for machines).

The core returns data (for instance :class:`~reconciler.manifests.validate.ValidationResult`);
the CLI picks a renderer by ``--output`` from the ``*_RENDERERS`` tables here. Renderers return
strings and never print, so they are easy to test.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from reconciler.manifests.validate import ValidationResult

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
