"""Options and helpers shared by the ``reconcile`` commands.

Used by every command module of :mod:`reconciler.cli`: the group class that maps failures to
exit codes, the option decorators the commands share, the :class:`~reconciler.ops.Workspace`
of a command, loading the manifests (their problems printed to stderr, and for ``--output
markdown`` or ``github`` also to stdout, in that format), and showing a result in colour when
:func:`reconciler.cli.ci.color_for` says so.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler import ops
from reconciler.cache import Cache, default_folder
from reconciler.cli import ci
from reconciler.errors import ExitCode, ManifestError, ReconcilerError, StateError
from reconciler.model import ManifestSet
from reconciler.ops import Workspace
from reconciler.redact import redact
from reconciler.render.formats import REPORT_RENDERERS
from reconciler.render.phrases import validation_summary
from reconciler.store.backend import StateBackend
from reconciler.store.db import DEFAULT_STATE, Location, location, open_state
from reconciler.store.embedded import DuckDBState
from reconciler.store.pg import PgLocation
from reconciler.store.queries import Report
from reconciler.units import parse_size

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")  # a result, as a renderer takes it


class ReconcileGroup(click.Group):
    """A click group that maps every failure to the documented exit codes."""

    def main(
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
        type=StateParam(),
        default=str(DEFAULT_STATE),
        show_default=True,
        envvar="RECONCILE_STATE",
        show_envvar=True,
        help="The recorded state: a DuckDB file (created on first use by a command that "
        "writes), or postgresql://USER@HOST:PORT/DB[?schema=NAME] for a shared PostgreSQL "
        "state (schema mediasync by default; the password from PGPASSWORD, ~/.pgpass, or "
        "the variable named by ?password_env=NAME, never in the URL).",
    )(func)


class StateParam(click.ParamType):
    """``--state``: a DuckDB file's path or a PostgreSQL URL."""

    name = "PATH|URL"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Location:
        if isinstance(value, Path | PgLocation):
            return value
        text = str(value)
        try:
            found = location(text)
        except StateError as exc:
            self.fail(str(exc), param, ctx)
        if isinstance(found, Path) and found.is_dir():
            self.fail(f"{text} is a folder; --state names a file or a postgresql:// URL")
        return found


def seconds(_ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A number of seconds: NaN compares false with every bound, so it is refused here."""
    if math.isnan(value):
        raise click.BadParameter("nan is not a number of seconds", param=param)
    return value


def narrowing_options(func: F) -> F:
    """--platform and --rule: only the placements they name."""
    func = click.option("--platform", metavar="CODE", help="Only placements on this platform.")(
        func
    )
    return click.option("--rule", metavar="CODE", help="Only placements this rule decides.")(func)


def pruning_options(func: F) -> F:
    """--prune, --max-delete and --force, for every command that may delete."""
    decorators = [
        click.option(
            "--prune",
            is_flag=True,
            help="Delete copies this tool made that are no longer desired, for every "
            "rule (rules may also say prune: true).",
        ),
        click.option(
            "--max-delete",
            type=click.IntRange(min=0),
            default=None,
            help="Most deletes allowed per platform. Default: 10% of its copies, at most 50.",
        ),
        click.option(
            "--force",
            is_flag=True,
            help="Skip the pruning guards (empty desired set, --max-delete).",
        ),
    ]
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


def parallel_option(func: F) -> F:
    return click.option(
        "--parallel",
        type=click.IntRange(min=1, max=64),
        default=4,
        show_default=True,
        help="Transfers at once.",
    )(func)


def cache_option(func: F) -> F:
    """--no-cache, for every command that reads or writes the cache outside the state file."""
    return click.option(
        "--no-cache",
        "no_cache",
        is_flag=True,
        help="Neither read nor write the cache of master hashes and parsed manifests "
        "(kept in $RECONCILE_CACHE_DIR, else the user cache folder).",
    )(func)


def user_cache(no_cache: bool = False) -> Cache:
    """The cache outside the state file, or with --no-cache one that remembers nothing."""
    return Cache(None if no_cache else default_folder())


def _size(_ctx: click.Context, _param: click.Parameter, value: str | int) -> int:
    if isinstance(value, int):
        return value
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


renditions_option = click.option(
    "--renditions",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="RECONCILE_RENDITIONS",
    help="Folder of the rendition cache. Default: renditions/ next to the state file.",
)


def rendition_options(func: F) -> F:
    """--renditions and --renditions-max-size, for every command that uploads."""
    func = click.option(
        "--renditions-max-size",
        "renditions_max_size",
        default="10GiB",
        show_default=True,
        metavar="SIZE",
        envvar="RECONCILE_RENDITIONS_MAX_SIZE",
        callback=_size,
        help="Bound of the rendition cache, such as 500MB or 10GiB; after a run the least "
        "recently used renditions beyond it are removed (never the run's own).",
    )(func)
    return renditions_option(func)


def workspace(
    manifests: Path = Path("manifests"),
    media_root: Path | None = None,
    state: Location = DEFAULT_STATE,
    lock_timeout: float = 30.0,
    renditions: Path | None = None,
) -> Workspace:
    """The files of this command, for :mod:`reconciler.ops`; the run lock is held in the name
    of the command as typed (``reconcile conflicts resolve``)."""
    command = click.get_current_context().command_path
    return Workspace(manifests, media_root, state, lock_timeout, renditions, command)


def open_store(state: Location, lock_timeout: float) -> StateBackend:
    """The recorded state, for the report and state commands (reports read it without the
    run lock)."""
    command = click.get_current_context().command_path
    return DuckDBState(open_state(state, lock_timeout=lock_timeout, command=command))


def show(
    renderers: Mapping[str, Callable[[R, bool], str]],
    output: str,
    result: R,
    colored: bool = True,
) -> None:
    """Echo ``result`` in the format ``output``; text is coloured as ``--color``, NO_COLOR and
    FORCE_COLOR say (by default on a terminal), unless the result has no colours
    (``colored=False``)."""
    color = colored and output == "text" and ci.color_for(sys.stdout.isatty())
    click.echo(renderers[output](result, color), color=color)


def show_report(report: Report, output: str) -> None:
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    show(REPORT_RENDERERS, output, report)


REPORT_FORMATS = ["text", "json", "csv"]


def load_manifests(
    where: Workspace,
    cache: Cache | None = None,
    output: str = "text",
    summary: bool = False,
    read_media: bool = True,
) -> ManifestSet:
    """Validate the manifests; on problems print them to stderr and stop with exit 1. For
    ``output`` markdown or github the problems also go to stdout in that format (and, with
    ``summary``, to the step summary). ``read_media=False``: asset files are not looked at."""
    result = ops.load(where, cache, read_media)
    for problem in result.warnings:
        click.echo(problem.format(), err=True)
    ci.show_problems(result, output, summary)
    if result.manifest_set is None:
        for problem in result.errors:
            click.echo(problem.format(), err=True)
        raise ManifestError(
            f"the manifests are invalid ({validation_summary(result)}); nothing was planned"
        )
    return result.manifest_set
