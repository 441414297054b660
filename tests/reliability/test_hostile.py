"""Hostile manifests against a working installation: every invalid example, dropped into a
manifests folder that has already been applied, makes `reconcile` and `reconcile --dry-run`
exit 1 with its file and line, leaves the state file byte-identical, and writes nothing to any
platform."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from test_examples import CASES, expectations, place

from helpers import EXAMPLES, MEDIA

BASE = """apiVersion: mediasync/v1
kind: Platform
metadata: {code: BASE-NAS}
spec: {platform_name: NAS, platform_type: other, driver: local, target: ../target}
---
apiVersion: mediasync/v1
kind: Asset
metadata: {code: BASE-TEAM}
spec: {title: Team, asset_type: image, category: corporate, file: images/team.jpg}
---
apiVersion: mediasync/v1
kind: SyncRule
metadata: {code: BASE-ALL}
spec: {platform: BASE-NAS, source_category: all, asset_types: all, sync_mode: full}
"""


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with manifests, a state file and a platform target, after one apply."""
    from click.testing import CliRunner

    from reconciler.cli.main import cli

    root = tmp_path_factory.mktemp("applied")
    (root / "manifests").mkdir()
    (root / "manifests" / "base.yaml").write_text(BASE)
    result = CliRunner().invoke(cli, args(root))
    assert result.exit_code == 0, result.output
    assert (root / "target" / "images" / "team.jpg").exists()
    return root


def args(root: Path) -> list[str]:
    return [
        "--manifests",
        str(root / "manifests"),
        "--media-root",
        str(MEDIA),
        "--state",
        str(root / "state.duckdb"),
        "--lock-timeout",
        "5",
    ]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
@pytest.mark.parametrize("example", CASES, ids=lambda p: p.stem)
def test_hostile_manifest_changes_nothing(
    applied: Path, example: Path, tmp_path: Path, run
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(applied, root)
    place(example, root / "manifests")  # a symlink example stays a symlink
    expected = expectations(example)
    state_before = snapshot(root)
    for extra in ([], ["--dry-run"]):
        result = run(*extra, *args(root))
        assert result.exit_code == 1, result.output
        where = f"{root / 'manifests' / example.name}:{expected['at']}: "
        assert any(line.startswith(where) for line in result.stderr.splitlines()), result.stderr
        assert "Traceback" not in result.stderr
    assert snapshot(root) == state_before  # state file, lock, target: all byte-identical


def test_there_are_at_least_thirty_hostile_cases() -> None:
    assert len(CASES) >= 30
    names = {p.stem for p in CASES}
    for needed in (
        "yaml-syntax-colon",
        "schema-required",
        "reference-unknown-platform",
        "path-traversal",
        "path-absolute",
        "path-symlink-escape",
        "yaml-huge-document",
        "yaml-nesting-deep",
        "yaml-alias-bomb",
        "yaml-duplicate-key",
        "yaml-tab-indentation",
        "empty-file",
        "encoding-bom-inside",
        "encoding-utf16",
        "encoding-latin1",
        "api-version-wrong",
    ):
        assert needed in names
    assert (EXAMPLES / "media" / "escape" / "outside.jpg").is_symlink()
