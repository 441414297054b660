"""`reconcile --dry-run` / `reconcile plan` and `reconcile explain` through the CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from planning import pretend_applied

from reconciler.manifests.validate import validate_tree
from reconciler.plan.planner import make_plan
from reconciler.store.db import StateStore

from helpers import SHIPPED_MANIFESTS

# The plan of the shipped example on an empty state: (action, platform, asset, rule, version).
GOLDEN = [
    ("create", "CDN-PRIMARY", "IMG-HERO-PROD", "SYNC-CDN-ALL", 1),
    ("create", "CDN-PRIMARY", "IMG-TEAM-2024", "SYNC-CDN-ALL", 1),
    ("create", "CDN-PRIMARY", "VID-LAUNCH-2024", "SYNC-CDN-ALL", 1),
    ("create", "CDN-PRIMARY", "VID-TESTIMONIAL", "SYNC-CDN-ALL", 1),
    ("create", "CDN-PRIMARY", "VID-TUTORIAL-01", "SYNC-CDN-ALL", 1),
    ("create", "YOUTUBE", "VID-LAUNCH-2024", "SYNC-YT-VIDEO", 1),
    ("create", "YOUTUBE", "VID-TESTIMONIAL", "SYNC-YT-VIDEO", 1),
    ("create", "VIMEO", "VID-TUTORIAL-01", "SYNC-VIMEO-EDU", 1),
    ("create", "SOCIAL-MEDIA", "IMG-HERO-PROD", "SYNC-SOCIAL", 1),
    ("create", "SOCIAL-MEDIA", "VID-TESTIMONIAL", "SYNC-SOCIAL", 1),
    ("create", "S3-BACKUP", "IMG-HERO-PROD", "SYNC-S3-BACKUP", 1),
    ("create", "S3-BACKUP", "IMG-TEAM-2024", "SYNC-S3-BACKUP", 1),
    ("create", "S3-BACKUP", "VID-LAUNCH-2024", "SYNC-S3-BACKUP", 1),
    ("create", "S3-BACKUP", "VID-TESTIMONIAL", "SYNC-S3-BACKUP", 1),
    ("create", "S3-BACKUP", "VID-TUTORIAL-01", "SYNC-S3-BACKUP", 1),
]


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of the shipped manifests (with media), so tests may change files."""
    folder = tmp_path / "manifests"
    shutil.copytree(SHIPPED_MANIFESTS, folder)
    return folder


def plan_json(run, *args: str) -> dict:
    result = run(*args, "--output", "json")
    assert result.exit_code in (0, 2), result.output
    return json.loads(result.stdout)


def test_golden_plan_of_the_shipped_example_on_an_empty_state(run, tmp_path: Path) -> None:
    state = tmp_path / "state" / "reconciler.duckdb"
    plan = plan_json(run, "--dry-run", "--manifests", str(SHIPPED_MANIFESTS), "--state", str(state))
    got = [
        (a["action"], a["platform"], a["asset"], a["rule"], a["source_version"])
        for a in plan["actions"]
    ]
    assert got == GOLDEN
    assert plan["summary"] == {
        "create": 15,
        "update": 0,
        "update-metadata": 0,
        "delete": 0,
        "noop": 0,
        "blocked": 0,
        "held": 0,
        "orphan": 0,
        "import": 0,
        "moved": 0,
        "adopt": 0,
    }
    assert plan["format_version"] == 3
    assert plan["cached_renditions"] == []
    transformed = {(a["platform"], a["asset"]) for a in plan["actions"] if a["rendition_id"]}
    # Every rule with transform_rules gets a rendition; the CDN's videos go up as masters.
    assert transformed == {(p, a) for _, p, a, _, _ in GOLDEN} - {
        ("CDN-PRIMARY", "VID-LAUNCH-2024"),
        ("CDN-PRIMARY", "VID-TESTIMONIAL"),
        ("CDN-PRIMARY", "VID-TUTORIAL-01"),
    }
    s3 = [a for a in plan["actions"] if a["platform"] == "S3-BACKUP"]
    assert all(a["rendition_suffix"].endswith(".enc") for a in s3)
    assert plan["state_exists"] is False
    for action in plan["actions"]:
        for key in (
            "action",
            "asset",
            "platform",
            "reason",
            "source_version",
            "target_version",
            "size_bytes",
        ):
            assert key in action
        assert action["size_bytes"] == (SHIPPED_MANIFESTS / action["file"]).stat().st_size
    assert not state.parent.exists()  # no state file, not even its folder


def test_text_plan_and_detailed_exit_code(run, tmp_path: Path) -> None:
    state = str(tmp_path / "none.duckdb")
    result = run(
        "--dry-run", "--detailed-exitcode", "--manifests", str(SHIPPED_MANIFESTS), "--state", state
    )
    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines[0] == f"note: no state file at {state}: planned against empty recorded state"
    assert "CDN-PRIMARY" in lines
    creates = [line for line in lines if line.startswith("  + create")]
    assert len(creates) == 15
    assert lines[-1].startswith("Plan: 15 to create, 0 to update")
    same = run("plan", "--manifests", str(SHIPPED_MANIFESTS), "--state", state)
    assert same.exit_code == 0  # without --detailed-exitcode, changes are still success
    assert same.stdout == result.stdout


