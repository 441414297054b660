"""Adopting what is already out there: Moved documents and moved_from for renames and moved
masters, Import documents and `reconcile import` for existing objects, and discovery.

Against the real drivers: local target folders in a temporary folder and the S3 server on
loopback (moto). "No byte re-sent" is checked where it happens: a local copy keeps its inode
(an upload writes a new file and renames it into place), and the drivers' upload methods are
made to fail the test if anything calls them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from planning import World, kinds, rows
from test_apply import apply, target
from test_s3 import client, s3_world

from reconciler.drivers.local import LocalDriver
from reconciler.drivers.s3 import S3Driver
from reconciler.model import ActionKind

from helpers import created, is_postgresql

REPO = Path(__file__).resolve().parents[1]


def no_uploads_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, any upload through the local or S3 driver fails the test."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__}.upload was called")

    monkeypatch.setattr(LocalDriver, "upload", refuse)
    monkeypatch.setattr(S3Driver, "upload", refuse)


@pytest.fixture
def no_uploads(monkeypatch: pytest.MonkeyPatch) -> None:
    """No upload at all in the test."""
    no_uploads_again(monkeypatch)


def moved(world: World, code: str, old: str, new: str) -> None:
    world._doc("Moved", code, {"from": old, "to": new})


def imported(world: World, code: str, asset: str, platform: str, remote_id: str) -> None:
    world._doc("Import", code, {"asset": asset, "platform": platform, "id": remote_id})


def local_world(tmp_path: Path, state: str | None = None) -> World:
    world = World(tmp_path, state).platform("CDN").platform("DAM")
    world.rule("TO-CDN", "CDN").rule("TO-DAM", "DAM")
    world.asset("VID-A", b"a master " * 100).asset("VID-B", b"b master " * 50)
    return world


def inodes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_ino for p in folder.rglob("*") if p.is_file()}


# -- moved --------------------------------------------------------------------------------------


def test_a_renamed_code_keeps_its_copies_and_sends_nothing(
    tmp_path: Path, state_at: str, no_uploads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = local_world(tmp_path, state_at)
    monkeypatch.undo()  # the first sync uploads
    apply(world)
    before = {p: inodes(target(world, p)) for p in ("CDN", "DAM")}
    spec = world.docs.pop(("Asset", "VID-A"))["spec"]
    world._doc("Asset", "VID-A-KEYNOTE", spec)
    moved(world, "RENAME-A", "VID-A", "VID-A-KEYNOTE")
    plan = world.plan()
    assert kinds(plan)[("VID-A-KEYNOTE", "CDN")] == ActionKind.MOVED
    assert plan.summary()["create"] == plan.summary()["orphan"] == 0
    assert plan.summary()["moved"] == 2
    (action,) = [a for a in plan.actions if a.platform == "CDN" and a.asset == "VID-A-KEYNOTE"]
    assert (action.moved_from, action.previous_key) == ("VID-A", None)
    no_uploads_again(monkeypatch)
    result = apply(world)
    assert sorted(j.job_type for j in result.jobs) == ["move", "move"]
    assert all(j.status == "completed" for j in result.jobs), [j.error for j in result.jobs]
    assert {p: inodes(target(world, p)) for p in ("CDN", "DAM")} == before
    assert rows(world, "SELECT asset_code FROM source_assets ORDER BY asset_code") == [
        ("VID-A-KEYNOTE",),
        ("VID-B",),
    ]
    again = world.plan()
    assert not again.changes and not again.notes
    # the renamed asset kept its history: its copies' ids and the first sync's jobs
    assert rows(
        world,
        "SELECT count(*) FROM sync_jobs j JOIN source_assets sa ON sa.id = j.asset_id "
        "WHERE sa.asset_code = 'VID-A-KEYNOTE'",
    ) == [(4,)]


def test_a_moved_master_moves_its_local_copies_by_rename(
    tmp_path: Path, state_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = local_world(tmp_path, state_at)
    apply(world)
    old = target(world, "CDN") / "vid-a.mp4"
    inode = old.stat().st_ino
    (world.media / "vid-a.mp4").rename(world.media / "videos-a.mp4")
    world.asset("VID-A", b"a master " * 100, file="videos-a.mp4")
    plan = world.plan()
    action = next(a for a in plan.actions if (a.asset, a.platform) == ("VID-A", "CDN"))
    assert action.action == ActionKind.MOVED
    assert (action.previous_key, action.reason_code) == ("vid-a.mp4", "master_moved")
    no_uploads_again(monkeypatch)
    result = apply(world)
    assert [j.status for j in result.jobs] == ["completed", "completed"]
    new = target(world, "CDN") / "videos-a.mp4"
    assert not old.exists() and new.stat().st_ino == inode
    assert rows(
        world,
        "SELECT DISTINCT remote_key, sync_status FROM platform_assets pa JOIN source_assets sa "
        "ON sa.id = pa.source_asset_id WHERE sa.asset_code = 'VID-A'",
    ) == [("videos-a.mp4", "synced")]
    assert not world.plan().changes


def test_a_move_never_replaces_an_object_at_the_new_key(tmp_path: Path, state_at: str) -> None:
    world = local_world(tmp_path, state_at)
    apply(world)
    stranger = target(world, "CDN") / "moved-a.mp4"
    stranger.write_bytes(b"somebody else's file")
    (world.media / "vid-a.mp4").rename(world.media / "moved-a.mp4")
    world.asset("VID-A", b"a master " * 100, file="moved-a.mp4")
    result = apply(world)
    cdn = next(j for j in result.jobs if j.action.platform == "CDN")
    assert cdn.status == "failed" and "did not make" in (cdn.error or "")
    assert stranger.read_bytes() == b"somebody else's file"
    assert (target(world, "CDN") / "vid-a.mp4").exists()
    assert rows(world, "SELECT conflict_type FROM sync_conflicts") == [("foreign_object",)]


def test_a_move_interrupted_after_the_copy_finishes_without_sending(
    tmp_path: Path, state_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed between the copy and the delete left the bytes at both keys."""
    world = local_world(tmp_path, state_at)
    apply(world)
    old = target(world, "CDN") / "vid-a.mp4"
    shutil.copy(old, target(world, "CDN") / "v2.mp4")
    (world.media / "vid-a.mp4").rename(world.media / "v2.mp4")
    world.asset("VID-A", b"a master " * 100, file="v2.mp4")
    no_uploads_again(monkeypatch)
    result = apply(world)
    assert [j.status for j in result.jobs] == ["completed", "completed"]
    assert not old.exists()
    assert not world.plan().changes


