"""`reconcile --dry-run --no-refresh`: a plan from a CI runner that has the manifests and the
recorded state, but not the media.

The shipped example is applied once for real (a real DuckDB state file); each test then works
on a copy of that state and on a copy of the manifests folder without its media, through the
CLI. Without --no-refresh that copy fails validation (the masters are missing), as it always
did; with it, the masters are never read: their checksums and sizes come from the state, a
manifest change shows as exactly its own change, an asset the state never saw is a create of
a master not observed, and such a plan is never applied, saved as applicable, or reused as a
plan of the masters.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from reconciler.cli.main import cli
from reconciler.plan import reuse

from helpers import SHIPPED_MANIFESTS

VIMEO_RULE = "transform_rules: {quality: 1080p}"  # SYNC-VIMEO-EDU: VID-TUTORIAL-01 only
NEW_ASSET = """---
apiVersion: mediasync/v1
kind: Asset
metadata:
  code: IMG-NEW-2025
spec:
  title: A new image
  asset_type: image
  category: corporate
  file: media/images/new_2025.jpg
"""


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped example after one real apply: repo/manifests (with media), repo/state."""
    repo = tmp_path_factory.mktemp("applied")
    shutil.copytree(SHIPPED_MANIFESTS, repo / "manifests")
    (repo / "state").mkdir()
    state = repo / "state" / "reconciler.duckdb"
    done = CliRunner().invoke(
        cli, ["--manifests", str(repo / "manifests"), "--state", str(state)], env=_ENV
    )
    assert done.exit_code == 0, done.output
    assert "15 completed" in done.stdout
    return repo


_ENV = {"GITHUB_STEP_SUMMARY": None, "NO_COLOR": None, "FORCE_COLOR": None}


class Runner:
    """A clean CI runner: the manifests (no media folder at all) and the state file."""

    def __init__(self, applied: Path, root: Path) -> None:
        self.manifests = root / "checkout" / "manifests"
        self.manifests.mkdir(parents=True)
        for manifest in (applied / "manifests").glob("*.yaml"):
            shutil.copy2(manifest, self.manifests / manifest.name)
        self.state = root / "reconciler.duckdb"
        shutil.copy2(applied / "state" / "reconciler.duckdb", self.state)
        self.applied = applied

    def __call__(self, *args: str, env: dict[str, str | None] | None = None):
        where = ["--manifests", str(self.manifests), "--state", str(self.state)]
        return CliRunner().invoke(cli, [*args, *where], env={**_ENV, **(env or {})})

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.manifests / name
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    def state_digest(self) -> str:
        return hashlib.sha256(self.state.read_bytes()).hexdigest()


@pytest.fixture
def runner(applied: Path, tmp_path: Path) -> Iterator[Runner]:
    ci = Runner(applied, tmp_path)
    before = ci.state_digest()
    yield ci
    assert ci.state_digest() == before, "a plan wrote the state file"


def _json(result) -> dict:
    assert result.exit_code in (0, 2), result.output
    return json.loads(result.stdout)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_ci_copy_without_media_plans_no_changes(runner: Runner) -> None:
    assert not (runner.manifests / "media").exists()
    result = runner("--dry-run", "--no-refresh", "--detailed-exitcode")
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith(
        "note: planned against recorded observations (--no-refresh): masters not read; "
        "oldest observation "
    )
    assert first.endswith(" ago")
    assert "No changes to make." in result.stdout
    assert "15 unchanged" in result.stdout


def test_one_rule_change_is_exactly_one_change(runner: Runner) -> None:
    runner.edit("sync-rules.yaml", VIMEO_RULE, "transform_rules: {quality: 720p}")
    result = runner("--dry-run", "--no-refresh", "--detailed-exitcode")
    assert result.exit_code == 2, result.output
    plan = _json(runner("plan", "--no-refresh", "-o", "json"))
    changes = [a for a in plan["actions"] if a["action"] != "noop"]
    assert [(a["action"], a["platform"], a["asset"], a["rule"]) for a in changes] == [
        ("update", "VIMEO", "VID-TUTORIAL-01", "SYNC-VIMEO-EDU")
    ]
    (change,) = changes
    assert change["reason_code"] == "rendition_changed"
    master = runner.applied / "manifests" / "media" / "videos" / "tutorial_01.mp4"
    assert change["checksum"] == _sha256(master)  # the recorded checksum, never read here
    assert change["size_bytes"] == master.stat().st_size
    assert (change["source_version"], change["target_version"]) == (1, 1)
    assert plan["changes"] == 1


def test_without_no_refresh_the_missing_masters_fail_as_before(runner: Runner) -> None:
    result = runner("--dry-run", "--detailed-exitcode")
    assert result.exit_code == 1
    assert "spec.file: file not found: media/videos/launch_2024.mp4" in result.stderr
    assert "nothing was planned" in result.stderr
    assert runner("--dry-run", "--refresh").exit_code == 1


def test_a_media_root_that_does_not_exist_at_all(runner: Runner, tmp_path: Path) -> None:
    absent = tmp_path / "no-such-media"
    result = runner("plan", "--no-refresh", "--detailed-exitcode", "--media-root", str(absent))
    assert result.exit_code == 0, result.output
    assert "No changes to make." in result.stdout
    assert not absent.exists()
    assert runner("plan", "--media-root", str(absent)).exit_code == 1  # as before


def test_an_asset_never_recorded_is_a_create_of_a_master_not_observed(runner: Runner) -> None:
    with (runner.manifests / "assets.yaml").open("a") as manifest:
        manifest.write(NEW_ASSET)
    result = runner("--dry-run", "--no-refresh", "--detailed-exitcode")
    assert result.exit_code == 2, result.output
    assert "master not observed (--no-refresh)" in result.stdout
    plan = _json(runner("plan", "--no-refresh", "-o", "json"))
    changes = [a for a in plan["actions"] if a["action"] != "noop"]
    # corporate images go to the CDN and the S3 backup (not to social media: marketing only)
    assert sorted((a["action"], a["platform"], a["asset"]) for a in changes) == [
        ("create", "CDN-PRIMARY", "IMG-NEW-2025"),
        ("create", "S3-BACKUP", "IMG-NEW-2025"),
    ]
    for action in changes:
        assert action["checksum"] is None and action["size_bytes"] is None
        assert action["rendition_id"] is None
        assert action["reason_code"] == "not_on_platform"
        assert action["reason"].endswith("its checksum and size are unknown")
    assert any("2 placements are of masters the state holds no" in n for n in plan["notes"])


def test_an_asset_whose_file_changed_is_not_taken_for_its_old_file(runner: Runner) -> None:
    runner.edit("assets.yaml", "media/images/team_2024.jpg", "media/images/team_2025.jpg")
    plan = _json(runner("plan", "--no-refresh", "-o", "json"))
    changes = [a for a in plan["actions"] if a["action"] != "noop"]
    assert {(a["action"], a["asset"], a["reason_code"]) for a in changes} == {
        ("update", "IMG-TEAM-2024", "master_not_observed")
    }
    assert all(a["checksum"] is None for a in changes)


def test_the_json_plan_says_what_it_read_and_when(runner: Runner) -> None:
    blind = _json(runner("plan", "--no-refresh", "-o", "json"))
    assert blind["refresh"] == "none"
    assert blind["observed_at"] is not None and blind["observed_at"] <= blind["created_at"]
    against = blind["planned_against"]
    assert against["backend"] == "duckdb" and against["location"] == "reconciler.duckdb"
    assert against["exists"] is True and against["schema_version"] >= 11
    assert against["last_apply_at"] is not None
    con = duckdb.connect(str(runner.state), read_only=True)
    try:
        ((oldest, applied),) = con.execute(
            "SELECT min(updated_at), (SELECT max(completed_at) FROM sync_jobs) FROM source_assets"
        ).fetchall()
    finally:
        con.close()
    assert blind["observed_at"] == f"{oldest:%Y-%m-%dT%H:%M:%SZ}"  # when the apply observed
    assert against["last_apply_at"] == f"{applied:%Y-%m-%dT%H:%M:%SZ}"
    with_media = [
        "--manifests", str(runner.applied / "manifests"), "--state", str(runner.state)
    ]  # fmt: skip
    fresh = json.loads(
        CliRunner().invoke(cli, ["plan", "-o", "json", *with_media], env=_ENV).stdout
    )
    assert fresh["refresh"] == "masters" and fresh["observed_at"] is None
    assert fresh["planned_against"] == against


