"""`reconcile serve` over a real PostgreSQL state (the conftest's throwaway cluster), read as a
role made with `reconcile state grant-readonly`: every page and answer works, with the same
figures as the owner's `reconcile status`, and an action is refused in one line."""

from __future__ import annotations

import json
import secrets
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from cli_process import reconcile
from dashboard_kit import SECRET, users_file
from psycopg import sql
from starlette.testclient import TestClient

from reconciler import ops
from reconciler.store.db import location
from reconciler.web.app import create_app
from reconciler.web.context import Served
from reconciler.web.security import read_users

from helpers import SHIPPED_MANIFESTS


def ok(*args: str, cwd: Path) -> str:
    done = reconcile(*args, cwd=cwd)
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout


def test_a_read_only_role_serves_every_page(
    pg_cluster: Any, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(SHIPPED_MANIFESTS, tmp_path / "manifests")
    (tmp_path / "state").mkdir()
    manifests = tmp_path / "manifests"
    ok("--manifests", str(manifests), "--state", pg_url, cwd=tmp_path)
    owner_status = json.loads(ok("status", "--state", pg_url, "-o", "json", cwd=tmp_path))
    role, password = f"web_{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16)
    with pg_cluster.connect(autocommit=True) as con:
        con.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
    ok("state", "grant-readonly", role, "--state", pg_url, cwd=tmp_path)
    mine = pg_cluster.url(pg_url.rsplit("/", 1)[1], user=role)
    monkeypatch.setenv("PGPASSWORD", password)
    monkeypatch.chdir(tmp_path)
    where = ops.Workspace(manifests, None, location(mine), 10.0, None, "reconcile serve")
    users = read_users(users_file(tmp_path))
    web = TestClient(create_app(Served(where, users, False)), base_url="http://127.0.0.1")
    bearer = {"authorization": f"Bearer {SECRET}"}

    assert web.get("/api/status", headers=bearer).json()["platforms"] == owner_status["platforms"]
    for path in (
        "/",
        "/assets",
        "/assets/IMG-HERO-PROD",
        "/conflicts",
        "/jobs",
        "/events",
        "/plan",
    ):
        answer = web.get(path, headers=bearer)
        assert answer.status_code == 200, (path, answer.text)
        assert password not in answer.text
    found = web.get("/api/assets/IMG-HERO-PROD", headers=bearer).json()
    assert len(found["placements"]) == 3
    assert web.get("/api/plan", headers=bearer).json()["summary"]["create"] == 0
    assert (
        sum(r["completed"] for r in web.get("/api/activity", headers=bearer).json()["activity"])
        == 15
    )
    refused = web.post("/api/assets/IMG-HERO-PROD/platforms/CDN-PRIMARY/sync", headers=bearer)
    assert refused.status_code in (403, 409), refused.text
    assert "\n" not in refused.json()["error"] and "Traceback" not in refused.text