def test_a_move_of_a_copy_someone_changed_is_a_conflict(tmp_path: Path, state_at: str) -> None:
    world = local_world(tmp_path, state_at)
    apply(world)
    (target(world, "CDN") / "vid-a.mp4").write_bytes(b"edited on the platform")
    (world.media / "vid-a.mp4").rename(world.media / "elsewhere.mp4")
    world.asset("VID-A", b"a master " * 100, file="elsewhere.mp4")
    result = apply(world)
    cdn = next(j for j in result.jobs if j.action.platform == "CDN")
    assert cdn.status == "failed"
    assert not (target(world, "CDN") / "elsewhere.mp4").exists()
    assert rows(world, "SELECT conflict_type FROM sync_conflicts") == [("remote_modified",)]


def test_a_moved_master_moves_its_s3_object_server_side(
    tmp_path: Path, state_at: str, s3_endpoint: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = s3_world(tmp_path, s3_endpoint, bucket, state_at)
    big = os.urandom(9 * 1024 * 1024)  # multipart: S3's checksum is a composite one
    world.asset("VID-BIG", big)
    apply(world)
    (world.media / "vid-big.mp4").rename(world.media / "archive-big.mp4")
    world.asset("VID-BIG", big, file="archive-big.mp4")
    assert kinds(world.plan())[("VID-BIG", "BACKUP")] == ActionKind.MOVED
    no_uploads_again(monkeypatch)
    (job,) = apply(world).jobs
    assert (job.job_type, job.status) == ("move", "completed"), job.error
    s3 = client(s3_endpoint)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["masters/archive-big.mp4", "masters/vid-small.mp4"]
    body = s3.get_object(Bucket=bucket, Key="masters/archive-big.mp4")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == hashlib.sha256(big).hexdigest()
    assert not world.plan().changes


def test_moves_are_checked_with_file_and_line(tmp_path: Path, run) -> None:
    world = local_world(tmp_path)
    moved(world, "TO-NOWHERE", "VID-OLD", "VID-NOPE")
    moved(world, "FROM-DECLARED", "VID-B", "VID-A")
    moved(world, "TO-ITSELF", "VID-A", "VID-A")
    world.manifests_dir.joinpath("all.yaml").write_text(_documents(world))
    result = run("validate", "--manifests", str(world.manifests_dir), "--media-root",
                 str(world.media))  # fmt: skip
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert any("Moved TO-NOWHERE: spec.to: unknown asset 'VID-NOPE'" in x for x in lines)
    assert any("Moved FROM-DECLARED: spec.from: VID-B is still declared at" in x for x in lines)
    assert any("Moved TO-ITSELF: spec.from: VID-A moves to itself" in x for x in lines)
    assert all(x.split(":")[1].isdigit() for x in lines if "Moved" in x)


def test_a_move_with_nothing_recorded_is_a_warning_and_a_collision_an_error(
    tmp_path: Path,
    state_at: str,
) -> None:
    world = local_world(tmp_path, state_at)
    moved(world, "NOTHING", "VID-NEVER", "VID-A")
    plan = world.plan()
    assert [n for n in plan.notes if "nothing is recorded under VID-NEVER" in n]
    apply(world)
    world.asset("VID-C", b"c master")
    apply(world)
    world.remove("Asset", "VID-C")
    moved(world, "CLASH", "VID-C", "VID-B")  # both have copies of their own
    from reconciler.plan.actions import PlanError

    with pytest.raises(PlanError, match="VID-B already has copies of its own"):
        world.plan()


def _documents(world: World) -> str:
    import yaml

    return yaml.safe_dump_all(list(world.docs.values()), sort_keys=False)


# -- import -------------------------------------------------------------------------------------


def test_an_import_of_a_matching_local_object_records_it_without_sending(
    tmp_path: Path, state_at: str, no_uploads: None
) -> None:
    world = (
        World(tmp_path, state_at).platform("CDN").rule("TO-CDN", "CDN").asset("IMG-A", b"image a")
    )
    legacy = target(world, "CDN") / "legacy" / "a.jpg"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"image a")
    inode = legacy.stat().st_ino
    imported(world, "IMP-A", "IMG-A", "CDN", "legacy/a.jpg")
    plan = world.plan()
    assert kinds(plan)[("IMG-A", "CDN")] == ActionKind.IMPORT
    (job,) = apply(world).jobs
    assert (job.job_type, job.status) == ("import", "completed"), job.error
    assert legacy.stat().st_ino == inode and legacy.read_bytes() == b"image a"
    assert rows(
        world, "SELECT sync_status, remote_key, managed, remote_checksum FROM platform_assets"
    ) == [("synced", "legacy/a.jpg", False, hashlib.sha256(b"image a").hexdigest())]
    assert not world.plan().changes
    assert rows(world, "SELECT count(*) FROM sync_events_log WHERE event_type = 'imported'") == [
        (2,)
    ]


