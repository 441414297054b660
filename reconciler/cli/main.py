"""The ``reconcile`` command line: a thin click layer over the core.

Each command parses its options, calls a core function that returns data, renders that data with
:mod:`~reconciler.render.formats`,
and returns an exit code (see :class:`reconciler.errors.ExitCode`).
Errors from the core are printed as one ``error: ...`` line on stderr; bad arguments exit 1,
never click's default 2, because 2 means "changes pending" for ``--dry-run``.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import click

from reconciler import __version__
from reconciler.apply.renditions import default_folder as default_renditions
from reconciler.apply.renditions import tool_files
from reconciler.apply.run import ApplyOptions, NullObserver, Observer, apply_plan, narrow, recover
from reconciler.apply.verify import verify as verify_copies
from reconciler.cache import Cache, default_folder
from reconciler.cli import reports as cli_reports
from reconciler.cli.options import (
    F,
    ReconcileGroup,
    load_manifests,
    manifests_option,
    media_root_option,
    open_store,
    output_option,
    seconds,
    state_options,
    write_atomically,
)
from reconciler.errors import ExitCode, UsageError
from reconciler.manifests.quoting import suggest
from reconciler.manifests.validate import validate_tree
from reconciler.model import ManifestSet
from reconciler.plan.actions import Plan
from reconciler.plan.explain import explain as explain_asset
from reconciler.plan.planner import PlanOptions, check_guards, make_plan
from reconciler.plan.saved import checked as checked_against_saved
from reconciler.plan.saved import made_for as check_made_for
from reconciler.plan.saved import read_saved_plan
from reconciler.render.formats import (
    APPLY_RENDERERS,
    EXPLAIN_RENDERERS,
    PLAN_RENDERERS,
    VALIDATION_RENDERERS,
    VERIFY_RENDERERS,
)
from reconciler.transforms.renditions import DEFAULT_MAX_BYTES, RenditionCache
from reconciler.units import parse_size


def narrowing_options(func: F) -> F:
    func = click.option("--platform", metavar="CODE", help="Only placements on this platform.")(
        func
    )
    return click.option("--rule", metavar="CODE", help="Only placements this rule decides.")(func)


def pruning_options(func: F) -> F:
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


def plan_only_options(func: F) -> F:
    func = click.option(
        "--out",
        "out",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Also save the plan as JSON, for `reconcile apply PLAN.json`.",
    )(func)
    return click.option(
        "--detailed-exitcode",
        is_flag=True,
        help="With --dry-run: exit 2 when the plan has changes, 0 when it has none.",
    )(func)


def run_plan(
    manifests: Path,
    media_root: Path | None,
    state: Path,
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
    **_: Any,
) -> int:
    if output == "jsonl":
        raise click.UsageError("--output jsonl streams an apply; a plan is text, json or markdown")
    cache = Cache(default_folder())
    manifest_set = load_manifests(manifests, media_root, cache, tool_files(state, renditions))
    check_narrowing(manifest_set, rule, platform)
    plan = make_plan(
        manifest_set,
        open_store(state, lock_timeout),
        PlanOptions(prune=prune, max_delete=max_delete, force=force, rule=rule),
        cache,
    )
    plan.actions = narrow(plan.actions, ApplyOptions(rule=rule, platform=platform))
    plan.rule, plan.platform = rule, platform
    if any(a.rendition_id for a in plan.actions):
        made = RenditionCache(renditions or default_renditions(state)).cached_ids()
        plan.cached_renditions = sorted({a.rendition_id for a in plan.actions} & made)
    color = output == "text" and sys.stdout.isatty()
    click.echo(PLAN_RENDERERS[output](plan, color), color=color)
    if out is not None:
        write_atomically(out, PLAN_RENDERERS["json"](plan, False) + "\n")
    if detailed_exitcode and plan.changes:
        return ExitCode.CHANGES_PENDING
    return ExitCode.OK


def run_apply(
    manifests: Path,
    media_root: Path | None,
    state: Path,
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
    **_: Any,
) -> int:
    """Plan (or take a saved plan) and carry it out, under the run lock."""
    if output == "markdown":
        raise click.UsageError("--output markdown renders a plan; use it with --dry-run")
    cache = Cache(default_folder())
    manifest_set = load_manifests(manifests, media_root, cache, tool_files(state, renditions))
    check_narrowing(manifest_set, rule, platform)
    store = open_store(state, lock_timeout)
    observer = observer_for(output)
    options = ApplyOptions(
        parallel=parallel,
        rule=rule,
        platform=platform,
        renditions=renditions,
        renditions_max_bytes=renditions_max_size,
    )
    with store.session():
        recovered = recover(manifest_set, store)
        if saved is None:
            plan = make_plan(
                manifest_set,
                store,
                PlanOptions(prune=prune, max_delete=max_delete, force=force, rule=rule),
                cache,
            )
        else:  # a request, not an authority: what runs is planned again and compared
            # the applier decides what may run beyond the manifests: --prune, --rule
            fresh = make_plan(
                manifest_set, store, PlanOptions(prune=prune, force=True, rule=rule), cache
            )
            fresh.actions = narrow(
                fresh.actions, ApplyOptions(rule=saved.rule, platform=saved.platform)
            )
            plan = checked_against_saved(saved, fresh)
            # the guards are the applier's, never the file's: --force and --max-delete here
            check_guards(plan, PlanOptions(force=force, max_delete=max_delete))
            for note in plan.notes:
                click.echo(f"note: {note}", err=True)
        result = apply_plan(manifest_set, store, plan, options, observer, recovered)
    if output in ("text", "json"):
        click.echo(APPLY_RENDERERS[output](result, False))
    else:
        click.echo(APPLY_RENDERERS["jsonl"](result, False))
    return result.exit_code


def check_narrowing(manifest_set: ManifestSet, rule: str | None, platform: str | None) -> None:
    """--rule and --platform must name what the manifests declare: a typo would narrow a run
    to nothing and exit 0, with nothing synced."""
    for option, code, known in (
        ("--rule", rule, manifest_set.rules),
        ("--platform", platform, manifest_set.platforms),
    ):
        if code is not None and code not in known:
            names = ", ".join(sorted(known)) or "none"
            raise UsageError(
                f"{option} {code}: the manifests declare no such code{suggest(code, known)}; "
                f"they declare {names}"
            )


def observer_for(output: str) -> Observer:
    from reconciler.render.progress import JsonLines, LiveProgress, PlainLines  # rich: only here

    if output == "jsonl":
        return JsonLines(click.echo)
    if output == "json":
        return NullObserver()
    if sys.stdout.isatty():
        return LiveProgress()
    return PlainLines(click.echo)


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
@manifests_option
@media_root_option
@state_options
@output_option(["text", "json", "markdown", "jsonl"])
@plan_only_options
@pruning_options
@narrowing_options
@parallel_option
@rendition_options
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
    for name in ("detailed_exitcode", "out"):
        if options[name]:
            raise click.UsageError(f"--{name.replace('_', '-')} goes with --dry-run")
    return run_apply(**options)


@cli.command("plan")
@manifests_option
@media_root_option
@state_options
@output_option(["text", "json", "markdown"])
@plan_only_options
@pruning_options
@narrowing_options
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
def apply_command(
    plan_file: Path,
    manifests: Path,
    media_root: Path | None,
    state: Path,
    lock_timeout: float,
    output: str,
    parallel: int,
    renditions: Path | None,
    renditions_max_size: int,
    prune: bool,
    max_delete: int | None,
    force: bool,
    rule: str | None,
) -> int:
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
    saved = read_saved_plan(plan_file)
    moved = check_made_for(saved, manifests, media_root, state)
    if moved is not None:
        click.echo(f"note: {moved}", err=True)
    return run_apply(
        manifests=manifests,
        media_root=media_root,
        state=state,
        lock_timeout=lock_timeout,
        output=output,
        parallel=parallel,
        saved=saved,
        renditions=renditions,
        renditions_max_size=renditions_max_size,
        prune=prune,
        max_delete=max_delete,
        force=force,
        rule=rule,
    )


@cli.command()
@manifests_option
@media_root_option
@state_options
@click.option("--platform", metavar="CODE", help="Only this platform.")
@output_option(["text", "json"])
def verify(
    manifests: Path,
    media_root: Path | None,
    state: Path,
    lock_timeout: float,
    platform: str | None,
    output: str,
) -> int:
    """Check the recorded copies against what the platforms hold now.

    A copy that is gone is a remote_deleted conflict, one that changed a remote_modified
    conflict (re-synced next time instead when its rule says on_conflict: source_wins).
    Records last_verified_at and each platform's health. Exit 3 when conflicts were found.
    """
    manifest_set = load_manifests(manifests, media_root, private=tool_files(state))
    result = verify_copies(manifest_set, open_store(state, lock_timeout), platform)
    click.echo(VERIFY_RENDERERS[output](result, False))
    return result.exit_code


@cli.command()
@click.argument("asset", metavar="ASSET")
@click.option("--platform", metavar="CODE", help="Explain only this platform.")
@manifests_option
@media_root_option
@state_options
@renditions_option
@output_option(["text", "json"])
def explain(
    asset: str,
    platform: str | None,
    manifests: Path,
    media_root: Path | None,
    state: Path,
    lock_timeout: float,
    renditions: Path | None,
    output: str,
) -> int:
    """Why each placement of ASSET is planned as it is.

    Shows the rules that matched and the one that won, the platform constraints checked
    (enabled, format, size), the rendition each platform receives (its id, its transforms,
    whether it is cached) and what the state file records about each copy. Read-only.
    """
    manifest_set = load_manifests(manifests, media_root, private=tool_files(state, renditions))
    result = explain_asset(
        manifest_set,
        open_store(state, lock_timeout),
        asset,
        platform,
        renditions or default_renditions(state),
    )
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
@manifests_option
@media_root_option
@state_options
@parallel_option
@rendition_options
@click.option(
    "--debounce",
    type=click.FloatRange(min=0),
    callback=seconds,
    default=1.0,
    show_default=True,
    help="Seconds of quiet after a change before a cycle runs.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=1),
    callback=seconds,
    default=300.0,
    show_default=True,
    help="Seconds between full cycles, which also verify the platforms.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line.",
)
def watch(
    manifests: Path,
    media_root: Path | None,
    state: Path,
    lock_timeout: float,
    parallel: int,
    debounce: float,
    interval: float,
    log_format: str,
    renditions: Path | None,
    renditions_max_size: int,
) -> int:
    """Keep the platforms in sync continuously: reconcile on every change, on schedule, and
    every --interval seconds (with verify).

    A broken manifest is logged with file and line and changes nothing: the last good
    manifests stay in force until the file is fixed. SIGINT or SIGTERM stops it within
    10 s, recording the transfer in flight and releasing the lock; it then exits 0.
    """
    from reconciler.watch import Log, Watcher, WatchOptions  # watchdog: only for watch

    if not manifests.is_dir():
        raise UsageError(f"manifests folder '{manifests}' not found; pass --manifests DIR")
    log = Log(lambda line: click.echo(line), log_format)
    watcher = Watcher(
        manifests,
        media_root,
        open_store(state, lock_timeout),
        WatchOptions(
            debounce=debounce,
            interval=interval,
            parallel=parallel,
            log_format=log_format,
            renditions=renditions,
            renditions_max_bytes=renditions_max_size,
        ),
        log,
        display_root=str(manifests),
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: watcher.stop())
    return watcher.run()


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the decrypted file. Default: FILE without its .enc suffix.",
)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The key file the rule's encryption_key names (64 hex digits or base64).",
)
@click.option("--key-env", metavar="NAME", help="The environment variable holding the key.")
@click.option("--force", is_flag=True, help="Overwrite the output file if it exists.")
def decrypt(
    file: Path, out: Path | None, key_file: Path | None, key_env: str | None, force: bool
) -> int:
    """Decrypt a copy made by a rule with `encrypt: true` back into the master's bytes.

    Every chunk is authenticated (AES-256-GCM): a wrong key, or a file that was changed or
    cut short, is refused with exit 1 and nothing is written. The key is read from the file
    or variable given and never printed.
    """
    from reconciler.transforms.crypto import decrypt_file, load_key  # cryptography: only here
    from reconciler.transforms.recipe import KeyRef

    if (key_file is None) == (key_env is None):
        raise click.UsageError("give the key with exactly one of --key-file or --key-env")
    if out is None:
        if file.suffix != ".enc":
            raise click.UsageError(f"{file} does not end in .enc; name the output with --out")
        out = file.with_suffix("")
    if out.exists() and not force:
        raise UsageError(f"{out} exists; pass --force to overwrite it")
    key, _ = load_key(KeyRef(env=key_env, file=str(key_file) if key_file else None), Path.cwd())
    size = decrypt_file(file, out, key)
    click.echo(f"decrypted {file} -> {out} ({size:,} bytes)", err=True)
    return ExitCode.OK


for _command in cli_reports.COMMANDS:
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="reconcile")