def test_the_markdown_plan_names_the_state_it_was_planned_against(runner: Runner) -> None:
    result = runner("plan", "--no-refresh", "-o", "markdown")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("### Plan: 0 to create")
    assert lines[2].startswith(
        "Planned against the DuckDB state `reconciler.duckdb` (schema version "
    )
    assert "; last apply 20" in lines[2] and " UTC, " in lines[2]
    assert lines[4].startswith("> planned against recorded observations (--no-refresh)")


def test_the_step_summary_gets_the_same_header(runner: Runner, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    result = runner("--dry-run", "--no-refresh", env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert result.exit_code == 0, result.output
    text = summary.read_text()
    assert "Planned against the DuckDB state" in text
    assert "> planned against recorded observations (--no-refresh)" in text


def test_a_real_apply_with_no_refresh_is_one_line_and_changes_nothing(runner: Runner) -> None:
    result = runner("--no-refresh")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: --no-refresh plans without reading the masters, and an apply must send bytes "
        "it has read: use it with --dry-run or `reconcile plan`; nothing was changed"
    ]
    assert runner("--refresh").exit_code == 1  # as before: --refresh goes with --dry-run


@pytest.mark.parametrize("how", ["--out", "-o json >"])
def test_a_saved_no_refresh_plan_is_refused_by_apply(
    runner: Runner, tmp_path: Path, how: str
) -> None:
    runner.edit("sync-rules.yaml", VIMEO_RULE, "transform_rules: {quality: 720p}")
    saved = tmp_path / "plan.json"
    if how == "--out":
        made = runner("plan", "--no-refresh", "--out", str(saved))
        assert "apply refuses it" in made.stderr
    else:
        made = runner("plan", "--no-refresh", "-o", "json")
        saved.write_text(made.stdout)
    assert made.exit_code == 0, made.output
    assert json.loads(saved.read_text())["refresh"] == "none"
    # applied where the media are, with the same manifests: refused all the same
    checkout = tmp_path / "with-media"
    shutil.copytree(runner.applied / "manifests", checkout)
    shutil.copy2(runner.manifests / "sync-rules.yaml", checkout)
    applied_with_media = CliRunner().invoke(
        cli,
        ["apply", str(saved), "--manifests", str(checkout), "--state", str(runner.state)],
        env=_ENV,
    )
    assert applied_with_media.exit_code == 1
    (line,) = applied_with_media.stderr.splitlines()
    assert line.startswith("error: ") and "was planned with --no-refresh" in line
    assert "cannot be applied" in line


def test_a_no_refresh_plan_is_never_a_fresh_one(
    runner: Runner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the media are and the plan cache is on: a master rewritten since the apply is
    unchanged to a plan of the recorded masters, changed to a plan of the masters, whichever
    ran first and was kept."""
    monkeypatch.setattr(reuse, "RACY_SECONDS", 0.0)  # every world may be kept at once
    cache = {"RECONCILE_CACHE_DIR": str(tmp_path / "cache")}
    repo = tmp_path / "repo"
    shutil.copytree(runner.applied / "manifests", repo)
    master = repo / "media" / "images" / "hero_product.jpg"
    master.write_bytes(master.read_bytes() + b"edited")
    args = ["--manifests", str(repo), "--state", str(runner.state), "--detailed-exitcode"]

    def plan(*more: str) -> int:
        return CliRunner().invoke(cli, ["plan", *more, *args], env={**_ENV, **cache}).exit_code

    assert plan("--no-refresh") == 0  # recorded: unchanged
    assert plan() == 2  # not answered from the plan of the recorded masters
    assert plan() == 2  # (kept now, and answered from)
    assert plan("--no-refresh") == 0  # not answered from the kept fresh plan
    assert plan() == 2


def test_help_explains_the_three_levels(runner: Runner) -> None:
    for command in (["--help"], ["plan", "--help"]):
        text = " ".join(CliRunner().invoke(cli, command).stdout.split())
        assert "--refresh / --no-refresh" in text
        assert "Neither (the default): every master is hashed" in text
        assert "--refresh: also what the platforms hold" in text
        assert "--no-refresh: neither masters nor platforms" in text