def test_markdown_plan_for_a_pull_request(run, tmp_path: Path) -> None:
    result = run(
        "plan",
        "--manifests",
        str(SHIPPED_MANIFESTS),
        "--state",
        str(tmp_path / "s.duckdb"),
        "--output",
        "markdown",
    )
    lines = result.stdout.splitlines()
    assert lines[0].startswith("### Plan: 15 to create")
    header = "| | action | platform | asset | versions | size | rule | reason | rendition |"
    assert header in lines
    assert sum(line.startswith("| `+` | create |") for line in lines) == 15


def test_a_dry_run_changes_no_byte_of_the_state_file(run, example: Path, tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.duckdb")
    manifests = validate_tree(example).manifest_set
    pretend_applied(store, manifests, make_plan(manifests, store))
    (example / "media" / "images" / "team_2024.jpg").write_bytes(b"\xff\xd8\xffchanged")

    def digest() -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in tmp_path.iterdir()
            if p.is_file()
        }

    before = digest()
    mtime = store.path.stat().st_mtime_ns
    for args in (["--dry-run"], ["plan", "-o", "json"], ["explain", "IMG-TEAM-2024"]):
        result = run(*args, "--manifests", str(example), "--state", str(store.path))
        assert result.exit_code == 0, result.output
    assert digest() == before
    assert store.path.stat().st_mtime_ns == mtime


def test_after_changing_one_master_only_its_placements_update(
    run, example: Path, tmp_path: Path
) -> None:
    store = StateStore(tmp_path / "state.duckdb")
    manifests = validate_tree(example).manifest_set
    pretend_applied(store, manifests, make_plan(manifests, store))
    args = ["--dry-run", "--manifests", str(example), "--state", str(store.path)]
    assert run(*args, "--detailed-exitcode").exit_code == 0

    (example / "media" / "videos" / "testimonial.mp4").write_bytes(b"\0\0\0\x18ftypisomnew")
    plan = plan_json(run, *args)
    updates = {(a["platform"], a["asset"]) for a in plan["actions"] if a["action"] == "update"}
    assert updates == {
        ("CDN-PRIMARY", "VID-TESTIMONIAL"),
        ("YOUTUBE", "VID-TESTIMONIAL"),
        ("SOCIAL-MEDIA", "VID-TESTIMONIAL"),
        ("S3-BACKUP", "VID-TESTIMONIAL"),
    }
    assert plan["summary"]["noop"] == 11
    update = next(a for a in plan["actions"] if a["action"] == "update")
    assert (update["target_version"], update["source_version"]) == (1, 2)
    text = run(*args, "--detailed-exitcode")
    assert text.exit_code == 2
    assert "~ update          VID-TESTIMONIAL  v1 -> v2" in text.stdout


def test_saved_plan(run, tmp_path: Path) -> None:
    out = tmp_path / "plans" / "plan.json"
    result = run(
        "plan",
        "--manifests",
        str(SHIPPED_MANIFESTS),
        "--state",
        str(tmp_path / "s.duckdb"),
        "--out",
        str(out),
    )
    assert result.exit_code == 0
    saved = json.loads(out.read_text())
    assert saved["state_fingerprint"]
    assert len(saved["actions"]) == 15
    assert [p.name for p in out.parent.iterdir()] == ["plan.json"]  # no temporary left


def test_invalid_manifests_stop_the_plan_with_exit_1(run, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(SHIPPED_MANIFESTS, folder)
    (folder / "sync-rules.yaml").write_text(
        (folder / "sync-rules.yaml").read_text().replace("platform: VIMEO", "platform: VIMOE")
    )
    result = run("--dry-run", "--manifests", str(folder), "--state", str(tmp_path / "s"))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "spec.platform: unknown platform 'VIMOE'; did you mean 'VIMEO'?" in result.stderr
    assert "error: the manifests are invalid" in result.stderr


def test_options_before_a_command_are_refused(run) -> None:
    result = run("--dry-run", "status")
    assert result.exit_code == 1
    assert "put options after the command" in result.stderr


def test_explain(run, tmp_path: Path) -> None:
    state = str(tmp_path / "s.duckdb")
    result = run(
        "explain", "VID-LAUNCH-2024", "--manifests", str(SHIPPED_MANIFESTS), "--state", state
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("VID-LAUNCH-2024: Product Launch 2024")
    assert "YOUTUBE: create" in out
    assert "rule:     SYNC-YT-VIDEO (priority 8) wins" in out
    assert "check:    ok   video/mp4 is in supported_formats" in out
    assert "recorded: no copy on this platform" in out
    assert "SYNC-VIMEO-EDU -> VIMEO: category corporate is not in [education]" in out

    data = json.loads(
        run(
            "explain",
            "VID-LAUNCH-2024",
            "--platform",
            "YOUTUBE",
            "--manifests",
            str(SHIPPED_MANIFESTS),
            "--state",
            state,
            "-o",
            "json",
        ).stdout
    )
    assert [p["platform"] for p in data["platforms"]] == ["YOUTUBE"]
    assert data["platforms"][0]["action"]["action"] == "create"

    missing = run("explain", "VID-LAUNCH", "--manifests", str(SHIPPED_MANIFESTS))
    assert missing.exit_code == 1
    assert "did you mean 'VID-LAUNCH-2024'?" in missing.stderr
