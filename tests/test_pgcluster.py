"""The throwaway PostgreSQL cluster the tests start themselves (tests/pgcluster.py, the
conftest's pg_cluster and pg_url): loopback only, password over TCP, a fresh database per
test, psql of the same installation, and a clear failure when the server cannot start."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from pgcluster import Cluster, ClusterError, find_binaries, start_cluster


def test_the_cluster_listens_on_loopback_only(pg_cluster: Cluster) -> None:
    with pg_cluster.connect() as conn:
        row = conn.execute("SHOW listen_addresses").fetchone()
    assert row == ("127.0.0.1",)
    for address in _other_addresses():
        with pytest.raises(OSError), socket.create_connection((address, pg_cluster.port), 2):
            pass


def test_tcp_needs_the_password(pg_cluster: Cluster) -> None:
    with pg_cluster.connect() as conn:
        row = conn.execute("SELECT current_user, inet_server_addr()::text").fetchone()
    assert row == ("postgres", "127.0.0.1/32")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg_cluster.url(), password="not-" + pg_cluster.password)


def test_the_url_carries_no_password(pg_cluster: Cluster) -> None:
    url = pg_cluster.url("media", user="reader")
    assert url == f"postgresql://reader@127.0.0.1:{pg_cluster.port}/media"
    assert pg_cluster.password not in pg_cluster.url()
    assert pg_cluster.env()["PGPASSWORD"] == pg_cluster.password


def test_pg_url_databases_are_distinct_and_empty(pg_cluster: Cluster, pg_url: str) -> None:
    other = pg_cluster.createdb("reconcile_other_" + os.urandom(4).hex())
    assert other != pg_url
    names = set()
    for url in (pg_url, other):
        # PGPASSWORD comes from the pg_url fixture, as the product will take it.
        with psycopg.connect(url) as conn:
            name, tables = conn.execute(
                "SELECT current_database(), (SELECT count(*) FROM pg_tables"
                " WHERE schemaname NOT IN ('pg_catalog', 'information_schema'))"
            ).fetchone() or (None, None)
        assert tables == 0
        names.add(name)
    assert len(names) == 2
    assert pg_url.rsplit("/", 1)[1] in names


def test_psql_runs_against_the_url_with_pgpassword(pg_cluster: Cluster, pg_url: str) -> None:
    assert os.environ["PGPASSWORD"] == pg_cluster.password
    done = _psql(pg_cluster.psql_path, pg_url, "SELECT 1", dict(os.environ))
    assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr
    without = {k: v for k, v in os.environ.items() if k not in ("PGPASSWORD", "PGPASSFILE")}
    without["PGPASSFILE"] = os.devnull
    refused = _psql(pg_cluster.psql_path, pg_url, "SELECT 1", without)
    assert refused.returncode != 0
    assert "password" in refused.stderr


def test_the_bundled_binaries_run_a_cluster_too() -> None:
    """The bare-machine path: pgserver's PostgreSQL, whatever the machine has installed."""
    cluster = start_cluster(find_binaries(prefer_system=False))
    try:
        assert cluster.binaries.origin == "pgserver"
        url = cluster.createdb("bundled")
        done = _psql(cluster.psql_path, url, "SELECT current_database()", cluster.env())
        assert (done.returncode, done.stdout.strip()) == (0, "bundled"), done.stderr
    finally:
        cluster.stop()
    assert not cluster.root.exists()
    with pytest.raises(psycopg.OperationalError):
        cluster.connect()


def test_a_server_that_cannot_start_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    import pgcluster

    settings = {**pgcluster._SERVER_SETTINGS, "no_such_setting": "1"}
    monkeypatch.setattr(pgcluster, "_SERVER_SETTINGS", settings)
    before = _cluster_folders()
    with pytest.raises(ClusterError, match="did not start") as caught:
        start_cluster()
    assert 'unrecognized configuration parameter "no_such_setting"' in str(caught.value)
    assert _cluster_folders() <= before  # the failed cluster's folder is removed


def _cluster_folders() -> set[Path]:
    return {
        path
        for base in {tempfile.gettempdir(), "/tmp"}
        for path in Path(base).glob("reconcile-pg-*")
    }


def _psql(
    psql: Path, url: str, query: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(psql), "--no-psqlrc", "--no-password", "-At", "-c", query, url],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _other_addresses() -> list[str]:
    """Addresses of this machine other than 127.0.0.1 that a client could try: ::1 when the
    machine has IPv6, and the address of the interface a default route would use."""
    found = []
    if socket.has_ipv6:
        found.append("::1")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
            address = probe.getsockname()[0]
        if not address.startswith("127."):
            found.append(address)
    except OSError:
        pass
    return found
