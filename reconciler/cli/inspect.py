"""Commands that check and look, and write nothing the plan depends on: ``validate``,
``verify``, ``explain`` and ``decrypt``.

Registered on the ``reconcile`` group by :mod:`reconciler.cli.main`. Each parses its options,
calls a use case of :mod:`reconciler.ops` (``decrypt`` calls the crypto transform directly),
renders the result and returns the exit code.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler import ops
from reconciler.cli.options import (
    load_manifests,
    manifests_option,
    media_root_option,
    output_option,
    renditions_option,
    show,
    state_options,
    workspace,
)
from reconciler.errors import ExitCode, UsageError
from reconciler.render.formats import EXPLAIN_RENDERERS, VALIDATION_RENDERERS, VERIFY_RENDERERS
from reconciler.store.db import Location


@click.command("validate")
@manifests_option
@media_root_option
@output_option(["text", "json", "markdown", "github"])
@click.option(
    "--no-refresh",
    "no_refresh",
    is_flag=True,
    help="Do not look at the media files: check their names only (each inside the media "
    "root), for a CI runner that has the manifests but not the media, as "
    "`reconcile --dry-run --no-refresh` plans.",
)
def validate_command(
    manifests: Path, media_root: Path | None, output: str, no_refresh: bool
) -> int:
    """Check every manifest and report every problem, each as FILE:LINE:COL.

    Checks YAML syntax and safety (duplicate keys, size, nesting and alias limits, UTF-8),
    each document against its kind's JSON Schema, duplicate codes across files, references
    (a rule's platform), asset files inside the media root, cron expressions and AssetSet
    globs. Exits 0 when valid, 1 when not. Writes nothing anywhere. `--output github` prints
    one GitHub Actions `::error file=...,line=...,col=...::` command per problem, so that CI
    shows each at its line; markdown prints them as a list.
    """
    result = ops.validate(manifests, media_root, read_media=not no_refresh)
    show(VALIDATION_RENDERERS, output, result)
    return ExitCode.OK if result.ok else ExitCode.ERROR


@click.command("verify")
@manifests_option
@media_root_option
@state_options
@click.option("--platform", metavar="CODE", help="Only this platform.")
@output_option(["text", "json"])
def verify_command(
    manifests: Path,
    media_root: Path | None,
    state: Location,
    lock_timeout: float,
    platform: str | None,
    output: str,
) -> int:
    """Check the recorded copies against what the platforms hold now.

    A copy that is gone is a remote_deleted conflict, one that changed a remote_modified
    conflict (re-synced next time instead when its rule says on_conflict: source_wins).
    Records last_verified_at and each platform's health. Exit 3 when conflicts were found.
    """
    where = workspace(manifests, media_root, state, lock_timeout)
    result = ops.verify(load_manifests(where), where, platform)
    show(VERIFY_RENDERERS, output, result, colored=False)
    return result.exit_code


@click.command("explain")
@click.argument("asset", metavar="ASSET")
@click.option("--platform", metavar="CODE", help="Explain only this platform.")
@manifests_option
@media_root_option
@state_options
@renditions_option
@output_option(["text", "json"])
def explain_command(
    asset: str,
    platform: str | None,
    manifests: Path,
    media_root: Path | None,
    state: Location,
    lock_timeout: float,
    renditions: Path | None,
    output: str,
) -> int:
    """Why each placement of ASSET is planned as it is.

    Shows the rules that matched and the one that won, the platform constraints checked
    (enabled, format, size), the rendition each platform receives (its id, its transforms,
    whether it is cached) and what the state file records about each copy. Read-only.
    """
    where = workspace(manifests, media_root, state, lock_timeout, renditions)
    result = ops.explain(load_manifests(where), where, asset, platform)
    show(EXPLAIN_RENDERERS, output, result)
    return ExitCode.OK


@click.command("decrypt")
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
def decrypt_command(
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


COMMANDS = [validate_command, verify_command, explain_command, decrypt_command]
