"""``reconcile schema``: the JSON Schema of a manifest document, for editors and validators.

Registered on the ``reconcile`` group by :mod:`reconciler.cli.main`. Without options it prints
the schema of any manifest document (``manifest.schema.json``, which picks the kind's schema)
as one self-contained JSON document, every reference inlined, so that it can be saved anywhere;
with ``--path`` it prints where the installed schema file is instead (its references resolve
from the files beside it).
"""

from __future__ import annotations

import json

import click

from reconciler.errors import ExitCode
from reconciler.manifests.schema import MANIFEST_SCHEMA, bundled_schema, schemas_dir


@click.command("schema")
@click.option(
    "--path",
    "show_path",
    is_flag=True,
    help="Print the installed schema file's path instead of the schema.",
)
def schema_command(show_path: bool) -> int:
    """Print the JSON Schema of a manifest document (of any kind), for editors.

    The schema is one self-contained JSON document (Draft 2020-12): save it, for example as
    .vscode/mediasync.schema.json, and map manifests/**/*.yaml to it. With --path, print the
    path of the installed manifest.schema.json instead, to point an editor at it directly.
    """
    if show_path:
        click.echo(str(schemas_dir() / MANIFEST_SCHEMA))
    else:
        click.echo(json.dumps(bundled_schema(), indent=2, ensure_ascii=False))
    return ExitCode.OK


COMMANDS = [schema_command]
