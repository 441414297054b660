"""Options and helpers shared by the ``reconcile`` commands (see :mod:`reconciler.cli.main`)."""

from __future__ import annotations

import math
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler.cache import Cache
from reconciler.errors import ExitCode, ManifestError, ReconcilerError
from reconciler.manifests.validate import validate_tree
from reconciler.model import ManifestSet
from reconciler.redact import redact
from reconciler.render.formats import REPORT_RENDERERS, validation_summary
from reconciler.store.db import DEFAULT_STATE, StateStore
from reconciler.store.queries import Report

F = TypeVar("F", bound=Callable[..., Any])


class ReconcileGroup(click.Group):
    """A click group that maps every failure to the documented exit codes."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.Abort:
            click.echo("error: interrupted", err=True)
            sys.exit(ExitCode.ERROR)
        except click.ClickException as exc:
            exc.show()
            sys.exit(ExitCode.ERROR)
        except ReconcilerError as exc:
            click.echo(f"error: {redact(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else ExitCode.OK)


def manifests_option(func: F) -> F:
    return click.option(
        "--manifests",
        type=click.Path(path_type=Path),
        default="manifests",
        show_default=True,
        envvar="RECONCILE_MANIFESTS",
        show_envvar=True,
        help="Folder of manifests; every *.yaml and *.yml under it is read, recursively.",
    )(func)


def media_root_option(func: F) -> F:
    return click.option(
        "--media-root",
        type=click.Path(path_type=Path),
        default=None,
        envvar="RECONCILE_MEDIA_ROOT",
        show_envvar=True,
        help="Folder that asset files and AssetSet globs are relative to. "
        "Default: the manifests folder.",
    )(func)


def output_option(choices: Sequence[str]) -> Callable[[F], F]:
    def decorate(func: F) -> F:
        return click.option(
            "--output",
            "-o",
            type=click.Choice(list(choices)),
            default=choices[0],
            show_default=True,
            help="Output format: text for people; " + ", ".join(choices[1:]) + " for programs.",
        )(func)

    return decorate


def state_options(func: F) -> F:
    """--state and --lock-timeout, for every command that touches the state file."""
    func = click.option(
        "--lock-timeout",
        type=click.FloatRange(min=0),
        callback=seconds,
        default=30.0,
        show_default=True,
        envvar="RECONCILE_LOCK_TIMEOUT",
        show_envvar=True,
        help="Seconds to keep retrying while another process holds the state file.",
    )(func)
    return click.option(
        "--state",
        type=click.Path(dir_okay=False, path_type=Path),
        default=str(DEFAULT_STATE),
        show_default=True,
        envvar="RECONCILE_STATE",
        show_envvar=True,
        help="The state file (DuckDB). Created on first use by a command that writes.",
    )(func)


def seconds(_ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A number of seconds: NaN compares false with every bound, so it is refused here."""
    if math.isnan(value):
        raise click.BadParameter("nan is not a number of seconds", param=param)
    return value


def open_store(state: Path, lock_timeout: float) -> StateStore:
    command = click.get_current_context().command_path
    return StateStore(state, lock_timeout=lock_timeout, command=command)


def show_report(report: Report, output: str) -> None:
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    color = output == "text" and sys.stdout.isatty()
    click.echo(REPORT_RENDERERS[output](report, color), color=color)


REPORT_FORMATS = ["text", "json", "csv"]


def load_manifests(
    manifests: Path,
    media_root: Path | None,
    cache: Cache | None = None,
    private: Sequence[Path] = (),
) -> ManifestSet:
    """Validate the manifests; on problems print them to stderr and stop with exit 1.
    ``private``: this tool's own files (:func:`reconciler.apply.renditions.tool_files`),
    never masters."""
    result = validate_tree(
        manifests, media_root, display_root=str(manifests), cache=cache, private=private
    )
    for problem in result.warnings:
        click.echo(problem.format(), err=True)
    if result.manifest_set is None:
        for problem in result.errors:
            click.echo(problem.format(), err=True)
        raise ManifestError(
            f"the manifests are invalid ({validation_summary(result)}); nothing was planned"
        )
    return result.manifest_set


def write_atomically(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=f".{path.name}.", delete=False, encoding="utf-8"
    ) as handle:
        try:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            handle.close()
            Path(handle.name).unlink(missing_ok=True)
            raise
    os.replace(handle.name, path)
