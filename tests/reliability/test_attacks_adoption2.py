"""Second round of attacks on adoption (issue 21): what the fixes of the first round left
open. Each test names a defect and fails on the code it was written against; a test marked
``# guard`` passes and keeps a property that was checked."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from attack_kit import FAST, out
from planning import World, apply_run, rows
from test_attacks_adoption import apply, digest, imported, moved, rename, shifted_masters

# -- a move onto a key an unmoving copy holds --------------------------------------------------


def test_a_move_onto_an_orphaned_copy_with_the_same_bytes_never_takes_it_over(
    tmp_path: Path,
) -> None:
    """VID-B is removed from the manifests (no prune: its copy stays, recorded), then VID-A's
    master, with the same bytes, is renamed to VID-B's old file name: VID-A's copy 'moves'
    onto b.mp4 (adoption.move finds the recorded bytes there and deletes a.mp4), so one object
    is recorded as the copy of two assets, and pruning VID-B later deletes VID-A's only copy.
    Rule: one object is one asset's copy; pruning never deletes another asset's copy
    (diff._order_moves only looks at moving copies, not at the copies already at the key)."""
    same = b"same bytes " * 40
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-A", same, file="a.mp4").asset("VID-B", same, file="b.mp4")
    apply(world)
    world.remove("Asset", "VID-B")
    (world.media / "b.mp4").unlink()
    os.rename(world.media / "a.mp4", world.media / "b.mp4")
    world.asset("VID-A", same, file="b.mp4")
    apply(world)
    apply(world)
    world.rule("TO-CDN", "CDN", prune=True)
    apply(world)
    apply(world)
    copy = out(world, "CDN") / "b.mp4"
    assert copy.exists(), "pruning VID-B deleted VID-A's copy"
    holders = rows(
        world,
        "SELECT count(*) FROM platform_assets WHERE remote_key = 'b.mp4' "
        "AND sync_status <> 'deleted'",
    )
    assert holders == [(1,)]


def test_a_move_onto_an_orphaned_copy_is_not_called_a_foreign_object(tmp_path: Path) -> None:
    """VID-B is removed (no prune: its copy stays at b.mp4, recorded as this tool's), then
    VID-A's master is renamed to b.mp4: the plan says 'moved', and apply records a
    foreign_object conflict saying 'an object this tool did not make is already at b.mp4',
    about a copy this tool made and records. Rule: what the tool says is true; the plan must
    block the move (key held by a recorded copy), never report its own copy as foreign."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-A", b"a master " * 10, file="a.mp4")
    world.asset("VID-B", b"b master " * 10, file="b.mp4")
    apply(world)
    world.remove("Asset", "VID-B")
    (world.media / "b.mp4").unlink()
    os.rename(world.media / "a.mp4", world.media / "b.mp4")
    world.asset("VID-A", b"a master " * 10, file="b.mp4")
    apply(world)
    conflicts = rows(world, "SELECT conflict_type, notes FROM sync_conflicts")
    assert not any("did not make" in str(n) for _, n in conflicts), conflicts
    assert (out(world, "CDN") / "b.mp4").read_bytes() == b"b master " * 10


# -- --refresh on API platforms: credentials ----------------------------------------------------

WRONG = "sk-live-0123456789abcdef-WRONG"


def test_a_refreshed_dry_run_never_prints_a_key_the_server_echoes(
    tmp_path: Path, fake, run, monkeypatch
) -> None:  # guard
    """`--dry-run --refresh` on a REST platform whose server quotes a rejected API key back in
    its error: the key must appear nowhere in what the tool prints (stdout, stderr, notes).
    Rule: no credential is ever recorded or printed."""
    import hashlib

    from test_api_drivers import world_for

    world = world_for(tmp_path, fake, "CDN")
    world.asset("VID-A", b"x" * 100).asset("VID-B", b"y" * 50)
    data = b"x" * 100
    fake.objects["legacy-1"] = {"id": "legacy-1", "sha256": hashlib.sha256(data).hexdigest(),
                                "size": 100, "data": data, "key": "", "metadata": {}}  # fmt: skip
    imported(world, "IMP-A", "VID-A", "CDN", "legacy-1")
    world.manifests()
    fake.echo_key = True
    monkeypatch.setenv("TEST_CDN_KEY", WRONG)
    for fmt in ("text", "json"):
        result = run("--dry-run", "--refresh", *world.cli_args(), "-o", fmt)
        assert "Traceback" not in result.output
        assert WRONG not in result.stdout + result.stderr, result.output
    assert not world.store.path.exists() or rows(world, "SELECT count(*) FROM sync_jobs") == [(0,)]


