"""Report and state commands: status, report distribution, events, jobs, conflicts, state.

Registered on the ``reconcile`` group by :mod:`reconciler.cli.main`. All but ``conflicts resolve``,
``state load-sample``, ``state migrate`` and ``state grant-readonly`` only read the state, without
its run lock.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler import ops
from reconciler.cli.options import (
    REPORT_FORMATS,
    StateParam,
    open_store,
    output_option,
    show_report,
    state_options,
    workspace,
)
from reconciler.errors import ExitCode
from reconciler.store import queries, records
from reconciler.store.db import Location, state_name
from reconciler.store.migrations import latest_version


@click.command()
@state_options
@output_option(REPORT_FORMATS)
def status(state: Location, lock_timeout: float, output: str) -> int:
    """Sync status per platform: the seed's dashboard.

    For each enabled platform: health, synced assets, up to date, outdated, in progress,
    failed and open conflicts; platforms with conflicts first. Read-only: it answers while
    another command is working.
    """
    show_report(open_store(state, lock_timeout).status(), output)
    return ExitCode.OK


@click.group()
def report() -> None:
    """Reports over the recorded state."""


@report.command()
@state_options
@output_option(REPORT_FORMATS)
def distribution(state: Location, lock_timeout: float, output: str) -> int:
    """Where each active asset is synced: the seed's distribution report.

    Per asset: code, title, type, source version, platforms synced, up to date, needing an
    update, and the platforms' names; assets needing updates first.
    """
    show_report(open_store(state, lock_timeout).distribution(), output)
    return ExitCode.OK


@click.command()
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
    state: Location,
    lock_timeout: float,
    output: str,
) -> int:
    """The event log (uploads, verifications, retries, conflicts ...), oldest first."""
    since_time = queries.parse_since(since) if since else None
    show_report(
        open_store(state, lock_timeout).events(asset, platform, job, since_time, limit), output
    )
    return ExitCode.OK


@click.command()
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(queries.JOB_STATUSES),
    help="Only jobs in this status.",
)
@state_options
@output_option(REPORT_FORMATS)
def jobs(status_filter: str | None, state: Location, lock_timeout: float, output: str) -> int:
    """Sync jobs: what ran, when, how far it got, and why it failed."""
    show_report(open_store(state, lock_timeout).jobs(status_filter), output)
    return ExitCode.OK


@click.group(invoke_without_command=True)
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved conflicts.")
@state_options
@output_option(REPORT_FORMATS)
@click.pass_context
def conflicts(
    ctx: click.Context, include_resolved: bool, state: Location, lock_timeout: float, output: str
) -> int:
    """Open conflicts (recorded state that disagrees with a platform); --all for every one.

    An open conflict holds its placement back until it is resolved with
    `reconcile conflicts resolve`.
    """
    ctx.obj = (state, lock_timeout)
    if ctx.invoked_subcommand is None:
        show_report(open_store(state, lock_timeout).conflicts(include_resolved), output)
    return ExitCode.OK


@conflicts.command("resolve")
@click.argument("conflict_id", metavar="ID", type=int)
@click.option(
    "--use",
    type=click.Choice(list(records.RESOLUTIONS)),
    required=True,
    help="source: re-sync the master to the platform at the next reconcile, whatever the "
    "rule's schedule; target: accept the platform's copy; ignore: close it without action.",
)
@click.option("--by", "by", metavar="NAME", required=True, help="Who resolves it.")
@click.option("--note", metavar="TEXT", help="Why, for the record.")
@click.pass_context
def resolve(ctx: click.Context, conflict_id: int, use: str, by: str, note: str | None) -> int:
    """Resolve conflict ID: record the decision, who made it and when, and log an event."""
    state, lock_timeout = ctx.obj
    done = ops.resolve(
        workspace(state=state, lock_timeout=lock_timeout), conflict_id, use, by, note
    )
    where = f" ({done.asset} on {done.platform})" if done.asset else ""
    if done.resync and done.manual_rule:
        then = (
            f"; its rule {done.manual_rule} has auto_sync: false, so it re-syncs with the "
            f"next `reconcile --rule {done.manual_rule}`"
        )
    elif done.resync:
        then = "; the next reconcile re-syncs it, whatever its rule's schedule says"
    else:
        then = ""
    click.echo(
        f"conflict {done.conflict_id}{where} resolved: {done.resolution} by "
        f"{done.resolved_by}{then}"
    )
    return ExitCode.OK


@click.group()
def state() -> None:
    """The state itself: its sample data, its schema, copies of it, and who may read it."""


@state.command("load-sample")
@state_options
def load_sample(state: Location, lock_timeout: float) -> int:
    """Load the seed's sample rows (platforms, assets, rules, jobs, copies, a conflict,
    events) into an empty state file, to see every report on the seed's own data."""
    counts = open_store(state, lock_timeout).load_sample()
    loaded = ", ".join(f"{n} {table}" for table, n in counts.items())
    click.echo(f"loaded the seed's sample into {state_name(state)}: {loaded}")
    return ExitCode.OK


