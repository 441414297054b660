"""The ``reconcile`` command line: a thin click layer over the core.

Each command parses its options, calls a core function that returns data, renders that data with
:mod:`reconciler.render`, and returns an exit code (see :class:`reconciler.errors.ExitCode`).
Errors from the core are printed as one ``error: ...`` line on stderr; bad arguments exit 1,
never click's default 2, because 2 means "changes pending" for ``--dry-run``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler import __version__
from reconciler.errors import ExitCode, ManifestError, ReconcilerError
from reconciler.explain import explain as explain_asset
from reconciler.manifests.validate import validate_tree
from reconciler.models import ManifestSet
from reconciler.plan import PlanOptions, make_plan
from reconciler.render import (
    EXPLAIN_RENDERERS,
    PLAN_RENDERERS,
    REPORT_RENDERERS,
    VALIDATION_RENDERERS,
    validation_summary,
)
from reconciler.store import queries, records
from reconciler.store.db import DEFAULT_STATE, StateStore
from reconciler.store.migrations import latest_version
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
            click.echo(f"error: {exc}", err=True)
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


def open_store(state: Path, lock_timeout: float) -> StateStore:
    command = click.get_current_context().command_path
    return StateStore(state, lock_timeout=lock_timeout, command=command)


def show_report(report: Report, output: str) -> None:
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    color = output == "text" and sys.stdout.isatty()
    click.echo(REPORT_RENDERERS[output](report, color), color=color)


REPORT_FORMATS = ["text", "json", "csv"]


def plan_options(func: F) -> F:
    """Options shared by `reconcile --dry-run` and `reconcile plan`."""
    decorators = [
        manifests_option,
        media_root_option,
        state_options,
        output_option(["text", "json", "markdown"]),
        click.option(
            "--detailed-exitcode",
            is_flag=True,
            help="Exit 2 when the plan has changes, 0 when it has none.",
        ),
        click.option(
            "--out",
            "out",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Also save the plan as JSON, for `reconcile apply PLAN.json`.",
        ),
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


def run_plan(
    manifests: Path,
    media_root: Path | None,
    state: Path,
    lock_timeout: float,
    output: str,
    detailed_exitcode: bool,
    out: Path | None,
    prune: bool,
    max_delete: int | None,
    force: bool,
) -> int:
    manifest_set = load_manifests(manifests, media_root)
    plan = make_plan(
        manifest_set,
        open_store(state, lock_timeout),
        PlanOptions(prune=prune, max_delete=max_delete, force=force),
    )
    color = output == "text" and sys.stdout.isatty()
    click.echo(PLAN_RENDERERS[output](plan, color), color=color)
    if out is not None:
        write_atomically(out, PLAN_RENDERERS["json"](plan, False) + "\n")
    if detailed_exitcode and plan.changes:
        return ExitCode.CHANGES_PENDING
    return ExitCode.OK


def load_manifests(manifests: Path, media_root: Path | None) -> ManifestSet:
    """Validate the manifests; on problems print them to stderr and stop with exit 1."""
    result = validate_tree(manifests, media_root, display_root=str(manifests))
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


@click.group(
    cls=ReconcileGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="reconcile")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only plan: show what would change. Reads the state, writes nothing.",
)
@plan_options
@click.pass_context
def cli(ctx: click.Context, dry_run: bool, **options: Any) -> int:
    """Declarative media sync: keep master videos and images in sync across platforms.

    Assets, platforms and sync rules are declared in YAML manifests (apiVersion mediasync/v1);
    the reconciler compares them with the recorded state of every platform copy and syncs
    the difference. `reconcile --dry-run` (or `reconcile plan`) shows the plan.

    \b
    Exit codes:
      0  success; for --dry-run --detailed-exitcode: no changes
      1  error: invalid manifests, unusable state, lock timeout, bad arguments
      2  --dry-run --detailed-exitcode: changes pending
      3  apply ran, but some jobs failed or were deferred, or conflicts are open
    """
    if ctx.invoked_subcommand is not None:
        given = [
            f"--{name.replace('_', '-')}"
            for name in ("dry_run", *options)
            if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise click.UsageError(
                f"{', '.join(given)} before `{ctx.invoked_subcommand}` would be options of "
                f"`reconcile` itself; put options after the command they are for, as in "
                f"`reconcile {ctx.invoked_subcommand} --help`"
            )
        return ExitCode.OK
    if dry_run:
        return run_plan(**options)
    click.echo(ctx.get_help())
    return ExitCode.OK


@cli.command("plan")
@plan_options
def plan_command(**options: Any) -> int:
    """Show what would change: the same as `reconcile --dry-run`.

    Strictly read-only: the state file is not written (not even created) and no platform is
    contacted. Without a state file it plans against empty recorded state. The plan lists, per
    platform, `+ create`, `~ update`, `~ update-metadata`, `- delete`, `! blocked`, `# held`
    and `? orphan` actions with versions and sizes, then a summary line.
    """
    return run_plan(**options)


@cli.command()
@click.argument("asset", metavar="ASSET")
@click.option("--platform", metavar="CODE", help="Explain only this platform.")
@manifests_option
@media_root_option
@state_options
@output_option(["text", "json"])
def explain(
    asset: str,
    platform: str | None,
    manifests: Path,
    media_root: Path | None,
    state: Path,
    lock_timeout: float,
    output: str,
) -> int:
    """Why each placement of ASSET is planned as it is.

    Shows the rules that matched and the one that won, the platform constraints checked
    (enabled, format, size) and what the state file records about each copy. Read-only.
    """
    manifest_set = load_manifests(manifests, media_root)
    result = explain_asset(manifest_set, open_store(state, lock_timeout), asset, platform)
    color = output == "text" and sys.stdout.isatty()
    click.echo(EXPLAIN_RENDERERS[output](result, color), color=color)
    return ExitCode.OK


@cli.command()
@manifests_option
@media_root_option
@output_option(["text", "json"])
def validate(manifests: Path, media_root: Path | None, output: str) -> int:
    """Check every manifest and report every problem, each as FILE:LINE:COL.

    Checks YAML syntax and safety (duplicate keys, size, nesting and alias limits, UTF-8),
    each document against its kind's JSON Schema, duplicate codes across files, references
    (a rule's platform), asset files inside the media root, cron expressions and AssetSet
    globs. Exits 0 when valid, 1 when not. Writes nothing anywhere.
    """
    result = validate_tree(manifests, media_root, display_root=str(manifests))
    color = output == "text" and sys.stdout.isatty()
    click.echo(VALIDATION_RENDERERS[output](result, color), color=color)
    return ExitCode.OK if result.ok else ExitCode.ERROR


@cli.command()
@state_options
@output_option(REPORT_FORMATS)
def status(state: Path, lock_timeout: float, output: str) -> int:
    """Sync status per platform: the seed's dashboard.

    For each enabled platform: health, synced assets, up to date, outdated, in progress,
    failed and open conflicts; platforms with conflicts first. Read-only: it answers while
    another command is working.
    """
    with open_store(state, lock_timeout).reading() as con:
        show_report(queries.status(con), output)
    return ExitCode.OK


@cli.group()
def report() -> None:
    """Reports over the recorded state."""


@report.command()
@state_options
@output_option(REPORT_FORMATS)
def distribution(state: Path, lock_timeout: float, output: str) -> int:
    """Where each active asset is synced: the seed's distribution report.

    Per asset: code, title, type, source version, platforms synced, up to date, needing an
    update, and the platforms' names; assets needing updates first.
    """
    with open_store(state, lock_timeout).reading() as con:
        show_report(queries.distribution(con), output)
    return ExitCode.OK


@cli.command()
@click.option("--asset", metavar="CODE", help="Only events of this asset.")
@click.option("--platform", metavar="CODE", help="Only events of this platform.")
@click.option("--job", metavar="CODE", help="Only events of this job.")
@click.option(
    "--since",
    metavar="TIME",
    help="Only events since a UTC date-time (2024-01-25T08:00) or an age (30m, 2h, 7d).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Show at most the N most recent events.",
)
@state_options
@output_option(REPORT_FORMATS)
def events(
    asset: str | None,
    platform: str | None,
    job: str | None,
    since: str | None,
    limit: int,
    state: Path,
    lock_timeout: float,
    output: str,
) -> int:
    """The event log (uploads, verifications, retries, conflicts ...), oldest first."""
    since_time = queries.parse_since(since) if since else None
    with open_store(state, lock_timeout).reading() as con:
        show_report(queries.events(con, asset, platform, job, since_time, limit), output)
    return ExitCode.OK


@cli.command()
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(queries.JOB_STATUSES),
    help="Only jobs in this status.",
)
@state_options
@output_option(REPORT_FORMATS)
def jobs(status_filter: str | None, state: Path, lock_timeout: float, output: str) -> int:
    """Sync jobs: what ran, when, how far it got, and why it failed."""
    with open_store(state, lock_timeout).reading() as con:
        show_report(queries.jobs(con, status_filter), output)
    return ExitCode.OK


@cli.group(invoke_without_command=True)
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved conflicts.")
@state_options
@output_option(REPORT_FORMATS)
@click.pass_context
def conflicts(
    ctx: click.Context, include_resolved: bool, state: Path, lock_timeout: float, output: str
) -> int:
    """Open conflicts (recorded state that disagrees with a platform); --all for every one.

    An open conflict holds its placement back until it is resolved with
    `reconcile conflicts resolve`.
    """
    ctx.obj = (state, lock_timeout)
    if ctx.invoked_subcommand is None:
        with open_store(state, lock_timeout).reading() as con:
            show_report(queries.conflicts(con, include_resolved), output)
    return ExitCode.OK


@conflicts.command("resolve")
@click.argument("conflict_id", metavar="ID", type=int)
@click.option(
    "--use",
    type=click.Choice(list(records.RESOLUTIONS)),
    required=True,
    help="source: re-sync the master to the platform; target: accept the "
    "platform's copy; ignore: close it without action.",
)
@click.option("--by", "by", metavar="NAME", required=True, help="Who resolves it.")
@click.option("--note", metavar="TEXT", help="Why, for the record.")
@click.pass_context
def resolve(ctx: click.Context, conflict_id: int, use: str, by: str, note: str | None) -> int:
    """Resolve conflict ID: record the decision, who made it and when, and log an event."""
    state, lock_timeout = ctx.obj
    done = records.resolve_conflict(open_store(state, lock_timeout), conflict_id, use, by, note)
    where = f" ({done.asset} on {done.platform})" if done.asset else ""
    click.echo(
        f"conflict {done.conflict_id}{where} resolved: {done.resolution} by {done.resolved_by}"
    )
    return ExitCode.OK


@cli.group()
def state() -> None:
    """The state file itself: its sample data and its schema."""


@state.command("load-sample")
@state_options
def load_sample(state: Path, lock_timeout: float) -> int:
    """Load the seed's sample rows (platforms, assets, rules, jobs, copies, a conflict,
    events) into an empty state file, to see every report on the seed's own data."""
    counts = records.load_sample(open_store(state, lock_timeout))
    loaded = ", ".join(f"{n} {table}" for table, n in counts.items())
    click.echo(f"loaded the seed's sample into {state}: {loaded}")
    return ExitCode.OK


@state.command("info")
@state_options
def info(state: Path, lock_timeout: float) -> int:
    """Where the state file is, its schema version, and who holds its lock."""
    store = open_store(state, lock_timeout)
    click.echo(f"state file: {state}")
    if not store.exists():
        click.echo("status: not created yet (a command that writes creates it)")
    else:
        click.echo(f"size: {state.stat().st_size} bytes")
        click.echo(f"schema version: {store.schema_version()} (this reconcile: {latest_version()})")
    holder = store.lock.holder()
    click.echo(f"lock: {'held by ' + holder.describe() if holder else 'free'}")
    return ExitCode.OK


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="reconcile")