def test_a_new_asset_at_an_orphaned_copys_key_never_shares_that_object(tmp_path: Path) -> None:
    """VID-B is removed (no prune: its copy stays at b.mp4, recorded), and a new asset VID-C
    with the same bytes is declared with the file b.mp4: its create finds the very bytes at
    its key and adopts them, so one object is recorded as VID-B's orphan and VID-C's copy, and
    turning pruning on deletes VID-C's only copy. Rule: one object is one asset's copy;
    pruning deletes only copies no asset wants."""
    same = b"same bytes " * 40
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-A", b"a master").asset("VID-B", same, file="b.mp4")
    apply(world)
    world.remove("Asset", "VID-B")
    world.asset("VID-C", same, file="b.mp4")
    apply(world)
    world.rule("TO-CDN", "CDN", prune=True)
    apply(world)
    apply(world)
    assert (out(world, "CDN") / "b.mp4").exists(), "pruning VID-B deleted VID-C's copy"
    assert not world.plan().changes


def test_a_refreshed_import_of_another_assets_copy_says_it_will_fail(tmp_path: Path, run) -> None:
    """`--dry-run --refresh` on an Import naming the key of another asset's recorded copy says
    'it is there and holds these bytes', but apply refuses it (already another asset's copy):
    the refreshed plan promises what apply does not do (refresh._look_up never checks whose
    the object is). Rule: what the docs promise holds ('an import says what it will find')."""
    same = b"same bytes " * 40
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-B", same)
    apply(world)
    world.asset("VID-C", same)
    imported(world, "IMP-C", "VID-C", "CDN", "vid-b.mp4")
    world.manifests()
    result = run("--dry-run", "--refresh", *world.cli_args(), "-o", "json")
    import json

    (action,) = [a for a in json.loads(result.stdout)["actions"] if a["asset"] == "VID-C"]
    assert "holds these bytes" not in action["reason"], action["reason"]
    # fixed in the plan itself: the import is blocked, saying whose the object is
    assert action["action"] == "blocked" and "VID-B's recorded copy" in action["reason"]
    applied = apply(world)
    assert [j for j in applied.jobs if j.job_type == "import"] == []
    assert (out(world, "CDN") / "vid-b.mp4").read_bytes() == same


# -- an import and a move in one run --------------------------------------------------------------


def test_an_import_never_takes_over_the_key_a_copy_moves_to_in_the_same_run(
    tmp_path: Path,
) -> None:
    """VID-A's master is renamed (its copy moves from vid-a.mp4 to new-a.mp4) while an Import
    names new-a.mp4 for VID-C, where nothing is yet: the move runs first, then the import
    finds VID-A's freshly moved copy there (admission's 'taken' holds only the keys recorded
    before the run) and takes it over, so one object is two assets' copies and the next
    reconcile writes VID-C's bytes over VID-A's copy. Rule: one object is one asset's copy;
    nothing is written over a copy of another asset."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-A", b"a master " * 20)
    apply(world)
    os.rename(world.media / "vid-a.mp4", world.media / "new-a.mp4")
    world.asset("VID-A", b"a master " * 20, file="new-a.mp4")
    world.asset("VID-C", b"c master " * 20)
    imported(world, "IMP-C", "VID-C", "CDN", "new-a.mp4")
    one_at_a_time = replace(FAST, parallel=1)  # the move first, then the import (by code)
    apply_run(world, one_at_a_time)
    apply_run(world, one_at_a_time)
    apply_run(world, one_at_a_time)
    assert (out(world, "CDN") / "new-a.mp4").read_bytes() == b"a master " * 20
    holders = rows(
        world,
        "SELECT count(*) FROM platform_assets WHERE remote_key = 'new-a.mp4' "
        "AND sync_status <> 'deleted'",
    )
    assert holders == [(1,)]


def test_an_import_never_takes_over_a_copy_uploaded_earlier_in_the_same_run(
    tmp_path: Path,
) -> None:
    """A new asset VID-A is created at vid-a.mp4 while an Import names vid-a.mp4 for VID-C:
    the upload runs first, the import then finds VID-A's new copy and takes it over (the
    claims of a run only count imports), and the next reconcile overwrites VID-A's copy with
    VID-C's bytes. Rule: one object is one asset's copy; nothing is written over another
    asset's copy."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-A", b"a master " * 20).asset("VID-C", b"c master " * 20)
    imported(world, "IMP-C", "VID-C", "CDN", "vid-a.mp4")
    one_at_a_time = replace(FAST, parallel=1)
    for _ in range(3):
        apply_run(world, one_at_a_time)
    assert (out(world, "CDN") / "vid-a.mp4").read_bytes() == b"a master " * 20
    holders = rows(
        world,
        "SELECT count(*) FROM platform_assets WHERE remote_key = 'vid-a.mp4' "
        "AND sync_status <> 'deleted'",
    )
    assert holders == [(1,)]


