"""Every file in tests/examples/invalid fails validation with the problem its header names.

Each invalid example starts with a header of comment lines (or, for a file that cannot hold
ASCII comments, a sidecar ``NAME.yaml.expect``)::

    # error: schema                      the error class
    # at: 14:9                           line and column of the problem
    # field: spec.auth                   the field path, or - for none
    # message: credentials are referenced  a fragment of the message

The file is validated alone, through the CLI, with tests/examples/media as the media root. An
example that is a symlink (a manifest leading out of its folder) is placed as a symlink to the
same real file, so that it still leads outside the folder it is validated in.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from helpers import EXAMPLES, MEDIA

INVALID = EXAMPLES / "invalid"
HEADER = re.compile(r"^#\s*(error|at|field|message):\s?(.*)$")


def expectations(path: Path) -> dict[str, str]:
    sidecar = path.with_name(path.name + ".expect")
    source = sidecar if sidecar.exists() else path
    found: dict[str, str] = {}
    for line in source.read_bytes().decode("utf-8", "replace").splitlines():
        match = HEADER.match(line)
        if match:
            found[match[1]] = match[2].strip()
    assert set(found) == {"error", "at", "field", "message"}, f"{path.name}: incomplete header"
    return found


CASES = sorted(INVALID.glob("*.yaml"))


def place(example: Path, folder: Path) -> Path:
    """Copy an example into ``folder``; a symlink stays a symlink to the same real file."""
    dest = folder / example.name
    if example.is_symlink():
        dest.symlink_to(example.resolve())
    else:
        shutil.copy(example, dest)
    return dest


def test_there_is_an_invalid_example_per_error_class() -> None:
    classes = {expectations(p)["error"] for p in CASES}
    assert classes >= {
        "yaml-syntax",
        "yaml-encoding",
        "yaml-limit",
        "yaml-duplicate-key",
        "yaml-tag",
        "empty-file",
        "document",
        "api-version",
        "kind",
        "schema",
        "duplicate-code",
        "reference",
        "path",
        "cron",
        "template",
        "asset-set",
        "manifest-file",
    }
    assert len(CASES) >= 30


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_invalid_example(path: Path, tmp_path: Path, run) -> None:
    expected = expectations(path)
    folder = tmp_path / "m"
    folder.mkdir()
    place(path, folder)
    args = ["validate", "--manifests", str(folder), "--media-root", str(MEDIA)]

    text = run(*args)
    assert text.exit_code == 1
    prefix = f"{folder / path.name}:{expected['at']}: "
    field = "" if expected["field"] == "-" else f"{expected['field']}: "
    lines = [line for line in text.stdout.splitlines() if line.startswith(prefix)]
    assert any(field in line and expected["message"] in line for line in lines), text.stdout
    assert text.stdout.splitlines()[-1].startswith("invalid: ")

    as_json = run(*args, "--output", "json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["valid"] is False
    line, column = (int(n) for n in expected["at"].split(":"))
    assert any(
        p["error"] == expected["error"]
        and (p["line"], p["column"]) == (line, column)
        and p["field"] == (None if expected["field"] == "-" else expected["field"])
        and expected["message"] in p["message"]
        for p in report["problems"]
    ), report["problems"]


def test_invalid_examples_leave_the_media_and_manifests_untouched(tmp_path: Path, run) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    for example in sorted(INVALID.iterdir()):
        place(example, folder)
    before = {p: p.read_bytes() for p in folder.iterdir()}
    media_before = sorted(str(p) for p in MEDIA.rglob("*"))
    result = run("validate", "--manifests", str(folder), "--media-root", str(MEDIA))
    assert result.exit_code == 1
    assert {p: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(str(p) for p in MEDIA.rglob("*")) == media_before
    # every example contributes at least one problem to the combined run
    assert len({line.split(":")[0] for line in result.stdout.splitlines()[:-1]}) >= len(CASES)
