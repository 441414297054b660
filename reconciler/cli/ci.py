"""What the command line does for CI and terminals: the colour decision and the step summary.

Used by the other modules of :mod:`reconciler.cli`. The global ``--color auto|always|never``
option (on the ``reconcile`` group) and the ``NO_COLOR`` / ``FORCE_COLOR`` conventions decide,
through :func:`reconciler.render.style.wants_color`, whether any command colours its output;
every place that colours asks :func:`color_for`. When ``GITHUB_STEP_SUMMARY`` names a file (as
on a GitHub Actions runner), a dry run appends its markdown there (:func:`append_step_summary`),
and the manifests' problems reach stdout in the CI formats (:func:`show_problems`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from reconciler.errors import UsageError
from reconciler.manifests.validate import ValidationResult
from reconciler.render.github import problem_command
from reconciler.render.markdown import validation_markdown
from reconciler.render.style import COLOR_CHOICES, wants_color

COLOR_KEY = "reconcile.color"  # where the --color choice waits in the click context's meta
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"


def _remember_color(ctx: click.Context, _param: click.Parameter, value: str) -> str:
    ctx.meta[COLOR_KEY] = value
    return value


def color_option(func: Any) -> Any:
    """The global ``--color``: given before the command, it holds for every command."""
    return click.option(
        "--color",
        type=click.Choice(list(COLOR_CHOICES)),
        default="auto",
        show_default=True,
        is_eager=True,
        expose_value=False,
        callback=_remember_color,
        help="Colour the output: auto (on a terminal, unless NO_COLOR is set; FORCE_COLOR "
        "colours a pipe too), always or never. Goes before the command: "
        "`reconcile --color never status`.",
    )(func)


def color_for(isatty: bool) -> bool:
    """Whether to colour a stream that is (or is not) a terminal, for this command."""
    ctx = click.get_current_context(silent=True)
    choice = ctx.meta.get(COLOR_KEY, "auto") if ctx is not None else "auto"
    return wants_color(choice, os.environ, isatty)


def append_step_summary(markdown: str | Callable[[], str]) -> None:
    """Append ``markdown`` (or what the callable renders: only then, so that a plan of
    100,000 placements is not rendered for nobody) to the file ``GITHUB_STEP_SUMMARY``
    names, when it is set."""
    target = os.environ.get(STEP_SUMMARY)
    if not target:
        return
    if callable(markdown):
        markdown = markdown()
    try:
        with open(target, "a", encoding="utf-8") as summary:
            summary.write(markdown.rstrip("\n") + "\n\n")
    except OSError as exc:
        raise UsageError(
            f"cannot append the plan to {STEP_SUMMARY} ({target}): {exc.strerror or exc}"
        ) from None


def show_problems(result: ValidationResult, output: str, summary: bool = False) -> None:
    """The manifests' problems on stdout for the CI formats: for markdown, the list when they
    are invalid (so that a pull-request comment is never empty); for github, one workflow
    command per problem, warnings included. ``summary``: invalid manifests also go to the
    step summary, where the plan would have gone."""
    invalid = result.manifest_set is None
    if output == "github" and result.problems:
        click.echo("\n".join(problem_command(p) for p in result.problems))
    elif output == "markdown" and invalid:
        click.echo(validation_markdown(result))
    if summary and invalid:
        append_step_summary(validation_markdown(result))
