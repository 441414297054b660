"""The ``reconcile`` command line: the group, bare ``reconcile``, ``plan`` and ``apply``.

The console script and ``python -m reconciler`` call :func:`main`. Each command parses its
options, calls a use case of :mod:`reconciler.ops`, renders the result with
:mod:`reconciler.render.formats` and returns an exit code (see
:class:`reconciler.errors.ExitCode`). The other commands live beside this module (inspect,
watch, reports) and are registered on the group here. Errors from the core are printed as one
``error: ...`` line on stderr; bad arguments exit 1, never click's default 2, because 2 means
"changes pending" for ``--dry-run``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from reconciler import __version__, ops
from reconciler.apply.run import NullObserver, Observer
from reconciler.atomic import write_atomically
from reconciler.cli import adopt as cli_adopt
from reconciler.cli import ci
from reconciler.cli import inspect as cli_inspect
from reconciler.cli import queue as cli_queue
from reconciler.cli import reports as cli_reports
from reconciler.cli import schema as cli_schema
from reconciler.cli import serve as cli_serve
from reconciler.cli import watch as cli_watch
from reconciler.cli.options import (
    F,
    ReconcileGroup,
    cache_option,
    load_manifests,
    manifests_option,
    media_root_option,
    narrowing_options,
    output_option,
    parallel_option,
    pruning_options,
    rendition_options,
    show,
    state_options,
    user_cache,
    workspace,
)
from reconciler.errors import ExitCode
from reconciler.plan.actions import Plan, Refresh
from reconciler.render.formats import APPLY_RENDERERS, PLAN_RENDERERS
from reconciler.store.db import Location
from reconciler.transforms.renditions import DEFAULT_MAX_BYTES

# --refresh / --no-refresh / neither, as click gives them
REFRESH_LEVELS = {True: Refresh.PLATFORMS, None: Refresh.MASTERS, False: Refresh.NONE}


def plan_only_options(func: F) -> F:
    func = click.option(
        "--out",
        "out",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also save the plan as JSON, for `reconcile apply PLAN.json`.",
    )(func)
    func = click.option(
        "--refresh/--no-refresh",
        "refresh",
        default=None,
        help="What a dry run reads besides the manifests and the state. Neither (the "
        "default): every master is hashed (a hash cache vouches for unchanged ones). "
        "--refresh: also what the platforms hold (never written): a create whose bytes are "
        "already at its key shows as adopt, an import says what it will find. --no-refresh: "
        "neither masters nor platforms; plans manifest changes against the checksums and "
        "sizes the state recorded (for CI without the media). Such a plan cannot be applied.",
    )(func)
    return click.option(
        "--detailed-exitcode",
        is_flag=True,
        help="With --dry-run: exit 2 when the plan has changes, 0 when it has none.",
    )(func)


def run_plan(
    manifests: Path,
    media_root: Path | None,
    state: Location,
    lock_timeout: float,
    output: str,
    detailed_exitcode: bool = False,
    out: Path | None = None,
    prune: bool = False,
    max_delete: int | None = None,
    force: bool = False,
    rule: str | None = None,
    platform: str | None = None,
    renditions: Path | None = None,
    no_cache: bool = False,
    refresh: bool | None = None,
    **_: Any,
) -> int:
    """Plan, show the plan (and append it to the step summary), and save it with --out."""
    if output == "jsonl":
        raise click.UsageError(
            "--output jsonl streams an apply; a plan is text, json, markdown or github"
        )
    where = workspace(manifests, media_root, state, lock_timeout, renditions)
    cache = user_cache(no_cache)
    level = REFRESH_LEVELS[refresh]
    options = ops.Options(
        prune=prune, max_delete=max_delete, force=force, rule=rule, platform=platform,
        refresh=level,
    )  # fmt: skip
    world = ops.look(where, options, cache)
    fresh = level == Refresh.MASTERS  # only such a plan is ever kept or reused
    plan = ops.reused_plan(world, where, options, cache) if fresh else None
    if plan is None:
        manifest_set = load_manifests(
            where, cache, output, summary=True, read_media=level != Refresh.NONE
        )
        plan = ops.plan(manifest_set, where, options, cache, world)
    show(PLAN_RENDERERS, output, plan)
    ci.append_step_summary(lambda: PLAN_RENDERERS["markdown"](plan, False))
    if out is not None:
        write_atomically(out, PLAN_RENDERERS["json"](plan, False) + "\n")
        if level == Refresh.NONE:
            click.echo(f"note: {out} was planned with --no-refresh: apply refuses it", err=True)
    if detailed_exitcode and plan.changes:
        return ExitCode.CHANGES_PENDING
    return ExitCode.OK


class _SavedPlanNotes(ops.Listener):
    """Prints the notes of a saved plan, as checked, before it is carried out."""

    def planned(self, plan: Plan) -> None:
        for note in plan.notes:
            click.echo(f"note: {note}", err=True)


def run_apply(
    manifests: Path,
    media_root: Path | None,
    state: Location,
    lock_timeout: float,
    output: str,
    parallel: int = 4,
    prune: bool = False,
    max_delete: int | None = None,
    force: bool = False,
    rule: str | None = None,
    platform: str | None = None,
    saved: Plan | None = None,
    renditions: Path | None = None,
    renditions_max_size: int = DEFAULT_MAX_BYTES,
    no_cache: bool = False,
    queue: bool = False,
    **_: Any,
) -> int:
    """Plan (or take a saved plan) and carry it out, under the run lock."""
    if output in ("markdown", "github"):
        raise click.UsageError(f"--output {output} renders a plan; use it with --dry-run")
    where = workspace(manifests, media_root, state, lock_timeout, renditions)
    cache = user_cache(no_cache)
    manifest_set = load_manifests(where, cache)
    options = ops.Options(
        prune=prune,
        max_delete=max_delete,
        force=force,
        rule=rule,
        platform=platform,
        parallel=parallel,
        renditions_max_bytes=renditions_max_size,
        queue=queue,
    )
    observer = observer_for(output)
    if saved is None:
        done = ops.reconcile(manifest_set, where, options, observer, cache=cache)
    else:
        notes = _SavedPlanNotes()
        done = ops.apply_saved(saved, manifest_set, where, options, observer, notes, cache)
    show(APPLY_RENDERERS, output, done.applied, colored=False)
    return done.exit_code


def observer_for(output: str) -> Observer:
    """How the run shows its progress: live bars on a terminal, lines in a pipe, JSON lines."""
    from rich.console import Console  # rich: only here

    from reconciler.render.progress import JsonLines, LiveProgress, PlainLines

    if output == "jsonl":
        return JsonLines(click.echo)
    if output == "json":
        return NullObserver()
    if sys.stdout.isatty():
        color = ci.color_for(True)
        console = Console(
            force_terminal=True, no_color=not color, color_system="auto" if color else None
        )
        return LiveProgress(console)
    return PlainLines(click.echo)


@click.group(
    cls=ReconcileGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="reconcile")
@ci.color_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only plan: show what would change. Reads the state, writes nothing.",
)
@manifests_option
@media_root_option
@state_options
@output_option(["text", "json", "markdown", "github", "jsonl"])
@plan_only_options
@pruning_options
@narrowing_options
@parallel_option
@rendition_options
@cache_option
@click.option(
    "--queue",
    is_flag=True,
    help="Plan and write the jobs for `reconcile worker` processes on any host to claim; "
    "run none of them here. Needs a PostgreSQL state.",
)
@click.pass_context
def cli(ctx: click.Context, dry_run: bool, **options: Any) -> int:
    """Declarative media sync: keep master videos and images in sync across platforms.

    Assets, platforms and sync rules are declared in YAML manifests (apiVersion mediasync/v1);
    the reconciler compares them with the recorded state of every platform copy and syncs
    the difference. `reconcile` plans and applies in one go; `reconcile --dry-run` (or
    `reconcile plan`) only shows the plan.

    \b
    Exit codes:
      0  success; for --dry-run --detailed-exitcode: no changes
      1  error: invalid manifests, unusable state, lock timeout, bad arguments
      2  --dry-run --detailed-exitcode: changes pending
      3  apply ran, but some jobs failed or were deferred, placements were blocked,
         or conflicts are open
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
        if options["queue"]:
            raise click.UsageError("--queue writes jobs; a --dry-run writes nothing")
        return run_plan(**options)
    if options["refresh"] is False:
        ops.applicable(ops.Options(refresh=Refresh.NONE))  # one line, exit 1
    for name in ("detailed_exitcode", "out", "refresh"):
        if options[name]:
            raise click.UsageError(f"--{name.replace('_', '-')} goes with --dry-run")
    return run_apply(**options)