# -- a rename onto a retired code --------------------------------------------------------------

LONG_B = "VID-B" + "X" * 45  # 50 characters, the longest code


def test_a_retired_fifty_character_code_taken_by_a_rename_reads_back_everywhere(
    tmp_path: Path, run
) -> None:  # guard
    """VID-A is renamed onto a 50-character code whose copies were all pruned: the retired
    row keeps its history under CODE#id, and status, events, jobs, explain and the
    distribution report read the state without a traceback; the new code's history starts
    with the rename, the retired code's events stay its own."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN", prune=True)
    world.asset("VID-A", b"a master " * 10).asset(LONG_B, b"b master " * 10)
    apply(world)
    world.remove("Asset", LONG_B)
    apply(world)
    rename(world, "VID-A", LONG_B)
    moved(world, "REUSE-B", "VID-A", LONG_B)
    apply(world)
    codes = sorted(c for (c,) in rows(world, "SELECT asset_code FROM source_assets"))
    assert len(codes) == 2 and LONG_B in codes
    retired = next(c for c in codes if c != LONG_B)
    assert "#" in retired and len(retired) <= 50, retired
    args = world.cli_args()
    state = ["--state", args[-1]]
    for command in (
        ["status", *state],
        ["events", "--asset", LONG_B, *state],
        ["events", "--asset", retired, *state],
        ["jobs", *state],
        ["explain", LONG_B, *args],
        ["report", "distribution", *state],
    ):
        result = run(*command)
        assert result.exit_code == 0, (command, result.output)
        assert "Traceback" not in result.output
    mine = run("events", "--asset", LONG_B, *state, "-o", "json").stdout
    assert "pruned" not in mine.lower() and "delete" not in mine.lower(), mine
    assert not world.plan().changes


def test_an_imported_copy_renamed_out_of_its_rule_is_never_pruned(
    tmp_path: Path,
) -> None:  # guard
    """An imported object (VID-A's copy) whose asset is renamed to CLIP-A with a Moved
    document while the selective rule only takes VID-*: the copy is no longer desired, and
    pruning must still leave it, an imported object being the team's. Rule: pruning never
    deletes an imported object."""
    world = World(tmp_path).platform("CDN")
    world.rule("TO-CDN", "CDN", sync_mode="selective", include=["VID-*"], prune=True)
    world.asset("VID-A", b"a master " * 10).asset("VID-B", b"b master " * 10)
    legacy = out(world, "CDN") / "legacy-a.mp4"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"a master " * 10)
    imported(world, "IMP-A", "VID-A", "CDN", "legacy-a.mp4")
    apply(world)
    assert rows(world, "SELECT count(*) FROM sync_jobs WHERE job_type = 'import'") == [(1,)]
    rename(world, "VID-A", "CLIP-A")
    moved(world, "RENAME-A", "VID-A", "CLIP-A")
    world.remove("Import", "IMP-A")
    apply(world)
    apply(world)
    assert legacy.exists(), "pruning deleted an imported object"


# -- what an Import may name on a folder --------------------------------------------------------


@pytest.mark.parametrize("linked", ["file", "folder"])
def test_an_import_of_a_symlink_out_of_the_target_never_reads_or_writes_outside(
    tmp_path: Path, linked: str
) -> None:  # guard
    """An Import names legacy.mp4 on a local target, a symlink to a file outside the target
    and the media root: the import must neither take the outside file's bytes as the copy
    (read outside) nor let the update that follows write through the link. Rule: nothing
    outside the media root or a local target is read or written."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-A", b"a master " * 10)
    outside = tmp_path / "elsewhere" / "precious.bin"
    outside.parent.mkdir()
    outside.write_bytes(b"a master " * 10)  # the very bytes: a match if it is read
    target = out(world, "CDN")
    target.mkdir(parents=True)
    if linked == "file":
        key = "legacy.mp4"
        (target / key).symlink_to(outside)
    else:
        key = "sub/precious.bin"
        (target / "sub").symlink_to(outside.parent, target_is_directory=True)
    imported(world, "IMP-A", "VID-A", "CDN", key)
    apply(world)
    synced = rows(world, "SELECT sync_status FROM platform_assets WHERE remote_key = ?", [key])
    assert synced != [("synced",)], "the bytes of a file outside the target were taken"
    outside.write_bytes(b"precious, other bytes")
    apply(world)
    apply(world)
    assert outside.read_bytes() == b"precious, other bytes", "written through a symlink"


