"""Hostile files and values in manifests and media folders end in a clear, located problem.

Regression tests for issue 14: a manifest symlinked out of its folder is refused unread (item
9), messages describe long values instead of quoting them (item 9), symlink loops and FIFOs
under an AssetSet are skipped with a warning while the rest still syncs (item 6), a cron that
never fires is rejected (item 16), and control characters in path fields are schema errors
(item 19). Everything uses real files, symlinks and FIFOs in temporary folders; what is about
the CLI runs ``python -m reconciler`` in a subprocess with a timeout, so that a hang (a FIFO
opened for reading) fails the test instead of blocking it.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_process import reconcile

from reconciler.manifests.validate import ValidationResult, cron_error, validate_tree

from helpers import MEDIA

PLATFORM = """apiVersion: mediasync/v1
kind: Platform
metadata: {code: NAS}
spec: {platform_name: NAS, platform_type: other, driver: local, target: ../target}
"""
RULE = """apiVersion: mediasync/v1
kind: SyncRule
metadata: {code: ALL}
spec:
  platform: NAS
  source_category: all
  asset_types: all
  sync_mode: full
"""
IMAGES = """apiVersion: mediasync/v1
kind: AssetSet
metadata: {code: IMAGES}
spec: {include: "%s", asset_type: image, category: c, code_template: "IMG-{stem}"}
"""
TOKEN = "tok-0123456789abcdefghijklmnopqrstuvwxyz"  # stands for a credential


def folder_with(root: Path, files: dict[str, str]) -> Path:
    folder = root / "manifests"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def located(result: ValidationResult, fragment: str) -> list[str]:
    return [p.format() for p in result.problems if fragment in p.message]


# -- item 16: a cron that never fires ------------------------------------------------------


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 0 31 4 *", "30 12 31 2,4,6,9,11 *"])
def test_a_cron_that_never_fires_is_rejected_with_its_position(tmp_path: Path, cron: str) -> None:
    folder = folder_with(
        tmp_path, {"all.yaml": f'{PLATFORM}---\n{RULE}  schedule_cron: "{cron}"\n'}
    )
    result = reconcile("validate", "--manifests", str(folder), cwd=tmp_path)
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    assert first == (
        f"{folder / 'all.yaml'}:14:18: SyncRule ALL: spec.schedule_cron: '{cron}' never fires: "
        "no time in the next 10 years matches it (a day that the month does not have, such as "
        "February 30th?)"
    )
    assert "Traceback" not in result.stderr


def test_a_cron_that_never_fires_stops_reconcile_before_anything_is_written(
    tmp_path: Path,
) -> None:
    folder = folder_with(
        tmp_path,
        {
            "all.yaml": f'{PLATFORM}---\n{RULE}  schedule_cron: "0 0 30 2 *"\n---\n'
            + IMAGES % "images/*.jpg"
        },
    )
    state = tmp_path / "state" / "s.duckdb"
    for extra in ([], ["--dry-run"]):
        args = ["--manifests", str(folder), "--media-root", str(MEDIA), "--state", str(state)]
        result = reconcile(*extra, *args, cwd=tmp_path)
        assert result.returncode == 1, result.stderr
        assert f"{folder / 'all.yaml'}:14:18: " in result.stderr
        assert "Traceback" not in result.stderr and "CroniterBadDateError" not in result.stderr
    assert not state.exists() and not (tmp_path / "target").exists()


@pytest.mark.parametrize(
    "cron", ["@daily", "@midnight", " @weekly ", "0 9 * * 1", "0 0 29 2 *", "0 0 30 2 1"]
)
def test_rare_schedules_and_macros_stay_valid(tmp_path: Path, cron: str) -> None:
    folder = folder_with(
        tmp_path, {"all.yaml": f'{PLATFORM}---\n{RULE}  schedule_cron: "{cron}"\n'}
    )
    result = validate_tree(folder, MEDIA)
    assert result.problems == []
    assert result.manifest_set is not None
    assert result.manifest_set.rules["ALL"].schedule_cron == cron.strip()


def test_a_leap_day_schedule_is_valid_across_the_eight_year_gap_of_2100() -> None:
    assert cron_error("0 0 29 2 *", now=datetime(2097, 3, 1, tzinfo=UTC)) is None


def test_a_blank_after_a_macro_does_not_crash_the_next_plan(tmp_path: Path) -> None:
    """'@daily ' passed validation but croniter refuses it: planning an update crashed."""
    media = tmp_path / "media"
    (media / "images").mkdir(parents=True)
    (media / "images" / "a.jpg").write_bytes(b"\xff\xd8\xff first")
    folder = folder_with(
        tmp_path,
        {
            "all.yaml": f'{PLATFORM}---\n{RULE}  schedule_cron: "@daily "\n---\n'
            + IMAGES % "images/*.jpg"
        },
    )
    args = ["--manifests", str(folder), "--media-root", str(media)]
    args += ["--state", str(tmp_path / "s.duckdb")]
    assert reconcile(*args, cwd=tmp_path).returncode == 0
    (media / "images" / "a.jpg").write_bytes(b"\xff\xd8\xff second")  # an update: scheduled
    result = reconcile("--dry-run", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "scheduled for" in result.stdout and "(@daily)" in result.stdout


# -- item 9: manifests that lead out of the folder, and echoed values ----------------------


def test_a_manifest_symlinked_out_of_the_folder_is_refused_and_not_echoed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".git-credentials").write_text(f"https://bot:{TOKEN}@github.com\n")
    folder = folder_with(tmp_path, {"platform.yaml": PLATFORM})
    (folder / "ci.yaml").symlink_to(home / ".git-credentials")

    text = reconcile("validate", "--manifests", str(folder), cwd=tmp_path)
    as_json = reconcile("validate", "--manifests", str(folder), "-o", "json", cwd=tmp_path)
    assert text.returncode == as_json.returncode == 1
    assert text.stdout.splitlines()[0] == (
        f"{folder / 'ci.yaml'}:1:1: the file is a symlink that leads outside the manifests "
        "folder, so it was not read; manifests must live inside the folder"
    )
    (problem,) = json.loads(as_json.stdout)["problems"]
    assert problem["error"] == "manifest-file" and problem["file"] == str(folder / "ci.yaml")
    for output in (text.stdout, text.stderr, as_json.stdout, as_json.stderr):
        assert TOKEN not in output and "bot:" not in output


def test_refused_manifests_are_never_opened(tmp_path: Path) -> None:
    """A FIFO, opened for reading, blocks until a writer comes: the timeout would fail this."""
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "pipe")
    folder = folder_with(tmp_path, {"platform.yaml": PLATFORM})
    (folder / "ci.yaml").symlink_to(outside / "pipe")
    os.mkfifo(folder / "pipe.yaml")
    (folder / "loop.yaml").symlink_to("loop.yaml")
    (folder / "a.yaml").symlink_to("b.yml")
    (folder / "b.yml").symlink_to("a.yaml")
    (folder / "gone.yaml").symlink_to("missing.yaml")
    result = reconcile("validate", "--manifests", str(folder), cwd=tmp_path, timeout=30)
    assert result.returncode == 1
    loop = "the file is a symlink loop (it leads back to itself), so it was not read"
    assert result.stdout.splitlines()[:-1] == [
        f"{folder / 'a.yaml'}:1:1: {loop}",
        f"{folder / 'b.yml'}:1:1: {loop}",
        f"{folder / 'ci.yaml'}:1:1: the file is a symlink that leads outside the manifests "
        "folder, so it was not read; manifests must live inside the folder",
        f"{folder / 'gone.yaml'}:1:1: the file is a symlink to a file that does not exist",
        f"{folder / 'loop.yaml'}:1:1: {loop}",
        f"{folder / 'pipe.yaml'}:1:1: the file is a FIFO (named pipe), not a regular file, so "
        "it was not read",
    ]
    assert "Traceback" not in result.stderr


def test_a_manifest_symlinked_inside_the_folder_is_read_and_located(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, {"platform.yaml": PLATFORM})
    (folder / "versions").mkdir()
    (folder / "versions" / "v2.yaml").write_text(RULE.replace("sync_mode: full", "sync_mode: al"))
    (folder / "current.yaml").symlink_to("versions/v2.yaml")
    result = validate_tree(folder, MEDIA)
    lines = [p.format() for p in result.errors]
    assert (
        f"{folder / 'current.yaml'}:8:14: SyncRule ALL: spec.sync_mode: must be one of"
        in (lines[0])
    )
    assert {p.file for p in result.errors} == {
        str(folder / "current.yaml"),
        str(folder / "versions" / "v2.yaml"),
    }


def test_a_symlinked_folder_is_not_followed_out_of_the_manifests(tmp_path: Path) -> None:
    outside = tmp_path / "shared"
    outside.mkdir()
    (outside / "secret.yaml").write_text(f"{TOKEN}: [1\n")  # would be a syntax error
    folder = folder_with(tmp_path, {"platform.yaml": PLATFORM})
    (folder / "shared").symlink_to(outside)
    result = reconcile("validate", "--manifests", str(folder), cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert "in 1 file" in result.stdout and TOKEN not in result.stdout + result.stderr


LONG_VALUES = {
    "a document that is one long string": f"https://bot:{TOKEN}@github.com\n",
    "a long apiVersion": f"apiVersion: {TOKEN}\nkind: Platform\n",
    "a long kind": f"apiVersion: mediasync/v1\nkind: {TOKEN}\n",
    "a kind that is a mapping": f"apiVersion: mediasync/v1\nkind: {{k: {TOKEN}}}\n",
    "a long enum value": PLATFORM.replace("platform_type: other", f"platform_type: {TOKEN}"),
    "a long string for a number": PLATFORM.replace(
        "target:", f"max_file_size_mb: {TOKEN}, target:"
    ),
    "a long code": PLATFORM.replace("code: NAS", f"code: '{TOKEN} x'"),
    "a long unknown field": PLATFORM.replace("target:", f"{TOKEN}: 1, target:"),
    "a long duplicate key": f"apiVersion: mediasync/v1\n{TOKEN}: 1\n{TOKEN}: 2\n",
    "a long label key": PLATFORM.replace("code: NAS", f"code: NAS, labels: {{'{TOKEN} x': v}}"),
    "a long tagged integer": f"apiVersion: mediasync/v1\nkind: Platform\nspec: !!int {TOKEN}\n",
    "a long cron expression": f'{PLATFORM}---\n{RULE}  schedule_cron: "{TOKEN[:45]}"\n',
    "a long placeholder": IMAGES.replace("IMG-{stem}", "IMG-{" + TOKEN.replace("-", "_") + "}"),
}


@pytest.mark.parametrize("text", LONG_VALUES.values(), ids=LONG_VALUES.keys())
def test_long_values_are_described_never_quoted(tmp_path: Path, text: str) -> None:
    folder = folder_with(tmp_path, {"m.yaml": text})
    result = validate_tree(folder, MEDIA)
    assert result.errors
    secret = TOKEN[4:20]
    for problem in result.problems:
        assert secret not in problem.format()
        assert secret not in json.dumps(problem.to_dict())


def test_short_values_and_near_misses_of_known_names_are_still_quoted(tmp_path: Path) -> None:
    platform = PLATFORM.replace("platform_type: other", "platform_type: video_platform_x1")
    rule = RULE.replace("platform: NAS", "platform: NSA").replace("full", "partial")
    result = validate_tree(folder_with(tmp_path, {"m.yaml": f"{platform}---\n{rule}"}), MEDIA)
    messages = " | ".join(p.message for p in result.errors)
    assert "got the string 'video_platform_x1'; did you mean 'video_platform'?" in messages
    assert "got the string 'partial'" in messages
    assert "unknown platform 'NSA'; did you mean 'NAS'?" in messages


def test_a_final_line_break_does_not_slip_past_an_anchored_pattern(tmp_path: Path) -> None:
    """Python's `$` matches before a final line break, ECMA-262's (the schemas') does not."""
    platform = (
        'apiVersion: mediasync/v1\nkind: Platform\nmetadata: {code: "NAS\\n"}\n'
        "spec: {platform_name: N, platform_type: cloud_storage, driver: s3, "
        'bucket: "bkt\\n", region: "eu-west-1\\n", auth: {secret_env: "KEY\\n"}}\n'
    )
    result = validate_tree(folder_with(tmp_path, {"p.yaml": platform}), MEDIA)
    assert sorted(p.field for p in result.errors) == [
        "metadata.code",
        "spec.auth.secret_env",
        "spec.bucket",
        "spec.region",
    ]
    assert all("\n" not in p.format() for p in result.problems)