def test_an_import_of_other_bytes_is_outdated_and_then_updated_in_place(
    tmp_path: Path, state_at: str
) -> None:
    world = (
        World(tmp_path, state_at).platform("CDN").rule("TO-CDN", "CDN").asset("IMG-A", b"image a")
    )
    legacy = target(world, "CDN") / "old-a.jpg"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"an older image a")
    imported(world, "IMP-A", "IMG-A", "CDN", "old-a.jpg")
    (job,) = apply(world).jobs
    assert job.status == "failed" and "holds other bytes" in (job.error or "")
    assert rows(world, "SELECT sync_status, remote_key FROM platform_assets") == [
        ("outdated", "old-a.jpg")
    ]
    assert legacy.read_bytes() == b"an older image a"  # nothing sent yet
    plan = world.plan()
    assert kinds(plan)[("IMG-A", "CDN")] == ActionKind.UPDATE
    (job,) = apply(world).jobs
    assert job.status == "completed", job.error
    assert legacy.read_bytes() == b"image a"  # updated where it is, not duplicated
    assert sorted(p.name for p in target(world, "CDN").iterdir()) == ["old-a.jpg"]
    assert not world.plan().changes


def test_an_import_of_a_missing_object_fails_and_records_nothing_synced(
    tmp_path: Path, state_at: str
) -> None:
    world = (
        World(tmp_path, state_at).platform("CDN").rule("TO-CDN", "CDN").asset("IMG-A", b"image a")
    )
    imported(world, "IMP-A", "IMG-A", "CDN", "not/there.jpg")
    (job,) = apply(world).jobs
    assert job.status == "failed" and "not on CDN" in (job.error or "")
    assert rows(world, "SELECT sync_status FROM platform_assets") == [("pending",)]
    assert kinds(world.plan())[("IMG-A", "CDN")] == ActionKind.IMPORT  # still asked for