def test_a_move_onto_the_key_an_updated_copy_leaves_is_not_a_foreign_conflict(
    tmp_path: Path,
) -> None:
    """b.mp4 is renamed to c.mp4 and edited (its copy is updated at c.mp4, the old one goes)
    while a.mp4 is renamed to b.mp4 (its copy moves): diff._order_moves only orders MOVED
    actions, so VID-A's copy moves onto b.mp4 while VID-B's copy is still there, and apply
    records a foreign_object conflict 'an object this tool did not make is already at b.mp4'
    about this tool's own copy; the state never converges without a person. Rule: what the
    tool says is true; a move waits for a free key (docs/manifests.md, Moved)."""
    world = shifted_masters(tmp_path, b"b master, edited")
    one_at_a_time = replace(FAST, parallel=1)
    for _ in range(3):
        apply_run(world, one_at_a_time)
    conflicts = rows(world, "SELECT conflict_type, notes FROM sync_conflicts")
    assert conflicts == [], conflicts
    assert (out(world, "CDN") / "b.mp4").read_bytes() == b"a master " * 10
    assert (out(world, "CDN") / "c.mp4").read_bytes() == b"b master, edited"
    assert not (out(world, "CDN") / "a.mp4").exists()


def test_an_import_never_takes_over_a_copy_another_platform_records(tmp_path: Path) -> None:
    """Platform CDN2's target is a folder inside CDN's: an Import on CDN naming sub/vid-b.mp4
    (CDN2's copy of VID-B) is taken over as VID-C's copy (admission's 'taken' only holds the
    import's own platform's copies; discovery was fixed for overlaps, imports were not), and
    the next reconcile writes VID-C's bytes over CDN2's copy. Rule: nothing is written over
    an object this tool did not make for this placement; one object is one copy."""
    world = World(tmp_path).platform("CDN").platform("CDN2", target="../out/cdn/sub")
    world.rule("TO-CDN2", "CDN2", sync_mode="selective", include=["VID-B"])
    world.rule("TO-CDN", "CDN", sync_mode="selective", include=["VID-C"])
    world.asset("VID-B", b"b master " * 10)
    apply(world)
    theirs = out(world, "CDN") / "sub" / "vid-b.mp4"
    assert theirs.read_bytes() == b"b master " * 10
    world.asset("VID-C", b"c master " * 10)
    imported(world, "IMP-C", "VID-C", "CDN", "sub/vid-b.mp4")
    for _ in range(3):
        apply(world)
    assert theirs.read_bytes() == b"b master " * 10, "CDN2's copy was overwritten"


# -- discovery on S3 -------------------------------------------------------------------------------


