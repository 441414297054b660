"""A throwaway PostgreSQL cluster on loopback, for the tests of the PostgreSQL state backend.

The conftest's `pg_cluster` fixture calls `start_cluster()` once per test run and `stop()` at
the end; `pg_url` calls `Cluster.createdb()` for each test. Nothing here needs a PostgreSQL
installed on the machine: the system's binaries are used when there are some (faster to find,
the version a packager tested), otherwise the ones the `pgserver` wheel of the test extra
ships, so that `pip install '.[test]' && pytest` passes on a machine with only Python.

The cluster lives in one temporary folder (data, socket, server log) that `stop()` removes.
It listens on 127.0.0.1 only, on a free port, and asks TCP clients for the superuser's
password (scram-sha-256); the password is never put in a URL: clients take it from
PGPASSWORD, as the product does. PostgreSQL refuses to run as root, so when the tests run as
root the server runs as an unprivileged system user, created if missing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import psycopg

SUPERUSER = "postgres"
HOST = "127.0.0.1"
# The unprivileged account the server runs as when the tests run as root.
SYSTEM_USER = "reconcile-pg"
# A Unix socket path is at most 107 bytes on Linux (103 on macOS); the file inside the
# socket folder is ".s.PGSQL.NNNNN".
_MAX_SOCKET_DIR = 80
_SERVER_SETTINGS = {
    "listen_addresses": HOST,
    # A throwaway cluster: durability buys nothing, speed does.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class ClusterError(RuntimeError):
    """The cluster could not be made, started or stopped; the message says why."""


@dataclass(frozen=True)
class Binaries:
    """The PostgreSQL programs one cluster uses, all from one installation."""

    bin_dir: Path
    psql: Path
    origin: str  # "system" or "pgserver"

    @property
    def initdb(self) -> Path:
        return self.bin_dir / "initdb"

    @property
    def pg_ctl(self) -> Path:
        return self.bin_dir / "pg_ctl"


def find_binaries(*, prefer_system: bool = True) -> Binaries:
    """The system's initdb and pg_ctl (PATH, then the newest /usr/lib/postgresql/*/bin) when
    both are there, else the ones bundled in the pgserver wheel; psql from the same place."""
    if prefer_system:
        found = _system_bin_dir()
        if found is not None:
            psql = found / "psql"
            if not _is_executable(psql):
                which = shutil.which("psql")
                psql = Path(which) if which else _pgserver_bin_dir() / "psql"
            return Binaries(bin_dir=found, psql=psql, origin="system")
    bundled = _pgserver_bin_dir()
    return Binaries(bin_dir=bundled, psql=bundled / "psql", origin="pgserver")


def _system_bin_dir() -> Path | None:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        # Debian links /usr/bin tools to a wrapper and some images link initdb alone into
        # /usr/local/bin: the folder that counts is the one the real initdb is in.
        folder = Path(initdb).resolve().parent
        if _is_executable(folder / "pg_ctl"):
            return folder
    versions = []
    for folder in Path("/usr/lib/postgresql").glob("*/bin"):
        number = folder.parent.name
        if re.fullmatch(r"\d+(\.\d+)?", number) and all(
            _is_executable(folder / name) for name in ("initdb", "pg_ctl")
        ):
            versions.append((tuple(int(part) for part in number.split(".")), folder))
    return max(versions)[1] if versions else None


def _pgserver_bin_dir() -> Path:
    # Found, not imported: importing pgserver starts its server machinery (and warns about
    # XDG_RUNTIME_DIR), and its POSTGRES_BIN_PATH lives in the private pgserver._commands
    # (the package's `import *` does not re-export it). The wheel's layout is pginstall/bin.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise ClusterError(
            "no PostgreSQL found: neither initdb and pg_ctl on PATH or in "
            "/usr/lib/postgresql/*/bin, nor the pgserver wheel (pip install '.[test]')"
        )
    folder = Path(spec.origin).parent / "pginstall" / "bin"
    if not all(_is_executable(folder / name) for name in ("initdb", "pg_ctl", "psql")):
        raise ClusterError(f"pgserver is installed but {folder} lacks initdb, pg_ctl or psql")
    return folder


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@dataclass
class Cluster:
    """A running throwaway cluster: where it listens, its superuser and password, and the
    psql of the same installation."""

    root: Path
    port: int
    password: str
    binaries: Binaries
    run_as: str | None = None
    host: str = HOST
    user: str = SUPERUSER
    _stopped: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def psql_path(self) -> Path:
        return self.binaries.psql

    def url(self, db: str = "postgres", user: str | None = None) -> str:
        """postgresql://USER@127.0.0.1:PORT/DB, without the password (see env())."""
        who = quote(user or self.user, safe="")
        return f"postgresql://{who}@{self.host}:{self.port}/{quote(db, safe='')}"

    def env(self) -> dict[str, str]:
        """A copy of os.environ with PGPASSWORD set to the superuser's password."""
        return {**os.environ, "PGPASSWORD": self.password}

    def connect(self, db: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        """A psycopg connection over TCP as the superuser, with the password."""
        import psycopg

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=db,
            connect_timeout=10,
            **kwargs,
        )

    def createdb(self, name: str) -> str:
        """Create an empty database (from template0) and return its URL."""
        from psycopg import sql

        with self.connect(autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                    sql.Identifier(name)
                )
            )
        return self.url(name)

    def stop(self) -> None:
        """Stop the server at once (no checkpoint: nothing in it is kept) and remove the
        folder. Calling it again does nothing."""
        if self._stopped:
            return
        self._stopped = True
        try:
            if (self.data_dir / "postmaster.pid").exists():
                _run(
                    [self.binaries.pg_ctl, "-D", self.data_dir, "-m", "immediate", "-w", "stop"],
                    self.root,
                    self.run_as,
                )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_cluster(binaries: Binaries | None = None, *, timeout: int = 60) -> Cluster:
    """Make a cluster in a new temporary folder and start it on a free loopback port."""
    binaries = binaries or find_binaries()
    run_as = _unprivileged_user() if os.geteuid() == 0 else None
    if run_as is not None:
        _make_traversable(binaries.bin_dir, run_as)
    root = Path(tempfile.mkdtemp(prefix="reconcile-pg-", dir=_base_dir(run_as)))
    password = secrets.token_urlsafe(24)
    try:
        _initdb(binaries, root, password, run_as)
        # The free port may be taken between finding it and the server binding it.
        attempts = 1
        while True:
            cluster = Cluster(root, _free_port(), password, binaries, run_as)
            try:
                _start(cluster, timeout)
                return cluster
            except ClusterError:
                if attempts == 3 or "could not bind" not in _tail(cluster.log_path):
                    raise
            cluster.log_path.unlink(missing_ok=True)
            attempts += 1
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _initdb(binaries: Binaries, root: Path, password: str, run_as: str | None) -> None:
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n", encoding="utf-8")
    pwfile.chmod(0o600)
    (root / "s").mkdir(mode=0o700)
    if run_as is not None:
        for path in (root, pwfile, root / "s"):
            shutil.chown(path, run_as, _group_of(run_as))
    try:
        _run(
            [
                binaries.initdb,
                "-D",
                root / "data",
                "-U",
                SUPERUSER,
                "--pwfile",
                pwfile,
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            root,
            run_as,
        )
    finally:
        pwfile.unlink(missing_ok=True)


def _start(cluster: Cluster, timeout: int) -> None:
    options = [
        "-p",
        str(cluster.port),
        "-k",
        str(cluster.root / "s"),
        *(part for name, value in _SERVER_SETTINGS.items() for part in ("-c", f"{name}={value}")),
    ]
    command: list[str | Path] = [
        cluster.binaries.pg_ctl,
        "-D",
        cluster.data_dir,
        "-l",
        cluster.log_path,
        "-w",
        "-t",
        str(timeout),
        "-o",
        shlex.join(options),
        "start",
    ]
    try:
        _run(command, cluster.root, cluster.run_as, timeout=timeout + 10)
    except ClusterError as error:
        # pg_ctl -w may give up while a postmaster is still starting: leave none behind.
        if (cluster.data_dir / "postmaster.pid").exists():
            _run(
                [cluster.binaries.pg_ctl, "-D", cluster.data_dir, "-m", "immediate", "stop"],
                cluster.root,
                cluster.run_as,
                check=False,
            )
        raise ClusterError(
            f"PostgreSQL did not start on {HOST}:{cluster.port} "
            f"({cluster.binaries.origin} binaries in {cluster.binaries.bin_dir}): {error}\n"
            f"last lines of its server log:\n{_tail(cluster.log_path)}"
        ) from None


def _run(
    command: list[str | Path],
    cwd: Path,
    run_as: str | None,
    *,
    timeout: float = 60,
    check: bool = True,
) -> None:
    """Run a PostgreSQL program, as `run_as` when given. Its output goes to a file, not a
    pipe: the postmaster that pg_ctl starts would otherwise hold the pipe open."""
    identity: dict[str, Any] = {}
    if run_as is not None:
        identity = {"user": run_as, "group": _group_of(run_as), "extra_groups": []}
    with tempfile.TemporaryFile("w+") as output:
        try:
            result = subprocess.run(
                [str(part) for part in command],
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
                **identity,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise ClusterError(f"{Path(command[0]).name}: {error}") from error
        if check and result.returncode != 0:
            output.seek(0)
            raise ClusterError(
                f"{Path(command[0]).name} exited with {result.returncode}:\n{output.read()}"
            )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _unprivileged_user() -> str:
    """The system user the server runs as when we are root, created if missing."""
    import pwd

    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        done = subprocess.run(
            [
                useradd,
                "--system",
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        try:  # another test process may have created it meanwhile
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise ClusterError(
                f"PostgreSQL refuses to run as root and user {SYSTEM_USER!r} could not be "
                f"created: {done.stderr.strip() or done.returncode}"
            ) from None
    return SYSTEM_USER


def _group_of(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


def _base_dir(run_as: str | None) -> str:
    """Where the cluster's folder goes: the usual temporary folder unless its path is too
    long for a Unix socket or the server's user could not reach it; then /tmp."""
    usual = tempfile.gettempdir()
    fits = len(os.path.join(usual, "reconcile-pg-XXXXXXXX", "s")) <= _MAX_SOCKET_DIR
    if fits and (run_as is None or _traversable(Path(usual), run_as)):
        return usual
    return "/tmp"


def _traversable(folder: Path, user: str) -> bool:
    return all(_searchable(path, user) for path in (folder, *folder.parents))


def _searchable(path: Path, user: str) -> bool:
    import pwd

    entry = pwd.getpwnam(user)
    info = path.stat()
    if info.st_uid == entry.pw_uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in os.getgrouplist(user, entry.pw_gid):
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _make_traversable(folder: Path, user: str) -> None:
    """Let `user` reach the binaries: a virtualenv under a private home (mode 0700) is
    common when root runs the tests. Only the search bit for others is added, and only on
    the folders that lack it; nothing becomes readable that was not."""
    real = folder.resolve()
    for path in (real, *real.parents):
        if not _searchable(path, user):
            print(f"pgcluster: chmod o+x {path} so that {user} can run PostgreSQL", file=sys.stderr)
            path.chmod(path.stat().st_mode | stat.S_IXOTH)
