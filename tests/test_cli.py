"""The `reconcile` command line: exit codes, output formats, help, and how it is installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click

from reconciler.cli.main import cli

from helpers import EXAMPLES, MEDIA, REPO, SHIPPED_MANIFESTS


def test_validate_on_the_shipped_manifests(run) -> None:
    result = run("validate", "--manifests", str(SHIPPED_MANIFESTS))
    assert result.exit_code == 0
    assert result.stdout.strip() == (
        "valid: 6 platforms, 5 assets, 5 sync rules, 0 asset sets in 3 files"
    )
    assert result.stderr == ""


def test_validate_json_output(run) -> None:
    result = run("validate", "--manifests", str(SHIPPED_MANIFESTS), "--output", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert report["format_version"] == 1
    assert report["valid"] is True
    assert report["summary"] == {
        "files": 3,
        "platforms": 6,
        "assets": 5,
        "generated_assets": 0,
        "asset_sets": 0,
        "sync_rules": 5,
        "imports": 0,
        "moves": 0,
        "errors": 0,
        "warnings": 0,
    }
    assert report["problems"] == []


def test_validate_reads_folders_from_the_environment(run) -> None:
    env = {
        "RECONCILE_MANIFESTS": str(EXAMPLES / "valid" / "assetsets"),
        "RECONCILE_MEDIA_ROOT": str(MEDIA),
    }
    result = run("validate", env=env)
    assert result.exit_code == 0
    assert "5 assets (5 from asset sets)" in result.stdout


def test_invalid_manifests_exit_1_with_located_problems(run, manifests) -> None:
    root = manifests(
        {
            "p.yaml": "apiVersion: mediasync/v1\nkind: Platform\nmetadata: {code: P}\n"
            "spec: {platform_name: P, platform_type: cdn, driver: ftp}\n"
        }
    )
    result = run("validate", "--manifests", str(root))
    assert result.exit_code == 1
    first, summary = result.stdout.splitlines()
    assert first.startswith(f"{root / 'p.yaml'}:4:54: Platform P: spec.driver: must be one of")
    assert summary.startswith("invalid: 1 error in 1 file")


def test_a_missing_folder_is_a_one_line_error(run, tmp_path: Path) -> None:
    result = run("validate", "--manifests", str(tmp_path / "missing"))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: manifests folder")
    assert "Traceback" not in result.stderr


def test_bad_arguments_exit_1_not_2(run) -> None:
    """2 means "changes pending" for --dry-run, so click's usage errors must not use it."""
    for args in (["validate", "--output", "xml"], ["frobnicate"], ["validate", "--nope"]):
        result = run(*args)
        assert result.exit_code == 1, args
        assert "Error" in result.stderr


def test_help_and_version(run) -> None:
    overview = run("--help")
    assert overview.exit_code == 0
    assert "validate" in overview.stdout and "Exit codes" in overview.stdout
    helped = run("validate", "--help")
    assert helped.exit_code == 0
    for option in ("--manifests", "--media-root", "--output", "RECONCILE_MANIFESTS"):
        assert option in helped.stdout
    version = run("--version")
    assert version.exit_code == 0 and version.stdout.startswith("reconcile, version ")


def all_commands(group: click.Group, prefix: str = "reconcile") -> list[tuple[str, Any]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found.extend(all_commands(command, f"{prefix} {name}"))
    return found


def test_every_command_and_option_is_documented_in_the_docs() -> None:
    """docs/commands.md describes every command and option in its own words (the reference
    that mkdocs-click generates at its end is not in the Markdown source, so it cannot stand
    in for a description) and gives every exit code."""
    commands_md = (REPO / "docs" / "commands.md").read_text()
    prose = commands_md.split("::: mkdocs-click", 1)[0]
    assert "::: mkdocs-click" in commands_md, "docs/commands.md lost its generated reference"
    for path, command in all_commands(cli):
        assert path in prose, f"docs/commands.md does not document `{path}`"
        for param in command.params:
            for opt in param.opts:
                if opt.startswith("--") and opt != "--help":
                    assert opt in prose, f"docs/commands.md does not mention {opt} of {path}"
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 3 |"):
        assert code in prose


def test_ci_runs_the_test_command_of_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"pip install '\.\[test\]' && (pytest[^\n`]*)", readme)
    assert match, "README must give the test command as: pip install '.[test]' && pytest ..."
    assert match[1].strip() in (REPO / ".ci" / "run").read_text()


def test_python_dash_m_and_the_console_script_work_from_any_folder(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILE_")}
    module = subprocess.run(
        [sys.executable, "-m", "reconciler", "validate", "--manifests", str(SHIPPED_MANIFESTS)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert module.returncode == 0, module.stderr
    assert module.stdout.startswith("valid: 6 platforms, 5 assets, 5 sync rules")

    script = shutil.which("reconcile", path=str(Path(sys.executable).parent))
    assert script, "the console script `reconcile` is not installed next to python"
    failed = subprocess.run(
        [
            script,
            "validate",
            "--manifests",
            str(EXAMPLES / "invalid"),
            "--media-root",
            str(MEDIA),
            "--output",
            "json",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["valid"] is False
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran
