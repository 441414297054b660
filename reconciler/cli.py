"""The ``reconcile`` command line: a thin click layer over the core.

Each command parses its options, calls a core function that returns data, renders that data with
:mod:`reconciler.render`, and returns an exit code (see :class:`reconciler.errors.ExitCode`).
Errors from the core are printed as one ``error: ...`` line on stderr; bad arguments exit 1,
never click's default 2, because 2 means "changes pending" for ``--dry-run``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler import __version__
from reconciler.errors import ExitCode, ReconcilerError
from reconciler.manifests.validate import validate_tree
from reconciler.render import VALIDATION_RENDERERS

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
            help="Output format: text for people, json for programs.",
        )(func)

    return decorate


@click.group(
    cls=ReconcileGroup,
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="reconcile")
@click.pass_context
def cli(ctx: click.Context) -> int:
    """Declarative media sync: keep master videos and images in sync across platforms.

    Assets, platforms and sync rules are declared in YAML manifests (apiVersion mediasync/v1);
    the reconciler compares them with the recorded state of every platform copy and syncs
    the difference.

    \b
    Exit codes:
      0  success
      1  error: invalid manifests, unusable state, bad arguments
      2  --dry-run --detailed-exitcode: changes pending
      3  apply ran, but some jobs failed or were deferred, or conflicts are open
    """
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
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


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="reconcile")