def test_an_import_never_reads_outside_the_target(tmp_path: Path, state_at: str) -> None:
    world = (
        World(tmp_path, state_at).platform("CDN").rule("TO-CDN", "CDN").asset("IMG-A", b"image a")
    )
    (tmp_path / "secret.jpg").write_bytes(b"image a")
    target(world, "CDN").mkdir(parents=True)
    os.symlink(tmp_path, target(world, "CDN") / "up")
    for i, hostile in enumerate(("../../secret.jpg", "/etc/passwd", "up/secret.jpg")):
        imported(world, f"IMP-{i}", "IMG-A", "CDN", hostile)
        (job,) = apply(world).jobs
        assert job.status == "failed", hostile
        world.remove("Import", f"IMP-{i}")
    assert rows(world, "SELECT DISTINCT sync_status FROM platform_assets") == [("pending",)]


def test_an_import_of_an_s3_object_records_it_without_uploading(
    tmp_path: Path, state_at: str, s3_endpoint: str, bucket: str, no_uploads: None
) -> None:
    world = s3_world(tmp_path, s3_endpoint, bucket, state_at)
    world.remove("Asset", "VID-SMALL")
    world.asset("VID-OLD", b"an old master")
    client(s3_endpoint).put_object(Bucket=bucket, Key="masters/2019/old.mp4", Body=b"an old master")
    imported(world, "IMP-OLD", "VID-OLD", "BACKUP", "2019/old.mp4")
    (job,) = apply(world).jobs
    assert (job.job_type, job.status) == ("import", "completed"), job.error
    assert rows(world, "SELECT sync_status, remote_key FROM platform_assets") == [
        ("synced", "2019/old.mp4")
    ]
    assert not world.plan().changes


def test_imports_are_checked_with_file_and_line(tmp_path: Path, run) -> None:
    world = local_world(tmp_path)
    imported(world, "IMP-1", "VID-A", "CDN", "a.mp4")
    imported(world, "IMP-2", "VID-A", "CDN", "b.mp4")
    imported(world, "IMP-3", "VID-B", "CDN", "a.mp4")
    imported(world, "IMP-4", "VID-X", "CDNX", "x.mp4")
    world.manifests_dir.joinpath("all.yaml").write_text(_documents(world))
    result = run("validate", "--manifests", str(world.manifests_dir), "--media-root",
                 str(world.media))  # fmt: skip
    assert result.exit_code == 1
    out = result.output
    assert "Import IMP-2: spec.asset: VID-A on CDN is already imported at" in out
    assert "Import IMP-3: spec.id: the object 'a.mp4' on CDN is already imported at" in out
    assert "Import IMP-4: spec.asset: unknown asset 'VID-X'" in out
    assert "Import IMP-4: spec.platform: unknown platform 'CDNX'" in out


def test_reconcile_import_takes_over_one_object(tmp_path: Path, state_at: str, run) -> None:
    world = local_world(tmp_path, state_at)
    world.manifests()  # writes the manifests
    (target(world, "CDN")).mkdir(parents=True)
    (target(world, "CDN") / "keep.mp4").write_bytes(b"a master " * 100)
    args = world.cli_args()
    bad = run("import", "VID-A", "CDN-X", "keep.mp4", *args)
    assert bad.exit_code == 1 and "unknown platform 'CDN-X'" in bad.stderr
    assert not created(world.state)
    done = run("import", "VID-A", "CDN", "keep.mp4", *args, "-o", "json")
    assert done.exit_code == 0, done.output
    assert rows(world, "SELECT remote_key, sync_status FROM platform_assets") == [
        ("keep.mp4", "synced")
    ]
    again = run("import", "VID-A", "CDN", "keep.mp4", *args)
    assert again.exit_code == 1 and "has a recorded copy already" in again.stderr
    plan = world.plan()
    assert kinds(plan)[("VID-A", "CDN")] == ActionKind.NOOP


# -- discovery ------------------------------------------------------------------------------------