def test_discovery_does_not_hide_objects_because_another_endpoint_has_a_same_named_bucket(
    tmp_path: Path, s3_endpoint: str, bucket: str, run
) -> None:
    """Two S3 platforms name the same bucket and prefix on different endpoints (another
    region's or another provider's store: other objects): discovery on BACKUP counts an
    object no copy of BACKUP records as 'managed' because MIRROR records a copy at that key
    (adopting._place compares bucket and prefix, never the endpoint), so an importable
    object is hidden. Rule: what the docs promise (discovery lists what no copy records)."""
    import json

    from test_s3 import client, s3_world

    world = s3_world(tmp_path, s3_endpoint, bucket)
    world.platform(
        "MIRROR", platform_type="cloud_storage", driver="s3", target=None, bucket=bucket,
        prefix="masters/", region="eu-west-1", endpoint_url="http://127.0.0.1:9",
    )  # fmt: skip
    world.rule("ALL", "BACKUP", sync_mode="selective", include=["VID-SMALL"])
    world.rule("TO-MIRROR", "MIRROR", sync_mode="selective", include=["VID-LEGACY"])
    world.asset("VID-LEGACY", b"legacy master " * 10)
    world.applied()  # as if synced: MIRROR records masters/vid-legacy.mp4 on its own store
    client(s3_endpoint).put_object(
        Bucket=bucket, Key="masters/vid-legacy.mp4", Body=b"legacy master " * 10
    )
    result = run("import", "--discover", "BACKUP", *world.cli_args(), "-o", "json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    listed = json.dumps(found)
    assert "vid-legacy.mp4" in listed, found


# -- reconcile import where the rule makes a rendition ----------------------------------------


def small_jpeg(size: tuple[int, int] = (400, 300)) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_reconcile_import_compares_the_rendition_and_sends_nothing(
    tmp_path: Path, run
) -> None:  # guard
    """`reconcile import` of an object that holds the very rendition the rule makes (a
    resized image) records it synced, compared with the rendition made from the master, and
    sends nothing; the object is left byte for byte."""
    import shutil

    rules = {"resize_images": True, "max_dimension": 100}
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN", transform_rules=rules)
    world.asset("IMG-A", small_jpeg(), file="img-a.jpg", asset_type="image")
    apply(world)
    made = out(world, "CDN") / "img-a.jpg"
    assert digest(made) != digest(world.media / "img-a.jpg")  # a rendition, not the master
    legacy = out(world, "CDN2") / "legacy.jpg"
    legacy.parent.mkdir(parents=True)
    shutil.copy(made, legacy)
    before = (digest(legacy), legacy.stat().st_mtime_ns)
    world.platform("CDN2").rule("TO-CDN2", "CDN2", transform_rules=rules)
    world.manifests()
    result = run("import", "IMG-A", "CDN2", "legacy.jpg", *world.cli_args())
    assert result.exit_code == 0, result.output
    assert (digest(legacy), legacy.stat().st_mtime_ns) == before
    assert sorted(p.name for p in legacy.parent.iterdir()) == ["legacy.jpg"]
    status = rows(
        world,
        "SELECT pa.sync_status, pa.remote_key FROM platform_assets pa JOIN sync_platforms sp "
        "ON sp.id = pa.platform_id WHERE sp.platform_code = 'CDN2'",
    )
    assert status == [("synced", "legacy.jpg")]


# -- kill -9 in a chain of moves ----------------------------------------------------------------


@pytest.mark.parametrize("point", ["linked", "unlinked"])
def test_a_chain_of_moves_killed_in_its_first_step_converges_without_sending(
    tmp_path: Path, point: str
) -> None:  # guard
    """b.mp4 moves to c.mp4 while a.mp4 waits for b.mp4 (key held); kill -9 in the middle of
    the first move: the next runs finish both moves, the very files, nothing sent, no
    conflict."""
    from attack_kit import reconcile
    from test_attacks_adoption import killed, sent_jobs

    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-A", b"a master " * 10, file="a.mp4")
    world.asset("VID-B", b"b master " * 10, file="b.mp4")
    apply(world)
    inodes = {n: (out(world, "CDN") / n).stat().st_ino for n in ("a.mp4", "b.mp4")}
    media = world.media
    os.rename(media / "b.mp4", media / "c.mp4")
    os.rename(media / "a.mp4", media / "b.mp4")
    world.asset("VID-A", b"a master " * 10, file="b.mp4")
    world.asset("VID-B", b"b master " * 10, file="c.mp4")
    world.manifests()
    killed(world, point)
    for _ in range(2):
        done = reconcile(world, *world.cli_args())
    assert done.returncode == 0, done.stderr + done.stdout
    target = out(world, "CDN")
    assert sorted(p.name for p in target.iterdir()) == ["b.mp4", "c.mp4"]
    assert (target / "b.mp4").stat().st_ino == inodes["a.mp4"]
    assert (target / "c.mp4").stat().st_ino == inodes["b.mp4"]
    assert sent_jobs(world) == []
    assert rows(world, "SELECT count(*) FROM sync_conflicts") == [(0,)]
    assert not world.plan().changes


# -- Imports that do nothing ----------------------------------------------------------------------


@pytest.mark.parametrize("how", ["renamed", "master-moved"])
def test_an_import_for_a_moving_copy_is_not_silently_ignored(tmp_path: Path, how: str) -> None:
    """An Import for a placement that has a copy this tool sent is a note of the plan (the
    first round's fix, which holds for an update), but not when that copy moves (a rename, a
    moved master: diff._desired_action calls _imported only when the action is not MOVED):
    the Import of legacy.mp4 is dropped without a word. Rule: what the docs promise ('an
    Import ... whose placement already has a copy this tool sent, is a note of the plan')."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN").asset("VID-A", b"a master")
    apply(world)
    (out(world, "CDN") / "legacy.mp4").write_bytes(b"a master")
    code = "VID-A"
    if how == "renamed":
        rename(world, "VID-A", "VID-A2")
        moved(world, "RENAME-A", "VID-A", "VID-A2")
        code = "VID-A2"
    else:
        os.rename(world.media / "vid-a.mp4", world.media / "moved-a.mp4")
        world.asset("VID-A", b"a master", file="moved-a.mp4")
    imported(world, "IMP-LEGACY", code, "CDN", "legacy.mp4")
    plan = world.plan()
    assert [n for n in plan.notes if "IMP-LEGACY" in n], plan.notes


# -- discovery's written Imports -------------------------------------------------------------------


@pytest.mark.parametrize("case", ["two-matches", "already-imported"])
def test_discovery_never_writes_imports_that_make_the_manifests_invalid(
    tmp_path: Path, run, case: str
) -> None:
    """Discovery writes an Import for every match of an asset: two identical legacy files
    both matching VID-A (or one, while the manifests already declare an Import for VID-A on
    CDN that is not applied yet, a placement discovery still counts as wanted) give two
    Imports of VID-A on CDN, and committing the reviewed file, as its header says, makes the
    manifests invalid ('one object per asset and platform'). Rule: what the docs promise
    (discovery writes Imports for the objects it finds, to commit after review); nothing
    the tool writes for the manifests may break them."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-A", b"a master " * 10).asset("VID-B", b"b master " * 10)
    target = out(world, "CDN")
    target.mkdir(parents=True)
    (target / "legacy-1.mp4").write_bytes(b"a master " * 10)
    if case == "two-matches":
        (target / "legacy-2.mp4").write_bytes(b"a master " * 10)
    else:
        (target / "old-a.mp4").write_bytes(b"a master " * 10)
        imported(world, "IMP-A", "VID-A", "CDN", "old-a.mp4")
    world.manifests()
    written = world.manifests_dir / "imports.yaml"
    found = run("import", "--discover", "CDN", *world.cli_args(), "--write", str(written))
    assert found.exit_code == 0, found.output
    result = run("validate", "--manifests", str(world.manifests_dir), "--media-root",
                 str(world.media))  # fmt: skip
    assert result.exit_code == 0, written.read_text() + result.output


