"""The shipped CI plan (examples/ci/plan.sh) run as a CI runner runs it: from a clean clone of a
repository that holds only the manifests (no media folder at all), against the shared
PostgreSQL state of a real apply, as a read-only role."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_state_readonly import Role, make_role

from helpers import REPO

SCRIPT = REPO / "examples" / "ci" / "plan.sh"
WORKFLOW = REPO / "examples" / "ci" / "github-actions.yml"


def git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.name=ci", "-c", "user.email=ci@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def reconcile(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


class Runner:
    """A clean clone of the manifests repository, and how the CI runs the script in it."""

    def __init__(self, clone: Path, state: str, role: Role, summary: Path) -> None:
        self.clone, self.state, self.role, self.summary = clone, state, role, summary

    def plan(self) -> subprocess.CompletedProcess[str]:
        # the runner has `reconcile` on its PATH, as after `pip install`
        bin_dir = Path(sys.executable).parent
        shim = self.clone.parent / "bin"
        shim.mkdir(exist_ok=True)
        command = shim / "reconcile"
        command.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m reconciler "$@"\n')
        command.chmod(0o755)
        env = {
            "PATH": f"{shim}{os.pathsep}{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "RECONCILE_STATE": self.state,
            "PGPASSWORD": self.role.password,
            "GITHUB_STEP_SUMMARY": str(self.summary),
            "NO_COLOR": "1",
            "HOME": str(self.clone.parent),
            "RECONCILE_CACHE_DIR": str(self.clone.parent / "cache"),
        }
        return subprocess.run(
            ["sh", str(SCRIPT), "manifests"],
            cwd=self.clone,
            env={k: v for k, v in {**os.environ, **env}.items() if k != "RECONCILE_MANIFESTS"},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )


@pytest.fixture
def runner(tmp_path: Path, pg_url: str, pg_cluster: Any) -> Runner:
    # the server side: the shipped example applied to the shared state, with its media
    server = tmp_path / "server"
    shutil.copytree(REPO / "manifests", server / "manifests")
    applied = reconcile("--manifests", str(server / "manifests"), "--state", pg_url)
    assert applied.returncode == 0, applied.stderr
    role = make_role(pg_cluster, f"ci_{os.getpid()}_{tmp_path.name[-6:]}".replace("-", "_"))
    granted = reconcile("state", "grant-readonly", role.name, "--state", pg_url)
    assert granted.returncode == 0, granted.stderr

    # the manifests repository: the YAML files only, as teams keep media out of git
    origin = tmp_path / "manifests-repo"
    (origin / "manifests").mkdir(parents=True)
    for manifest in (REPO / "manifests").glob("*.yaml"):
        shutil.copy(manifest, origin / "manifests" / manifest.name)
    git("init", "-q", "-b", "main", ".", cwd=origin)
    git("add", ".", cwd=origin)
    git("commit", "-q", "-m", "manifests", cwd=origin)

    runner_dir = tmp_path / "runner"
    runner_dir.mkdir()
    git("clone", "-q", str(origin), "checkout", cwd=runner_dir)
    clone = runner_dir / "checkout"
    assert not (clone / "manifests" / "media").exists()
    database = pg_url.rsplit("/", 1)[1]
    return Runner(clone, pg_cluster.url(database, user=role.name), role, runner_dir / "summary")


def test_nothing_changed_exits_0_from_a_clone_without_media(runner: Runner) -> None:
    done = runner.plan()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    plan = (runner.clone / "plan.md").read_text()
    assert "No changes" in plan or "0 to create, 0 to update" in plan
    assert "PostgreSQL state" in plan and "masters not read" in plan
    assert runner.role.password not in plan + done.stdout + done.stderr
    assert "Planned against" in runner.summary.read_text()


def test_one_rule_change_exits_2_with_exactly_that_change(runner: Runner) -> None:
    rules = runner.clone / "manifests" / "sync-rules.yaml"
    text = rules.read_text()
    vimeo = text.index("code: SYNC-VIMEO-EDU")
    changed = text[:vimeo] + text[vimeo:].replace("quality: 1080p", "quality: 720p", 1)
    assert changed != text
    rules.write_text(changed)

    done = runner.plan()
    assert done.returncode == 2, done.stdout + done.stderr
    plan = (runner.clone / "plan.md").read_text()
    rows = [line for line in plan.splitlines() if line.startswith("| `")]
    assert len(rows) == 1, plan
    assert "VIMEO" in rows[0] and "VID-TUTORIAL-01" in rows[0] and "SYNC-VIMEO-EDU" in rows[0]

    as_json = reconcile(
        "--dry-run", "--no-refresh", "-o", "json", "--manifests", str(rules.parent),
        env={"RECONCILE_STATE": runner.state, "PGPASSWORD": runner.role.password},
    )  # fmt: skip
    planned = json.loads(as_json.stdout)
    assert planned["refresh"] == "none"
    changes = [a for a in planned["actions"] if a["action"] != "noop"]
    assert [(a["asset"], a["platform"], a["action"]) for a in changes] == [
        ("VID-TUTORIAL-01", "VIMEO", "update")
    ]


def test_invalid_manifests_exit_1_naming_the_line(runner: Runner) -> None:
    assets = runner.clone / "manifests" / "assets.yaml"
    assets.write_text(assets.read_text().replace("asset_type: video", "asset_type: vidoe", 1))
    done = runner.plan()
    assert done.returncode == 1
    assert "assets.yaml:" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_the_github_workflow_runs_the_same_commands() -> None:
    workflow = WORKFLOW.read_text()
    script = SCRIPT.read_text()
    for needed in (
        "reconcile validate --no-refresh",
        "--dry-run --no-refresh --detailed-exitcode",
        "--output markdown",
    ):
        assert needed in workflow.replace("\\\n    ", ""), needed
    assert "reconcile validate" in script and "--detailed-exitcode" in script
    assert "secrets.RECONCILE_CI_PASSWORD" in workflow and "PGPASSWORD" in workflow
    assert "pull-requests: write" in workflow and "gh pr comment" in workflow