@cli.command("plan")
@manifests_option
@media_root_option
@state_options
@output_option(["text", "json", "markdown", "github"])
@plan_only_options
@pruning_options
@narrowing_options
@cache_option
def plan_command(**options: Any) -> int:
    """Show what would change: the same as `reconcile --dry-run`.

    Strictly read-only: the state file is not written (not even created) and no platform is
    contacted. Without a state file it plans against empty recorded state. The plan lists, per
    platform, `+ create`, `~ update`, `~ update-metadata`, `- delete`, `! blocked`, `# held`
    and `? orphan` actions with versions and sizes, then a summary line.
    """
    return run_plan(**options)


@cli.command("apply")
@click.argument(
    "plan_file", metavar="PLAN.json", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@manifests_option
@media_root_option
@state_options
@output_option(["text", "json", "jsonl"])
@parallel_option
@rendition_options
@pruning_options
@click.option(
    "--rule",
    metavar="CODE",
    help="Run this rule's changes now, as a plan made with --rule CODE shows them.",
)
@cache_option
def apply_command(plan_file: Path, **options: Any) -> int:
    """Apply exactly a plan saved with `reconcile --dry-run --out PLAN.json`.

    The plan is a request, not an authority. It applies to the manifests, media root and
    state file of this command (its options, environment and defaults, as for `reconcile`),
    and is refused when it was made for others; it is planned again from those manifests and
    masters, and refused (exit 1, nothing applied) when any of its changes differs now, or
    when the recorded state has changed since it was made. The pruning guards apply to its
    deletes unless --force is given here; its deletes of copies no longer desired need
    --prune here, and its changes that wait for a schedule need --rule here (never because
    the file says so).
    """
    where = workspace(options["manifests"], options["media_root"], options["state"])
    saved = ops.read_saved(plan_file, where)
    if saved.moved is not None:
        click.echo(f"note: {saved.moved}", err=True)
    return run_apply(saved=saved.plan, **options)


for _command in (
    *cli_inspect.COMMANDS, *cli_watch.COMMANDS, *cli_reports.COMMANDS, *cli_queue.COMMANDS
):  # fmt: skip
    cli.add_command(_command)
cli.add_command(cli_schema.schema_command)
cli.add_command(cli_adopt.import_command)
cli.add_command(cli_serve.serve_command)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="reconcile")