def test_an_updated_copy_whose_new_key_another_copy_leaves_is_not_a_foreign_conflict(
    tmp_path: Path,
) -> None:
    """a.mp4 is renamed to b.mp4 and edited (its copy is sent again, to b.mp4) while b.mp4 is
    renamed to c.mp4 (its copy moves): nothing orders the two (diff._order_moves only looks
    at MOVED actions), the upload to b.mp4 runs while VID-B's copy is still there and is
    refused as 'an object this tool did not make', a foreign_object conflict about the tool's
    own copy that a person must resolve. Rule: what the tool says is true; a copy waits for a
    free key (docs/manifests.md, Moved)."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-A", b"a master " * 10, file="a.mp4")
    world.asset("VID-B", b"b master " * 10, file="b.mp4")
    apply(world)
    media = world.media
    os.rename(media / "b.mp4", media / "c.mp4")
    os.rename(media / "a.mp4", media / "b.mp4")
    world.asset("VID-A", b"a master, edited", file="b.mp4")
    world.asset("VID-B", b"b master " * 10, file="c.mp4")
    one_at_a_time = replace(FAST, parallel=1)
    for _ in range(3):
        apply_run(world, one_at_a_time)
    conflicts = rows(world, "SELECT conflict_type, notes FROM sync_conflicts")
    assert conflicts == [], conflicts
    assert (out(world, "CDN") / "b.mp4").read_bytes() == b"a master, edited"
    assert (out(world, "CDN") / "c.mp4").read_bytes() == b"b master " * 10


# -- reconcile import on the command line ----------------------------------------------------------


def test_reconcile_import_of_an_object_a_declared_import_names_is_refused(
    tmp_path: Path, run
) -> None:
    """The manifests declare an Import of legacy.mp4 for VID-A (not applied yet);
    `reconcile import VID-C CDN legacy.mp4` takes the same object for VID-C (import_one checks
    only an Import of the same asset and platform, never 'one asset per object' as the
    manifests' own checks do), so the declared Import fails on the next reconcile, and the
    object may be updated with VID-C's bytes. Rule: bad input is one clear line, a non-zero
    exit, nothing changed."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-A", b"a master " * 10).asset("VID-C", b"c master " * 10)
    legacy = out(world, "CDN") / "legacy.mp4"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"a master " * 10)
    imported(world, "IMP-A", "VID-A", "CDN", "legacy.mp4")
    world.manifests()
    result = run("import", "VID-C", "CDN", "legacy.mp4", *world.cli_args())
    assert result.exit_code != 0, result.output
    taken = rows(
        world,
        "SELECT sa.asset_code FROM platform_assets pa JOIN source_assets sa "
        "ON sa.id = pa.source_asset_id WHERE pa.remote_key = 'legacy.mp4'",
    ) if world.store.path.exists() else []  # fmt: skip
    assert ("VID-C",) not in taken, (taken, result.output)


