"""``reconcile serve``: the web dashboard of :mod:`reconciler.web`, served by uvicorn.

Registered on the ``reconcile`` group by :mod:`reconciler.cli.main`. It checks the options
(an address other than loopback needs ``--auth-file``; the users file must be private),
binds the port itself so that a port in use is one line and exit 1, says where it serves,
and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
from pathlib import Path

import click

from reconciler.cli.options import (
    manifests_option,
    media_root_option,
    renditions_option,
    state_options,
    workspace,
)
from reconciler.errors import ExitCode, UsageError
from reconciler.store.db import Location, state_name


@click.command("serve")
@manifests_option
@media_root_option
@state_options
@renditions_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Any but a loopback address needs --auth-file.",
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
    help="Port to listen on (0: any free port, which is printed).",
)  # fmt: skip
@click.option(
    "--auth-file",
    type=click.Path(path_type=Path),
    envvar="RECONCILE_SERVE_AUTH_FILE",
    show_envvar=True,
    help="Users file: one NAME:SECRET line per person (chmod 600). With it, every page needs "
    "sign-in and signed-in users may resolve conflicts and ask for syncs; API clients send "
    "'Authorization: Bearer SECRET'. Without it the dashboard is read-only.",
)
@click.option(
    "--read-only",
    is_flag=True,
    help="Hide and refuse every action (resolve, sync now), even for signed-in users.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    metavar="NAME",
    multiple=True,
    help="A Host name the server answers for besides loopback names and the address it "
    "listens on (the public name behind a reverse proxy); needs --auth-file. Repeatable.",
)
def serve_command(
    manifests: Path,
    media_root: Path | None,
    state: Location,
    lock_timeout: float,
    renditions: Path | None,
    host: str,
    port: int,
    auth_file: Path | None,
    read_only: bool,
    allowed_hosts: tuple[str, ...],
) -> int:
    """Serve the web dashboard: status per platform, the distribution report, each asset's
    copies, conflicts, jobs and events (live), the pending plan and the activity chart,
    with a JSON API under /api (its description: /api/openapi.json).

    It reads the same state as the other commands, DuckDB or PostgreSQL (a read-only role
    does), in short reads, so it runs beside `reconcile watch`. Loopback only unless
    --auth-file is given; stop it with Ctrl-C or SIGTERM.
    """
    import uvicorn  # the web stack: only for serve

    from reconciler.viewing import Manifests
    from reconciler.web.app import create_app
    from reconciler.web.context import Served
    from reconciler.web.security import is_loopback, read_users

    if not host.strip():
        raise UsageError("--host is empty; give an address such as 127.0.0.1")
    if any("*" in name or not name.strip() for name in allowed_hosts):
        raise UsageError("--allowed-host takes a host name, not a pattern")
    if allowed_hosts and auth_file is None:
        raise UsageError(
            "--allowed-host serves the dashboard under another name (a reverse proxy): give "
            "--auth-file FILE too, or anyone who reaches that name sees it"
        )
    if not manifests.is_dir():
        raise UsageError(f"manifests folder '{manifests}' not found; pass --manifests DIR")
    users = read_users(auth_file) if auth_file is not None else None
    if users is None and not is_loopback(host):
        raise UsageError(
            f"--host {host} is not a loopback address: give --auth-file FILE (NAME:SECRET "
            "lines) so that only signed-in users see the dashboard"
        )
    served = Served(
        workspace(manifests, media_root, state, lock_timeout, renditions), users, read_only
    )
    Manifests.current(served.manifests)  # read them once now: a broken file is said at start
    if served.manifests.problem:
        click.echo(f"warning: {served.manifests.problem}", err=True)
    names = {host, *allowed_hosts}
    if not is_loopback(host):
        names |= _own_names()
    sock = _bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    mode = "read-only" if not served.can_act else f"sign-in with {auth_file}"
    if users is not None and read_only:
        mode = f"sign-in with {auth_file}, read-only"
    click.echo(
        f"serving the dashboard of {state_name(state)} at http://{shown}:{bound}/ ({mode})",
        err=True,
    )
    app = create_app(served, sorted(n for n in names if n))
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    # uvicorn finishes the requests in flight on SIGINT or SIGTERM, then raises the signal
    # again to the handlers it found: these, so that a stop is an exit 0, as for watch
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    uvicorn.Server(config).run(sockets=[sock])
    click.echo("stopped", err=True)
    return ExitCode.OK


def _own_names() -> set[str]:
    """This machine's names and addresses, for a server bound to a public address."""
    names = {socket.gethostname(), socket.getfqdn()}
    with contextlib.suppress(OSError):  # a host name that does not resolve
        names |= set(socket.gethostbyname_ex(socket.gethostname())[2])
    return names


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"port {port} on {host} is in use; pass another --port") from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


COMMANDS = [serve_command]
