"""Shared test helpers: where the repository's example files are, and a CLI runner."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from reconciler.cli.main import cli
from reconciler.store.db import Store, location, open_state

Run = Callable[..., Result]


@pytest.fixture
def run() -> Run:
    """Invoke the `reconcile` CLI in-process; stdout and stderr are kept apart."""

    def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return invoke


@pytest.fixture
def manifests(tmp_path: Path) -> Callable[..., Path]:
    """Write manifest files into a fresh folder: manifests({"a.yaml": "..."})."""

    def write(files: dict[str, str | bytes], folder: str = "manifests") -> Path:
        root = tmp_path / folder
        root.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8")
        return root

    return write


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 server (moto's standalone server) on a free loopback port."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(f"moto server exited: {log.read_text()}") from None
            time.sleep(0.1)
    else:
        server.kill()
        raise RuntimeError("moto server did not start in 30 s")
    try:
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A throwaway PostgreSQL cluster (a pgcluster.Cluster) on a free loopback port, started
    the first time a test asks for it and stopped at the end of the run."""
    from pgcluster import start_cluster

    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Any) -> Iterator[str]:
    """A new, empty database on the run's cluster: its URL (no password in it) with the
    superuser's password in PGPASSWORD, where the product and psql look for it. Set through
    a monkeypatch of its own, so that a test's ``monkeypatch.undo()`` keeps it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", pg_cluster.password)
        yield pg_cluster.createdb(f"reconcile_{uuid.uuid4().hex[:12]}")


BACKENDS = ("duckdb", "postgresql")


@pytest.fixture(params=BACKENDS)
def state_at(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty state for one test, as ``--state`` takes it, once per backend: a DuckDB
    file's path under tmp_path (not created yet), or a new database's ``postgresql://`` URL
    (PGPASSWORD set). Only the postgresql case asks for the cluster, so a run of the duckdb
    cases (``-k duckdb``) never starts one. Read it back with ``helpers.query``.

    A PostgreSQL state keeps this tool's local files (the rendition cache) in ./state, so
    the postgresql case runs in tmp_path: each test gets its own, as beside its file."""
    if request.param == "duckdb":
        yield str(tmp_path / "state" / "reconciler.duckdb")
        return
    url: str = request.getfixturevalue("pg_url")
    with pytest.MonkeyPatch.context() as patch:  # kept through a test's monkeypatch.undo()
        patch.chdir(tmp_path)
        yield url


@pytest.fixture
def state_store(state_at: str) -> Store:
    """The store of ``state_at``, for in-process tests (nothing opened yet)."""
    return open_state(location(state_at), lock_timeout=5)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "xfail_postgresql(reason): the postgresql case of a test parametrised by state_at "
        "fails because of a known product defect (strict xfail); the duckdb case must pass",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """``@pytest.mark.xfail_postgresql(reason=...)`` marks only the postgresql case of a
    test xfail(strict=True): the defect stays visible, and its fix turns the run red until
    the mark goes."""
    for item in items:
        marker = item.get_closest_marker("xfail_postgresql")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None:
            continue
        if callspec.params.get("state_at") == "postgresql":
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.xfail(strict=True, reason=reason))


@pytest.fixture
def procs() -> Iterator[list[Any]]:
    """The `reconcile` subprocesses a test starts (leasekit.Proc; append them): any still
    running at its end is resumed (SIGCONT) and killed."""
    made: list[Any] = []
    yield made
    for proc in made:
        proc.kill_if_running()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The loopback fake REST API, YouTube and Vimeo servers (tests/apiservers.py), with
    their credentials where the tests' Platforms look for them."""
    from apiservers import API_KEY, REFRESH_TOKEN, VIMEO_TOKEN, FakePlatforms

    monkeypatch.setenv("TEST_CDN_KEY", API_KEY)
    monkeypatch.setenv("TEST_YT_REFRESH", REFRESH_TOKEN)
    monkeypatch.setenv("TEST_VIMEO_TOKEN", VIMEO_TOKEN)
    server = FakePlatforms().start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, aws_env: None) -> str:
    """A new, empty bucket on the loopback S3 server."""
    import boto3

    name = f"media-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials from the standard AWS environment chain (never from a manifest)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep the tests' caches (and their subprocesses') out of the user's ~/.cache."""
    import os

    folder = tmp_path_factory.mktemp("cache")
    before = os.environ.get("RECONCILE_CACHE_DIR")
    os.environ["RECONCILE_CACHE_DIR"] = str(folder)
    yield
    if before is None:
        os.environ.pop("RECONCILE_CACHE_DIR", None)
    else:
        os.environ["RECONCILE_CACHE_DIR"] = before


@pytest.fixture(autouse=True)
def _no_colour_or_ci_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs do not depend on the colour or CI settings of the machine running the tests:
    the tests that need NO_COLOR, FORCE_COLOR or GITHUB_STEP_SUMMARY set them themselves."""
    for name in ("NO_COLOR", "FORCE_COLOR", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
