"""``reconcile watch``: the command that starts the watcher of :mod:`reconciler.watch`.

Registered on the ``reconcile`` group by :mod:`reconciler.cli.main`. It parses the options,
builds the :class:`~reconciler.watch.Watcher` (each of whose cycles is one
:func:`reconciler.ops.reconcile`), routes SIGINT and SIGTERM to its stop, and exits 0 when it
has stopped.
"""

from __future__ import annotations

import signal
from pathlib import Path

import click

from reconciler.cli.options import (
    cache_option,
    manifests_option,
    media_root_option,
    parallel_option,
    rendition_options,
    seconds,
    state_options,
    user_cache,
    workspace,
)
from reconciler.errors import UsageError
from reconciler.queueing import needs_queue
from reconciler.store.db import Location


@click.command("watch")
@manifests_option
@media_root_option
@state_options
@parallel_option
@rendition_options
@cache_option
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
    "--queue",
    is_flag=True,
    help="Each cycle plans and writes its jobs for `reconcile worker` processes to claim, "
    "and runs none itself (a PostgreSQL state).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line.",
)
def watch_command(
    manifests: Path,
    media_root: Path | None,
    state: Location,
    lock_timeout: float,
    parallel: int,
    debounce: float,
    interval: float,
    log_format: str,
    queue: bool,
    renditions: Path | None,
    renditions_max_size: int,
    no_cache: bool,
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
    if queue:
        needs_queue(state)
    watcher = Watcher(
        workspace(manifests, media_root, state, lock_timeout, renditions),
        WatchOptions(
            debounce=debounce,
            interval=interval,
            parallel=parallel,
            log_format=log_format,
            renditions_max_bytes=renditions_max_size,
            queue=queue,
        ),
        Log(lambda line: click.echo(line), log_format),
    )
    watcher.cache = user_cache(no_cache)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: watcher.stop())
    return watcher.run()


COMMANDS = [watch_command]