@state.command("info")
@state_options
def info(state: Location, lock_timeout: float) -> int:
    """Where the state is, its schema version, and who holds its lock."""
    store = open_store(state, lock_timeout)
    if isinstance(state, Path):
        click.echo(f"state file: {state}")
    else:
        click.echo(f"state: {state_name(state)}")
    if not store.exists():
        click.echo("status: not created yet (a command that writes creates it)")
    else:
        if isinstance(state, Path):
            click.echo(f"size: {state.stat().st_size} bytes")
        click.echo(f"schema version: {store.schema_version()} (this reconcile: {latest_version()})")
    holder = store.lock_holder()
    click.echo(f"lock: {'held by ' + holder.describe() if holder else 'free'}")
    return ExitCode.OK


@state.command("migrate")
@click.option(
    "--to",
    "target",
    type=StateParam(),
    required=True,
    help="Where the copy goes: a DuckDB file or a postgresql:// URL, as for --state.",
)
@click.option(
    "--force", is_flag=True, help="Replace the rows a target already holds (else it is refused)."
)
@state_options
def migrate(target: Location, force: bool, state: Location, lock_timeout: float) -> int:
    """Copy the state (--state) into another, with its ids and history: DuckDB to PostgreSQL,
    back, or to a copy of the same kind.

    Both run locks are held meanwhile; the target is made or migrated to the same schema,
    written in one transaction, and its row counts checked against the source's. A target
    that holds any row is refused unless --force.
    """
    done = ops.migrate_state(workspace(state=state, lock_timeout=lock_timeout), target, force)
    replaced = f" (replacing its {done.replaced} rows)" if done.replaced else ""
    click.echo(
        f"copied {len(done.rows)} tables, {done.total} rows, from {done.source} into "
        f"{done.target}{replaced} in {done.seconds:.1f} s; row counts match"
    )
    return ExitCode.OK


@state.command("grant-readonly")
@click.argument("role")
@click.option(
    "--print",
    "print_only",
    is_flag=True,
    help="Print the SQL instead of running it (nothing is connected to).",
)
@state_options
def grant_readonly(role: str, print_only: bool, state: Location, lock_timeout: float) -> int:
    """Give ROLE read-only access to a PostgreSQL state: its schema and every table, tables
    made by later migrations, its search_path set to the schema (so the seed's SQL runs
    unqualified), and temporary tables for BI tools. The role must exist."""
    where = workspace(state=state, lock_timeout=lock_timeout)
    statements = ops.grant_readonly(where, role, run=not print_only)
    if print_only:
        click.echo(statements.rstrip())
    else:
        click.echo(f"granted {role} read-only access to {state_name(state)}")
    return ExitCode.OK


COMMANDS = [status, report, events, jobs, conflicts, state]
