"""GitHub Actions workflow commands: manifest problems as annotations on a pull request's diff.

Picked by the CLI through :mod:`reconciler.render.formats` for ``--output github`` (of
``reconcile validate`` and of a dry run). Each problem becomes one line
``::error file=PATH,line=N,col=M::message`` (``::warning`` for a warning), which the Actions
runner turns into an annotation at that line; the escaping follows the runner's rules (``%``,
CR and LF in the message; also ``:`` and ``,`` in a property). Paths are made relative to the
working directory, as the runner expects them. ``color`` is accepted for a uniform signature
and ignored.
"""

from __future__ import annotations

import os

from reconciler.manifests.problems import Problem
from reconciler.manifests.validate import ValidationResult
from reconciler.plan.actions import Plan
from reconciler.render.phrases import plan_summary, problem_detail, validation_summary
from reconciler.render.text import plan_text


def escape_data(text: str) -> str:
    """The message of a workflow command: ``%``, CR and LF percent-encoded."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A property value (``file=...``): as a message, and ``:`` and ``,`` too."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def relative(path: str, cwd: str | None = None) -> str:
    """``path`` relative to the working directory (``cwd``), with ``/`` separators."""
    start = cwd if cwd is not None else os.getcwd()
    shown = os.path.relpath(path, start) if os.path.isabs(path) else os.path.normpath(path)
    return shown.replace(os.sep, "/")


def command(name: str, message: str, properties: dict[str, str | int] | None = None) -> str:
    """One workflow command line: ``::name k=v,k=v::message``."""
    props = ",".join(f"{k}={escape_property(str(v))}" for k, v in (properties or {}).items())
    return f"::{name}{' ' + props if props else ''}::{escape_data(message)}"


def problem_command(problem: Problem, cwd: str | None = None) -> str:
    level = "error" if problem.severity == "error" else "warning"
    where: dict[str, str | int] = {
        "file": relative(problem.file, cwd),
        "line": problem.line,
        "col": problem.column,
    }
    return command(level, problem_detail(problem), where)


def validation_github(result: ValidationResult, color: bool = False) -> str:
    """One workflow command per problem, then the summary as a plain log line."""
    lines = [problem_command(p) for p in result.problems]
    lines.append(validation_summary(result))
    return "\n".join(lines)


def _inert(line: str) -> str:
    """A log line that the runner cannot take for a command (none of ours starts so)."""
    return " " + line if line.startswith("::") else line


def plan_github(plan: Plan, color: bool = False) -> str:
    """The plan as text, then its summary as a notice on the workflow run."""
    lines = [_inert(line) for line in plan_text(plan, False).splitlines()]
    lines.append(command("notice", plan_summary(plan), {"title": "reconcile plan"}))
    return "\n".join(lines)
