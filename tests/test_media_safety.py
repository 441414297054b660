"""Bad entries in the media folder and bad characters in path fields never crash or hang.

Regression tests for issue 14, item 6 (the validation part) and item 19 (one part). A symlink
loop, a dangling symlink, a FIFO or a socket that an AssetSet glob matches is skipped with a
warning naming it, and every other file still syncs; the same entry as an explicitly declared
Asset's file, or as a watermark image, is an error on that document. A NUL byte or another
control character in any path field (a local target, an asset's file, a watermark, a key or
secret file, a glob, an S3 prefix, a URL) is a schema error with FILE:LINE:COL. Real loops,
FIFOs and sockets in temporary folders; the CLI runs in a subprocess with a timeout, as opening
a FIFO would block it forever.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from cli_process import reconcile

from reconciler.manifests.validate import validate_tree

PLATFORM = """apiVersion: mediasync/v1
kind: Platform
metadata: {code: NAS}
spec: {platform_name: NAS, platform_type: other, driver: local, target: ../target}
"""
RULE = """apiVersion: mediasync/v1
kind: SyncRule
metadata: {code: ALL}
spec: {platform: NAS, source_category: all, asset_types: all, sync_mode: full}
"""
SET = """apiVersion: mediasync/v1
kind: AssetSet
metadata: {code: LIB}
spec: {include: "%s", asset_type: image, category: c, code_template: "IMG-{path}"}
"""
ASSET = """apiVersion: mediasync/v1
kind: Asset
metadata: {code: %s}
spec: {title: T, asset_type: image, category: c, file: "%s"}
"""


def bad_library(root: Path) -> Path:
    """A media folder with two good images and every kind of entry that is not a file."""
    media = root / "media"
    (media / "shots").mkdir(parents=True)
    (media / "good.jpg").write_bytes(b"\xff\xd8\xff good")
    (media / "shots" / "ok.jpg").write_bytes(b"\xff\xd8\xff ok")
    (media / "self.jpg").symlink_to("self.jpg")  # a file symlink to itself
    (media / "a.jpg").symlink_to("b.jpg")  # two symlinks to each other
    (media / "b.jpg").symlink_to("a.jpg")
    (media / "loop").symlink_to("loop")  # a folder symlink to itself
    (media / "shots" / "gone.jpg").symlink_to("missing.jpg")
    (media / "shots" / "to-pipe.jpg").symlink_to("../pipe.jpg")
    os.mkfifo(media / "pipe.jpg")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(media / "sock.jpg"))
    return media


def manifests(root: Path, *documents: str) -> Path:
    folder = root / "manifests"
    folder.mkdir(parents=True)
    (folder / "all.yaml").write_text("---\n".join(documents), encoding="utf-8")
    return folder


SKIPPED = [
    "a.jpg is a symlink loop (it leads back to itself); skipped",
    "b.jpg is a symlink loop (it leads back to itself); skipped",
    "loop is a symlink loop (it leads back to itself); skipped",
    "pipe.jpg is not a regular file: it is a FIFO (named pipe); skipped",
    "self.jpg is a symlink loop (it leads back to itself); skipped",
]


def test_an_asset_set_skips_bad_entries_with_warnings_and_keeps_the_rest(tmp_path: Path) -> None:
    media = bad_library(tmp_path)
    folder = manifests(tmp_path, PLATFORM, RULE, SET % "**")
    result = validate_tree(folder, media)
    assert result.ok, [p.format() for p in result.errors]
    assert result.manifest_set is not None
    assert sorted(result.manifest_set.assets) == ["IMG-good", "IMG-shots-ok"]
    warnings = [(p.line, p.column, p.field, p.message) for p in result.warnings]
    at = (14, 17, "spec.include")  # five named (in path order), the other three counted
    assert sorted(warnings) == sorted(
        [(*at, message) for message in SKIPPED]
        + [(*at, "... and 3 more entries skipped like these")]
    )


def test_every_kind_of_bad_entry_is_named_when_few(tmp_path: Path) -> None:
    media = bad_library(tmp_path)
    folder = manifests(tmp_path, PLATFORM, RULE, SET % "shots/*", SET.replace("LIB", "TOP") % "s*")
    result = validate_tree(folder, media)
    assert result.ok
    assert sorted(p.message for p in result.warnings) == [
        f"matches no files under the media root {media}",  # TOP: nothing usable
        "self.jpg is a symlink loop (it leads back to itself); skipped",
        "shots/gone.jpg is a symlink to a file that does not exist; skipped",
        "shots/to-pipe.jpg is a symlink to a FIFO (named pipe), not to a regular file; skipped",
        "sock.jpg is not a regular file: it is a socket; skipped",
    ]


def test_a_glob_folder_that_is_a_symlink_loop_is_a_warning(tmp_path: Path) -> None:
    media = bad_library(tmp_path)
    folder = manifests(tmp_path, PLATFORM, RULE, SET % "loop/*.jpg")
    result = validate_tree(folder, media)
    assert result.ok
    assert [p.message for p in result.warnings] == [
        "loop is a folder that cannot be listed (a symlink loop); skipped",
        f"matches no files under the media root {media}",
    ]


def test_dry_run_and_apply_sync_the_good_files_past_loops_and_a_fifo(tmp_path: Path) -> None:
    media = bad_library(tmp_path)
    folder = manifests(tmp_path, PLATFORM, RULE, SET % "**")
    args = ["--manifests", str(folder), "--media-root", str(media)]
    args += ["--state", str(tmp_path / "s.duckdb")]

    plan = reconcile("--dry-run", *args, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert "Traceback" not in plan.stderr
    assert "IMG-good" in plan.stdout and "IMG-shots-ok" in plan.stdout
    assert f"{folder / 'all.yaml'}:14:17: warning: AssetSet LIB: spec.include: {SKIPPED[0]}" in (
        plan.stderr
    )

    applied = reconcile(*args, cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "Traceback" not in applied.stderr
    copies = sorted(
        str(p.relative_to(tmp_path / "target")) for p in (tmp_path / "target").rglob("*")
    )
    assert copies == ["good.jpg", "shots", "shots/ok.jpg"]


def test_a_declared_asset_on_a_bad_entry_is_an_error_on_that_asset(tmp_path: Path) -> None:
    media = bad_library(tmp_path)
    (media / "photos").symlink_to("photos")
    assets = [
        ("SELF", "self.jpg", "self.jpg is a symlink loop (it leads back to itself)"),
        ("PAIR", "a.jpg", "a.jpg is a symlink loop (it leads back to itself)"),
        ("PIPE", "pipe.jpg", "pipe.jpg is not a regular file: it is a FIFO (named pipe)"),
        ("SOCK", "sock.jpg", "sock.jpg is not a regular file: it is a socket"),
        ("GONE", "shots/gone.jpg", "shots/gone.jpg is a symlink to a file that does not exist"),
        ("TOPIPE", "shots/to-pipe.jpg", "shots/to-pipe.jpg is not a regular file: it is a FIFO"),
        ("INLOOP", "photos/x.jpg", "photos/x.jpg cannot be reached: a folder on its path is a"),
    ]
    documents = [ASSET % (code, file) for code, file, _ in assets]
    folder = manifests(tmp_path, PLATFORM, RULE, *documents, ASSET % ("GOOD", "good.jpg"))
    args = ["--manifests", str(folder), "--media-root", str(media)]

    checked = reconcile("validate", *args, cwd=tmp_path, timeout=30)
    assert checked.returncode == 1
    lines = checked.stdout.splitlines()
    for index, (code, _, message) in enumerate(assets):
        where = f"{folder / 'all.yaml'}:{14 + 5 * index}:56: Asset {code}: spec.file: {message}"
        assert any(line.startswith(where) for line in lines), (where, lines)
    assert lines[-1].startswith("invalid: 7 errors in 1 file")

    planned = reconcile("--dry-run", *args, "--state", str(tmp_path / "s.duckdb"), cwd=tmp_path)
    assert planned.returncode == 1
    assert "Traceback" not in planned.stderr and not (tmp_path / "s.duckdb").exists()


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("pipe.jpg", "pipe.jpg is not a regular file: it is a FIFO (named pipe)"),
        ("self.jpg", "self.jpg is a symlink loop"),
        ("escape.png", "escape.png is a symlink that leads outside the media root"),
        ("none.png", "watermark image not found: none.png"),
    ],
)
def test_a_watermark_image_must_be_a_regular_file_inside_the_media_root(
    tmp_path: Path, image: str, message: str
) -> None:
    media = bad_library(tmp_path)
    (tmp_path / "logo.png").write_bytes(b"\x89PNG")
    (media / "escape.png").symlink_to(tmp_path / "logo.png")
    rule = RULE.replace(
        "sync_mode: full}",
        f"sync_mode: full, transform_rules: {{add_watermark: {{image: {image}}}}}}}",
    )
    result = validate_tree(manifests(tmp_path, PLATFORM, rule), media)
    (problem,) = result.errors
    assert problem.field == "spec.transform_rules.add_watermark.image"
    assert problem.message.startswith(message)


# -- item 19: control characters in path fields ---------------------------------------------

CONTROL = "must not contain control characters (such as a NUL byte, a tab or a line break)"
S3 = """apiVersion: mediasync/v1
kind: Platform
metadata: {code: S3}
spec: {platform_name: S3, platform_type: cloud_storage, driver: s3, bucket: bkt, prefix: "p@"}
"""
HTTP = """apiVersion: mediasync/v1
kind: Platform
metadata: {code: WEB}
spec: {platform_name: W, platform_type: dam, driver: http, api_endpoint: "https://dam.example/@"}
"""
TRANSFORM = RULE.replace("full}", "full, transform_rules: {%s}}")
ASSET_GOOD = ASSET % ("GOOD", "good.jpg")
# a document with "@" where the control character goes, and the field that holds it
PATH_FIELDS = {
    "local target": (PLATFORM.replace("../target", '"../target@"'), "spec.target"),
    "auth secret file": (
        PLATFORM.replace("target}", 'target, auth: {secret_file: "key@"}}'),
        "spec.auth.secret_file",
    ),
    "asset file": (ASSET % ("GOOD", "good.jpg@"), "spec.file"),
    "watermark image": (
        TRANSFORM % 'add_watermark: {image: "good.jpg@"}',
        "spec.transform_rules.add_watermark.image",
    ),
    "encryption key file": (
        TRANSFORM % 'encrypt: true, encryption_key: {secret_file: "k@", create: true}',
        "spec.transform_rules.encryption_key.secret_file",
    ),
    "asset set glob": (SET % "*.jpg@", "spec.include"),
    "asset set exclude": (
        SET.replace("include:", 'exclude: ["x@"], include:') % "*",
        "spec.exclude[0]",
    ),
    "s3 prefix": (S3, "spec.prefix"),
    "api endpoint": (HTTP, "spec.api_endpoint"),
}


@pytest.mark.parametrize("char", ["\\0", "\\n", "\\t", "\\e", "\\x7f", "\\N"])
@pytest.mark.parametrize("case", PATH_FIELDS.values(), ids=PATH_FIELDS.keys())
def test_control_characters_in_path_fields_are_schema_errors(
    tmp_path: Path, case: tuple[str, str], char: str
) -> None:
    document, field = case
    media = tmp_path / "media"
    media.mkdir()
    (media / "good.jpg").write_bytes(b"\xff\xd8\xff")
    extra = () if "metadata: {code: NAS}" in document else (PLATFORM,)
    clean = validate_tree(manifests(tmp_path / "clean", document.replace("@", ""), *extra), media)
    assert clean.errors == []
    spoilt = manifests(tmp_path / "spoilt", document.replace("@", char), *extra)
    result = validate_tree(spoilt, media)
    problems = [(p.field, p.message, p.error) for p in result.errors]
    assert (field, CONTROL, "schema") in problems
    # a URL with a tab or a line break also breaks the URL pattern: both say so, on that field
    assert {f for f, _, _ in problems} == {field} and len(problems) <= 2


def test_a_nul_byte_in_a_target_is_one_located_line_for_every_command(tmp_path: Path) -> None:
    platform = PLATFORM.replace("target: ../target", 'target: "../tar\\0get"')
    media = tmp_path / "media"
    media.mkdir()
    (media / "good.jpg").write_bytes(b"\xff\xd8\xff")
    folder = manifests(tmp_path, platform, RULE, ASSET_GOOD)
    args = ["--manifests", str(folder), "--media-root", str(media)]
    state = ["--state", str(tmp_path / "s.duckdb")]
    where = f"{folder / 'all.yaml'}:4:73: Platform NAS: spec.target: {CONTROL}"
    for command in (["validate", *args], ["--dry-run", *args, *state], [*args, *state]):
        result = reconcile(*command, cwd=tmp_path)
        assert result.returncode == 1
        assert where in result.stdout + result.stderr
        assert "Traceback" not in result.stderr and "null byte" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifests", "media"]


@pytest.mark.parametrize("include", ["linked/*", "linked/**", "keys/*", "alias.key"])
def test_a_credential_file_is_skipped_under_every_name_a_glob_reaches_it_by(
    tmp_path: Path, include: str
) -> None:
    """An AssetSet reaching the platform's key file through a symlinked literal folder of
    its glob, or through a symlink to the file, skips it as a credential (the real path the
    walk knows without resolving every file)."""
    media = tmp_path / "media"
    (media / "keys").mkdir(parents=True)
    (media / "keys" / "partner.key").write_text("s3cr3t\n")
    (media / "keys" / "photo.jpg").write_bytes(b"jpg")
    (media / "linked").symlink_to("keys")
    (media / "alias.key").symlink_to("keys/partner.key")
    platform = PLATFORM.replace(
        "target: ../target}",
        f"target: ../target, auth_type: api_key, auth: {{secret_file: {media}/keys/partner.key}}}}",
    )
    folder = manifests(tmp_path, platform, RULE, SET % include)
    result = validate_tree(folder, media)
    assert result.ok, [p.format() for p in result.errors]
    assert result.manifest_set is not None
    files = [a.file for a in result.manifest_set.assets.values()]
    assert not any(f and f.endswith(".key") for f in files), files
    assert any("is a credential file" in p.message for p in result.warnings)


def test_a_file_name_that_is_not_utf8_is_skipped_with_a_warning(tmp_path: Path) -> None:
    """A master named in Latin-1 (café.jpg as the bytes caf\\xe9.jpg, from an old archive):
    every plan crashed with a traceback encoding it; it is skipped, named readably, and the
    other files still sync."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "ok.jpg").write_bytes(b"ok")
    with open(os.path.join(os.fsencode(media), b"caf\xe9.jpg"), "wb") as handle:
        handle.write(b"latin")
    folder = manifests(tmp_path, PLATFORM, RULE, SET % "*.jpg")
    result = validate_tree(folder, media)
    assert result.ok and result.manifest_set is not None
    assert sorted(result.manifest_set.assets) == ["IMG-ok"]
    assert [p.message for p in result.warnings] == [
        "caf\\xe9.jpg has a name that is not valid UTF-8 (codes, keys and the state are UTF-8 "
        "text); rename it; skipped"
    ]
    args = ["--manifests", str(folder), "--media-root", str(media), "--state",
            str(tmp_path / "state" / "s.duckdb")]  # fmt: skip
    for extra in (["--dry-run"], []):
        done = reconcile(*extra, *args)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr and "caf\\xe9.jpg" in done.stderr
    assert sorted(p.name for p in (tmp_path / "target").iterdir()) == ["ok.jpg"]