def test_discovery_lists_exactly_the_unmanaged_objects_and_its_imports_leave_nothing_to_do(
    tmp_path: Path,
    state_at: str,
    s3_endpoint: str,
    bucket: str,
    run,
) -> None:
    world = s3_world(tmp_path, s3_endpoint, bucket, state_at)
    world.remove("Asset", "VID-SMALL")
    for n in range(20):
        world.asset(f"VID-{n:02d}", f"managed {n}".encode())
    apply(world)
    s3 = client(s3_endpoint)
    for n in range(3):  # copies of assets the bucket does not hold yet
        world.asset(f"VID-NEW-{n}", f"new {n}".encode())
        s3.put_object(Bucket=bucket, Key=f"masters/legacy/new-{n}.mp4", Body=f"new {n}".encode())
    s3.put_object(Bucket=bucket, Key="masters/legacy/unknown.bin", Body=b"nobody's")
    s3.put_object(Bucket=bucket, Key="masters/legacy/copy-of-01.mp4", Body=b"managed 1")
    s3.put_object(Bucket=bucket, Key="elsewhere/outside-prefix.mp4", Body=b"new 0")
    world.manifests()
    out = tmp_path / "imports.yaml"
    found = run("import", "--discover", "BACKUP", *world.cli_args(), "-o", "json",
                "--write", str(out))  # fmt: skip
    assert found.exit_code == 0, found.output
    listed = json.loads(found.stdout)
    assert sorted(o["id"] for o in listed["objects"]) == sorted(
        [f"legacy/new-{n}.mp4" for n in range(3)] + ["legacy/unknown.bin", "legacy/copy-of-01.mp4"]
    )
    assert listed["managed"] == 20
    assert listed["importable"] == 3
    assert rows(world, "SELECT count(*) FROM platform_assets") == [(20,)]  # read-only
    shutil.copy(out, world.manifests_dir / "imports.yaml")
    plan = world.plan()
    assert plan.summary()["import"] == 3 and plan.summary()["create"] == 0
    result = apply(world)
    assert sorted({j.job_type for j in result.jobs}) == ["import"]
    assert all(j.status == "completed" for j in result.jobs), [j.error for j in result.jobs]
    assert not world.plan().changes


def test_the_shipped_example_renamed_plans_moves_only(tmp_path: Path, state_at: str, run) -> None:
    manifests = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", manifests)
    state: Path | str = tmp_path / "state" / "r.duckdb"
    if is_postgresql(state_at):
        state = state_at
    assert run("--manifests", str(manifests), "--state", str(state)).exit_code == 0
    before = inodes(tmp_path / "state" / "platforms")
    text = (manifests / "assets.yaml").read_text()
    (manifests / "assets.yaml").write_text(
        text.replace("code: VID-LAUNCH-2024", "code: VID-LAUNCH-KEYNOTE")
        + "---\napiVersion: mediasync/v1\nkind: Moved\nmetadata: {code: RENAME-LAUNCH}\n"
        "spec: {from: VID-LAUNCH-2024, to: VID-LAUNCH-KEYNOTE}\n"
    )
    args = ("--manifests", str(manifests), "--state", str(state))
    dry = run("--dry-run", *args, "-o", "json")
    plan = json.loads(dry.stdout)
    assert plan["format_version"] == 3
    assert plan["summary"]["create"] == plan["summary"]["orphan"] == 0
    assert plan["summary"]["moved"] == 3
    markdown = run("--dry-run", *args, "-o", "markdown").stdout
    assert markdown.count("moved") >= 3
    assert run(*args).exit_code == 0
    assert inodes(tmp_path / "state" / "platforms") == before
    assert run("--dry-run", *args, "--detailed-exitcode").exit_code == 0


def test_an_asset_set_whose_code_template_changed_keeps_every_copy(
    tmp_path: Path, state_at: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = World(tmp_path, state_at).platform("CDN").rule("TO-CDN", "CDN")
    for n in range(12):
        world.write_file(f"clip-{n}.mp4", f"clip {n}".encode())
    spec = {"include": "*.mp4", "asset_type": "video", "category": "marketing",
            "code_template": "VID-{stem}", "code_case": "upper"}  # fmt: skip
    world._doc("AssetSet", "CLIPS", spec)
    apply(world)
    world._doc("AssetSet", "CLIPS", {**spec, "code_template": "CLIP-{stem}",
                                     "moved_from": "VID-{stem}"})  # fmt: skip
    plan = world.plan()
    assert plan.summary()["moved"] == 12
    assert plan.summary()["create"] == plan.summary()["orphan"] == 0
    no_uploads_again(monkeypatch)
    result = apply(world)
    assert [j.job_type for j in result.jobs] == ["move"] * 12
    assert rows(world, "SELECT count(*) FROM source_assets WHERE asset_code LIKE 'CLIP-%'") == [
        (12,)
    ]
    again = world.plan()
    assert not again.changes and not again.notes