# -- an Import on an encrypted rule ---------------------------------------------------------------


def test_an_import_of_the_plaintext_master_on_an_encrypted_rule_is_never_synced(
    tmp_path: Path, monkeypatch
) -> None:  # guard
    """An Import on a rule that encrypts names an object holding the plaintext master: it is
    compared with the encrypted rendition, never recorded synced, and the next reconcile
    replaces the plaintext with ciphertext at the object's own key; after that the copy is in
    sync (no endless re-send although encryption differs each time)."""
    monkeypatch.setenv("TEST_BACKUP_KEY", "11" * 32)
    encrypt = {"encrypt": True, "encryption_key": {"secret_env": "TEST_BACKUP_KEY"}}
    world = World(tmp_path).platform("VAULT", platform_type="cloud_storage")
    world.rule("TO-VAULT", "VAULT", transform_rules=encrypt)
    master = b"secret master " * 30
    world.asset("VID-A", master)
    legacy = out(world, "VAULT") / "legacy.mp4"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(master)
    imported(world, "IMP-A", "VID-A", "VAULT", "legacy.mp4")
    apply(world)
    assert rows(world, "SELECT sync_status FROM platform_assets") == [("outdated",)]
    apply(world)
    assert master[:20] not in legacy.read_bytes()
    status = rows(world, "SELECT sync_status, remote_key, remote_checksum FROM platform_assets")
    assert status == [("synced", "legacy.mp4", digest(legacy))]
    assert not world.plan().changes


# -- reconcile watch ---------------------------------------------------------------------------


def test_a_watch_cycle_follows_a_moved_document_without_sending(tmp_path: Path) -> None:  # guard
    """A watch cycle after a rename with its Moved document moves the record: no upload, no
    orphan, the file on the target is the very one."""
    from reconciler.ops import Workspace
    from reconciler.watch import Log, Watcher, WatchOptions

    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN").asset("VID-A", b"a " * 50)
    apply(world)
    inode = (out(world, "CDN") / "vid-a.mp4").stat().st_ino
    rename(world, "VID-A", "VID-A2")
    moved(world, "RENAME-A", "VID-A", "VID-A2")
    world.manifests()
    lines: list[str] = []
    where = Workspace(world.manifests_dir, world.media, world.store.path, lock_timeout=5)
    watcher = Watcher(where, WatchOptions(parallel=1), Log(lines.append))
    done = watcher.cycle("test")
    assert done is not None, lines
    assert [j.job_type for j in done.jobs] == ["move"], lines
    assert (out(world, "CDN") / "vid-a.mp4").stat().st_ino == inode
    assert not world.plan().changes
