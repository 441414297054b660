"""``reconcile worker`` and ``reconcile workers``: the job queue's commands.

Registered on the ``reconcile`` group by :mod:`reconciler.cli.main`. ``worker`` parses its
options, routes SIGTERM and SIGINT to the worker's stop, runs
:func:`reconciler.queueing.work` and prints one line per finished job and a summary;
``workers`` lists the fleet (:func:`reconciler.queueing.fleet`) as a table, JSON or CSV.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import click

from reconciler import ops, queueing
from reconciler.cli.options import (
    REPORT_FORMATS,
    cache_option,
    load_manifests,
    manifests_option,
    media_root_option,
    output_option,
    rendition_options,
    show_report,
    state_options,
    user_cache,
    workspace,
)
from reconciler.model import ManifestSet
from reconciler.store.db import Location
from reconciler.store.queries import Report


@click.command("worker")
@manifests_option
@media_root_option
@state_options
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=64),
    default=4,
    show_default=True,
    help="Jobs this worker runs at once.",
)
@click.option("--platform", metavar="CODE", help="Only claim jobs for this platform.")
@click.option("--rule", metavar="CODE", help="Only claim jobs of this rule.")
@click.option(
    "--exit-when-idle",
    is_flag=True,
    help="Exit once the queue holds nothing pending, eligible or in progress (else it "
    "waits for new jobs until SIGTERM).",
)
@rendition_options
@cache_option
@output_option(["text", "jsonl"])
def worker_command(
    concurrency: int,
    platform: str | None,
    rule: str | None,
    exit_when_idle: bool,
    renditions: Path | None,
    renditions_max_size: int,
    no_cache: bool,
    output: str,
    **options: Any,
) -> int:
    """Claim queued jobs from a PostgreSQL state and run them.

    `reconcile --queue` (or `reconcile watch --queue`) plans and writes the jobs; any number
    of workers, on any hosts that reach the state and the masters, claim them highest
    priority first (SELECT ... FOR UPDATE SKIP LOCKED) and run each through the same
    transfer code as `reconcile`. Each worker holds a lease with a heartbeat; the jobs of a
    worker that stops renewing it (killed, its host lost) are checked on their platform and
    go back to the queue (a `reclaimed` event names the worker). Hourly rate limits are
    counted across all workers. SIGTERM or SIGINT: no new claim, transfers in flight get
    5 s, what is unfinished is handed back; the worker exits within 10 s.

    \b
    Exit codes: 0 done, 1 error (no PostgreSQL state, invalid manifests, state lost),
    3 some jobs it ran failed.
    """
    from reconciler.cli.main import observer_for  # main registers this command

    where = workspace(options["manifests"], options["media_root"], options["state"],
                      options["lock_timeout"], renditions)  # fmt: skip
    queueing.needs_queue(where.state)
    cache = user_cache(no_cache)
    manifest_set = load_manifests(where, cache)

    def reload() -> ManifestSet | None:
        result = ops.load(where, cache)
        if result.manifest_set is None:
            first = result.errors[0].format() if result.errors else "invalid"
            click.echo(f"note: the manifests are invalid now, the last good ones stay: {first}",
                       err=True)  # fmt: skip
        return result.manifest_set

    stop = threading.Event()
    before = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        worked = queueing.work(
            manifest_set,
            where.state,
            where.lock_timeout,
            queueing.WorkerOptions(
                concurrency=concurrency,
                platform=platform,
                rule=rule,
                exit_when_idle=exit_when_idle,
                stop=stop,
                renditions=where.rendition_folder,
                renditions_max_bytes=renditions_max_size,
            ),
            observer_for(output),
            reload,
        )
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)
    for note in worked.reclaimed:
        click.echo(f"reclaimed: {note}", err=True)
    for why in worked.unrunnable:
        click.echo(f"failed: {why}", err=True)
    c = worked.counts
    click.echo(
        f"Worker {worked.worker_id}: {c['completed']} completed, {c['failed']} failed, "
        f"{c['deferred']} deferred; {len(worked.reclaimed)} reclaimed from lost workers, "
        f"{worked.handed_back} handed back.",
        err=output == "jsonl",
    )
    return worked.exit_code


@click.command("workers")
@state_options
@output_option(REPORT_FORMATS)
def workers_command(state: Location, lock_timeout: float, output: str) -> int:
    """The queue's workers: live, lost (its lease ran out) and stopped.

    Per worker: its id (host:pid:nonce), host, pid, state, when it started, its last
    heartbeat, the jobs it is running, and the jobs it completed and failed. Read-only.
    """
    rows = queueing.fleet(state, lock_timeout)
    columns = ["worker", "host", "pid", "state", "started_at", "last_heartbeat",
               "current_jobs", "jobs_done", "jobs_failed", "stopped_at"]  # fmt: skip
    report = Report(
        "workers",
        columns,
        [
            (
                w.worker_id,
                w.host,
                w.pid,
                w.state,
                w.started_at,
                w.last_heartbeat,
                " ".join(w.current_jobs),
                w.jobs_done,
                w.jobs_failed,
                w.stopped_at,
            )
            for w in rows
        ],
        "no worker has run on this state yet",
    )
    show_report(report, output)
    return 0


COMMANDS = [worker_command, workers_command]
