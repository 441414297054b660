"""``reconcile import``: take over an object already on a platform, or discover the objects
no recorded copy accounts for.

Registered on the ``reconcile`` group by :mod:`reconciler.cli.main`. ``reconcile import ASSET
PLATFORM ID`` calls :func:`reconciler.adopting.import_one` and shows the run as an apply does;
``reconcile import --discover PLATFORM`` calls :func:`reconciler.adopting.discover`, shows
what it found (text or JSON, rendered here) and, with ``--write FILE``, writes the matches
as Import documents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from reconciler import adopting
from reconciler.atomic import write_atomically
from reconciler.cli.options import (
    load_manifests,
    manifests_option,
    media_root_option,
    output_option,
    show,
    state_options,
    user_cache,
    workspace,
)
from reconciler.errors import ExitCode
from reconciler.manifests.quoting import printable
from reconciler.render.formats import APPLY_RENDERERS


@click.command("import")
@click.argument("target", nargs=-1, metavar="ASSET PLATFORM ID")
@click.option(
    "--discover",
    metavar="PLATFORM",
    help="List the objects on PLATFORM that no recorded copy accounts for, matched to assets "
    "by sha256 (or by title and size where the platform gives no checksum). Read-only.",
)
@click.option(
    "--write",
    "write",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --discover: write an Import document for each match to FILE, for review.",
)
@click.option("--force", is_flag=True, help="With --write: replace FILE if it exists.")
@manifests_option
@media_root_option
@state_options
@output_option(["text", "json"])
def import_command(
    target: tuple[str, ...],
    discover: str | None,
    write: Path | None,
    force: bool,
    output: str,
    **options: Any,
) -> int:
    """Take over an object already on a platform as an asset's copy, without uploading it.

    `reconcile import ASSET PLATFORM ID` checks that the object ID exists on PLATFORM (its
    key on a local folder or S3 bucket, the video id on YouTube or Vimeo, the object id on a
    REST API) and, where the platform gives a checksum or a size, that it holds the asset's
    bytes (its master, or the rendition its rule makes). A match is recorded as synced; a
    mismatch is recorded as outdated, and the next reconcile updates that object. For imports
    kept in git, declare an `Import` document in the manifests instead.

    `reconcile import --discover PLATFORM [--write imports.yaml]` lists the objects on
    PLATFORM that no recorded copy accounts for and the assets they match. It changes
    neither the state nor the platform.
    """
    where = workspace(
        options["manifests"], options["media_root"], options["state"], options["lock_timeout"]
    )
    if discover is not None:
        if target:
            raise click.UsageError("--discover takes no ASSET PLATFORM ID")
        manifest_set = load_manifests(where, user_cache(False))
        found = adopting.discover(manifest_set, where, discover)
        show(DISCOVERY_RENDERERS, output, found, colored=False)
        if write is not None:
            taken = [i.code for i in manifest_set.imports.values()]
            documents = adopting.import_documents(found, taken)
            for note in documents.left_out:
                click.echo(f"note: {printable(note)}", err=True)
            if documents.count:  # a file of comments alone would be invalid manifests
                _write(write, force, documents.text)
                click.echo(f"wrote {documents.count} Import documents to {write}", err=True)
            else:
                click.echo(f"nothing to import: {write} was not written", err=True)
        return ExitCode.OK
    if write is not None or force:
        raise click.UsageError("--write and --force go with --discover")
    if len(target) != 3:
        raise click.UsageError("give ASSET PLATFORM ID, or --discover PLATFORM")
    asset, platform, remote_id = target
    from reconciler.cli.main import observer_for  # main registers this command

    manifest_set = load_manifests(where, user_cache(False))
    done = adopting.import_one(
        manifest_set, where, asset, platform, remote_id, observer=observer_for(output)
    )
    show(APPLY_RENDERERS, output, done.applied, colored=False)
    return done.exit_code


def _write(path: Path, force: bool, text: str) -> None:
    if path.exists() and not force:
        raise click.UsageError(f"{path} exists; pass --force to replace it")
    write_atomically(path, text)


def discovery_text(found: adopting.Discovery, color: bool = False) -> str:
    """One line per unaccounted object: its id, size, checksum and the asset it matches."""
    lines = []
    for item in found.objects:
        obj = item.found
        size = f"{obj.size:,}" if obj.size is not None else "-"
        sha = obj.checksum[:12] if obj.checksum else "-"
        if item.asset is None:
            match = "no matching asset"
        elif item.wanted:
            match = f"{item.asset} (by {item.matched_by}): importable"
        else:
            match = (
                f"{item.asset} (by {item.matched_by}): not importable (no rule wants it here, "
                "it has a copy or a declared Import, or another object matched first)"
            )
        lines.append(f"{printable(obj.remote_id)}  {size} bytes  sha256 {sha}  {match}")
    lines.append(
        f"{found.platform}: {len(found.objects)} objects no recorded copy accounts for, "
        f"{len(found.importable)} importable; {found.managed} recorded copies"
    )
    return "\n".join(lines)


def discovery_json(found: adopting.Discovery, color: bool = False) -> str:
    return json.dumps(
        {
            "platform": found.platform,
            "managed": found.managed,
            "importable": len(found.importable),
            "objects": [
                {
                    "id": d.found.remote_id,
                    "key": d.found.key,
                    "size": d.found.size,
                    "sha256": d.found.checksum,
                    "title": d.found.title,
                    "url": d.found.url,
                    "asset": d.asset,
                    "matched_by": d.matched_by,
                    "importable": d.asset is not None and d.wanted,
                }
                for d in found.objects
            ],
        },
        indent=2,
        ensure_ascii=False,
    )


DISCOVERY_RENDERERS = {"text": discovery_text, "json": discovery_json}
