"""Attacks on adoption (issue 21): Import documents, `reconcile import`, discovery, Moved
documents and moved_from, and `--dry-run --refresh`. Each test is what an attacker, a
careless colleague, a kill -9, a second process or a lying server does, against the real
drivers (local folders in a temporary folder, moto's S3 on loopback, the loopback fakes).

A test whose docstring names a defect fails on the code it was written against; a test
marked ``# guard`` passes and keeps a property that was checked."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from attack_kit import FAST, out
from planning import World, apply_run, kinds, rows

from reconciler.model import ActionKind


def apply(world: World, **plan_options):
    return apply_run(world, FAST, **plan_options)


def imported(world: World, code: str, asset: str, platform: str, remote_id: str) -> None:
    world._doc("Import", code, {"asset": asset, "platform": platform, "id": remote_id})


def moved(world: World, code: str, old: str, new: str) -> None:
    world._doc("Moved", code, {"from": old, "to": new})


def cdn_world(tmp_path: Path) -> World:
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-A", b"a master " * 100).asset("VID-B", b"b master " * 50)
    return world


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- an Import that names an object another asset's copy already is ------------------------------


def test_an_import_of_another_assets_copy_never_overwrites_it(tmp_path: Path) -> None:
    """An Import whose id is the key of another asset's recorded copy is taken over as an
    outdated copy, and the next reconcile writes the imported asset's bytes over the other
    asset's copy: one object becomes two assets' copies, and an object is overwritten by a
    placement that does not own it."""
    world = cdn_world(tmp_path)
    apply(world)
    b_copy = out(world, "CDN") / "vid-b.mp4"
    before = digest(b_copy)
    world.asset("VID-C", b"c master " * 70)
    imported(world, "IMP-C", "VID-C", "CDN", "vid-b.mp4")
    apply(world)
    apply(world)
    assert digest(b_copy) == before, "VID-B's copy was overwritten by VID-C's bytes"
    owners = rows(
        world,
        "SELECT count(*) FROM platform_assets WHERE remote_key = 'vid-b.mp4' "
        "AND sync_status <> 'deleted'",
    )
    assert owners == [(1,)], "one object is recorded as the copy of two assets"


# -- discovery ------------------------------------------------------------------------------------


def test_discovery_text_never_prints_control_characters_from_object_names(
    tmp_path: Path, run
) -> None:
    """A file on the target named with a carriage return and a newline is printed raw by
    `reconcile import --discover` (discovery_text): whoever can put a file on the platform
    forges lines of the listing (here a fake 'importable' match) that the person reviewing
    discovery reads as the tool's own; names from a platform must be shown escaped, as
    manifests.quoting.printable does for names from disk."""
    world = cdn_world(tmp_path)
    apply(world)
    evil = "x\x1b[2K\rVID-B.mp4\nforged.mp4  1 bytes  sha256 -  VID-A (by sha256): importable"
    (out(world, "CDN") / evil).write_bytes(b"nobody's")
    result = run("import", "--discover", "CDN", *world.cli_args())
    assert result.exit_code == 0, result.output
    assert "\r" not in result.stdout
    lines = result.stdout.splitlines()
    assert len(lines) == 2, lines  # the one unmanaged object, then the summary


def test_discovery_without_a_state_file_creates_none(tmp_path: Path, run) -> None:  # guard
    """Discovery is read-only: with no state yet, it must not create one."""
    world = cdn_world(tmp_path)
    world.manifests()
    out(world, "CDN").mkdir(parents=True)
    (out(world, "CDN") / "vid-a.mp4").write_bytes(b"a master " * 100)
    result = run("import", "--discover", "CDN", *world.cli_args(), "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["importable"] == 1
    assert not world.store.path.exists()
    folder = world.store.path.parent
    assert not folder.exists() or not any(folder.iterdir())


def test_discovery_leaves_the_state_file_byte_for_byte(tmp_path: Path, run) -> None:
    """Discovery is read-only: the state file's bytes and mtime must not change."""
    world = cdn_world(tmp_path)
    apply(world)
    (out(world, "CDN") / "legacy.mp4").write_bytes(b"a master " * 100)
    world.asset("VID-C", b"c master")  # a master discovery hashes for the first time
    world.manifests()
    state = world.store.path
    before = (
        digest(state),
        state.stat().st_mtime_ns,
        sorted(p.name for p in state.parent.iterdir()),
    )
    result = run("import", "--discover", "CDN", *world.cli_args(), "-o", "json")
    assert result.exit_code == 0, result.output
    after = (
        digest(state),
        state.stat().st_mtime_ns,
        sorted(p.name for p in state.parent.iterdir()),
    )
    assert after == before


# -- what an import records ------------------------------------------------------------------------


def test_an_imported_object_stays_unpruned_after_its_update(tmp_path: Path) -> None:  # guard
    """An imported object with other bytes is updated in place; pruning must never delete
    it afterwards (it is still not this tool's)."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN", prune=True)
    world.asset("IMG-A", b"image a").asset("IMG-B", b"image b")
    legacy = out(world, "CDN") / "legacy-a.jpg"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"an older image a")
    imported(world, "IMP-A", "IMG-A", "CDN", "legacy-a.jpg")
    apply(world)
    apply(world)
    assert legacy.read_bytes() == b"image a"
    world.remove("Asset", "IMG-A").remove("Import", "IMP-A")
    apply(world)
    assert legacy.exists(), "pruning deleted an imported object"


def test_a_vimeo_video_that_tells_no_size_is_not_recorded_synced(tmp_path: Path, fake) -> None:
    """A Vimeo video whose answer gives no size (still uploading, or a server that omits it)
    is taken over as synced with no check at all (take_over: 'it exists'): any video of the
    account named by a careless Import, or matched by title alone in discovery, is recorded
    as holding the master's bytes, which the project's first rule forbids."""
    from test_api_drivers import world_for

    world = world_for(tmp_path, fake, "VIMEO")
    world.asset("VID-EDU", b"\x00\x00\x00\x18ftypisom" + b"tutorial " * 300)
    uri = fake.add_vimeo_video(b"a holiday party, not the tutorial", "Holiday")
    fake.uploads[uri.rsplit("/", 1)[1]].size = None
    imported(world, "IMP-V", "VID-EDU", "VIMEO", uri)
    apply(world)
    assert rows(world, "SELECT sync_status FROM platform_assets") != [("synced",)]


# -- moves ---------------------------------------------------------------------------------


def rename(world: World, old: str, new: str) -> None:
    spec = world.docs.pop(("Asset", old))["spec"]
    world._doc("Asset", new, spec)


def test_a_second_rename_keeps_the_first_moved_document_as_the_docs_say(tmp_path: Path) -> None:
    """docs/manifests.md says 'Keep a Moved document after it is applied', but once the asset
    is renamed again (A -> A2 applied, then A2 -> A3) the kept Moved A -> A2 is an error
    ('spec.to: unknown asset VID-A2'): following the docs makes the manifests invalid, and a
    state that has not applied the first move yet (a second environment) can only orphan its
    copies and upload them again. A chain of moves must resolve to the declared code."""
    world = cdn_world(tmp_path)
    apply(world)
    rename(world, "VID-A", "VID-A2")
    moved(world, "RENAME-1", "VID-A", "VID-A2")
    apply(world)
    rename(world, "VID-A2", "VID-A3")
    moved(world, "RENAME-2", "VID-A2", "VID-A3")
    plan = world.plan()  # the manifests (with both Moved documents) must be valid
    assert kinds(plan)[("VID-A3", "CDN")] == ActionKind.MOVED
    assert plan.summary()["create"] == 0


# -- read-only paths ----------------------------------------------------------------------------


def snapshot(world: World, *folders: Path) -> dict[str, tuple[str, int]]:
    files = [world.store.path] + [p for f in folders for p in sorted(f.rglob("*")) if p.is_file()]
    return {str(p): (digest(p), p.stat().st_mtime_ns) for p in files}


def test_a_refreshed_dry_run_changes_no_byte_anywhere(tmp_path: Path, run) -> None:  # guard
    """`--dry-run --refresh` over creates, an import and a move reads the platform only: the
    state file and the target are untouched, byte for byte and mtime for mtime."""
    world = cdn_world(tmp_path)
    apply(world)
    (world.media / "vid-b.mp4").rename(world.media / "moved-b.mp4")
    world.asset("VID-B", b"b master " * 50, file="moved-b.mp4")
    world.asset("VID-C", b"c master")
    (out(world, "CDN") / "vid-c.mp4").write_bytes(b"c master")  # an adopt
    world.asset("VID-D", b"d master")
    (out(world, "CDN") / "old-d.mp4").write_bytes(b"d master")
    imported(world, "IMP-D", "VID-D", "CDN", "old-d.mp4")
    world.manifests()
    before = snapshot(world, out(world, "CDN"))
    result = run("--dry-run", "--refresh", *world.cli_args(), "-o", "json")
    assert result.exit_code in (0, 2), result.output
    actions = {a["asset"]: a["action"] for a in json.loads(result.stdout)["actions"]}
    assert actions == {"VID-A": "noop", "VID-B": "moved", "VID-C": "adopt", "VID-D": "import"}
    assert snapshot(world, out(world, "CDN")) == before


# -- kill -9 during a move ----------------------------------------------------------------

# A real `python -m reconciler` that SIGKILLs itself at one moment of a move (KILL_AT).
KILLER = r"""
import os, runpy, signal, sys
from reconciler.drivers.local_adopt import FolderAdoption
from reconciler.drivers.s3_adopt import BucketAdoption

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

point = os.environ["KILL_AT"]
if point == "before-move":
    FolderAdoption.move = BucketAdoption.move = die
elif point in ("linked", "unlinked"):
    real = os.link if point == "linked" else os.unlink
    def then_die(*args, **kwargs):
        real(*args, **kwargs)
        die()
    setattr(os, "link" if point == "linked" else "unlink", then_die)
elif point == "s3-copied":
    BucketAdoption._remove_source = die
elif point == "s3-removed":
    real = BucketAdoption._remove_source
    def removed_then_die(self, *args, **kwargs):
        real(self, *args, **kwargs)
        die()
    BucketAdoption._remove_source = removed_then_die
elif point == "import-found":
    real_find = FolderAdoption.find
    def found_then_die(self, *args, **kwargs):
        real_find(self, *args, **kwargs)
        die()
    FolderAdoption.find = found_then_die
elif point == "update-landed":
    import reconciler.apply.transfer as transfer
    transfer._landed = die
sys.argv = ["reconcile", *sys.argv[1:]]
runpy.run_module("reconciler", run_name="__main__")
"""


def killed(world: World, point: str) -> None:
    import signal
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", KILLER, *world.cli_args()],
        capture_output=True, text=True, timeout=60, cwd=world.root,
        env={**os.environ, "KILL_AT": point},
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr)


def sent_jobs(world: World) -> list[tuple]:
    return rows(
        world,
        "SELECT job_type, status FROM sync_jobs WHERE job_type NOT IN ('move', 'metadata') "
        "AND created_at > (SELECT min(created_at) FROM sync_jobs WHERE job_type = 'move')",
    )


@pytest.mark.parametrize("point", ["before-move", "linked", "unlinked"])
@pytest.mark.parametrize("renamed", [False, True])
def test_a_local_move_killed_at_any_moment_converges_without_sending(
    tmp_path: Path, point: str, renamed: bool
) -> None:  # guard
    """kill -9 before the move, between the link and the unlink, after the unlink: the next
    plain run finishes the move, with the very file (same inode), nothing sent."""
    from attack_kit import reconcile

    world = cdn_world(tmp_path)
    apply(world)
    inode = (out(world, "CDN") / "vid-a.mp4").stat().st_ino
    (world.media / "vid-a.mp4").rename(world.media / "moved-a.mp4")
    if renamed:
        rename(world, "VID-A", "VID-A2")
        moved(world, "RENAME", "VID-A", "VID-A2")
    code = "VID-A2" if renamed else "VID-A"
    world.asset(code, b"a master " * 100, file="moved-a.mp4")
    world.manifests()
    killed(world, point)
    again = reconcile(world, *world.cli_args())
    assert again.returncode == 0, again.stderr + again.stdout
    assert sorted(p.name for p in out(world, "CDN").iterdir()) == ["moved-a.mp4", "vid-b.mp4"]
    assert (out(world, "CDN") / "moved-a.mp4").stat().st_ino == inode
    assert sent_jobs(world) == []
    assert not world.plan().changes


@pytest.mark.parametrize("point", ["before-move", "s3-copied", "s3-removed"])
def test_an_s3_move_killed_at_any_moment_converges_without_sending(
    tmp_path: Path, s3_endpoint: str, bucket: str, point: str
) -> None:  # guard
    """kill -9 before the server-side copy, between the copy and the delete, after the
    delete: the next plain run finishes the move without an upload or a duplicate."""
    from attack_kit import reconcile
    from test_s3 import client, s3_world

    world = s3_world(tmp_path, s3_endpoint, bucket)
    apply(world)
    (world.media / "vid-small.mp4").rename(world.media / "moved-small.mp4")
    world.asset("VID-SMALL", b"small master " * 10, file="moved-small.mp4")
    world.manifests()
    killed(world, point)
    again = reconcile(world, *world.cli_args())
    assert again.returncode == 0, again.stderr + again.stdout
    s3 = client(s3_endpoint)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert keys == ["masters/moved-small.mp4"]
    assert sent_jobs(world) == []
    assert not world.plan().changes


def test_one_video_named_two_ways_is_not_imported_as_two_assets_copies(
    tmp_path: Path, fake
) -> None:
    """Two Imports naming one Vimeo video by its uri and by its link ('/videos/N' and
    'https://vimeo.com/N') pass validation (AdoptionChecks.imports compares the id strings)
    and both are taken over: one video is recorded as the copy of two assets, so a change of
    either asset's metadata or bytes overwrites the other's copy, and deleting one deletes
    both."""
    from test_api_drivers import world_for

    master = b"\x00\x00\x00\x18ftypisom" + b"tutorial " * 300
    world = world_for(tmp_path, fake, "VIMEO")
    world.asset("VID-EDU", master).asset("VID-EDU-COPY", master, file="copy.mp4")
    uri = fake.add_vimeo_video(master, "Tutorial")
    number = uri.rsplit("/", 1)[1]
    imported(world, "IMP-1", "VID-EDU", "VIMEO", uri)
    imported(world, "IMP-2", "VID-EDU-COPY", "VIMEO", f"https://vimeo.com/{number}")
    try:
        world.manifests()
    except AssertionError as problems:  # refused with file and line: the defect is fixed
        assert "already imported" in str(problems)
        return
    apply(world)
    owners = rows(
        world,
        "SELECT count(*) FROM platform_assets WHERE platform_asset_id = ? "
        "AND sync_status <> 'deleted'",
        [uri],
    )
    assert owners == [(1,)], "one video is recorded as the copy of two assets"


# -- a second process ---------------------------------------------------------------------------

HOLDER = r"""
import sys, time
from pathlib import Path
from reconciler.store.db import StateStore
store = StateStore(Path(sys.argv[1]), lock_timeout=5)
with store.session():
    print("held", flush=True)
    time.sleep(30)
"""


def test_reconcile_import_waits_for_the_run_lock_and_changes_nothing(
    tmp_path: Path,
) -> None:  # guard
    """`reconcile import` while another process holds the run lock: one error line naming the
    holder, exit 1, the state file untouched, no traceback."""
    import subprocess
    import sys

    from attack_kit import reconcile

    world = cdn_world(tmp_path)
    apply(world)
    world.asset("VID-C", b"c master")
    (out(world, "CDN") / "keep-c.mp4").write_bytes(b"c master")
    world.manifests()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(world.store.path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = snapshot(world, out(world, "CDN"))
        done = reconcile(
            world, "import", "VID-C", "CDN", "keep-c.mp4", *world.cli_args(), "--lock-timeout",
            "0.3",
        )  # fmt: skip
        assert done.returncode == 1, done.stdout + done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"locked by pid {holder.pid}" in lines[0], lines
        assert snapshot(world, out(world, "CDN")) == before
    finally:
        holder.kill()
        holder.wait()


def test_discovery_leaves_out_what_an_import_cannot_name(tmp_path: Path, run) -> None:
    """An object whose name holds a control character (U+0085) cannot be named by an Import
    (its schema refuses control characters in ids): `--write` leaves it out, saying so in
    the file, rather than write a document that names another object or fails."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN").asset("VID-A", b"a master")
    out(world, "CDN").mkdir(parents=True)
    (out(world, "CDN") / "\u0085next-line.mp4").write_bytes(b"a master")
    world.manifests()
    written = tmp_path / "imports.yaml"
    found = run("import", "--discover", "CDN", *world.cli_args(), "--write", str(written))
    assert found.exit_code == 0, found.output
    assert not written.exists()  # nothing importable: no file of comments alone
    assert "left out" in found.stderr and "\\u0085" in found.stderr


@pytest.mark.parametrize("name", ["\ufeffbom.mp4", "caf\u00e9 \u2028.mp4"])
def test_discovery_writes_import_documents_that_name_the_very_object(
    tmp_path: Path, run, name: str
) -> None:
    """`--discover --write` writes ids with json.dumps(ensure_ascii=False) (import_documents):
    a U+0085 (NEL) in an object's name is written raw, and YAML folds it into a space, so the
    Import names another object (' next-line.mp4') and fails; a U+FEFF makes the written file
    invalid manifests ('a byte-order mark inside the file'). Reviewed and committed as told,
    the file must import exactly the objects discovery listed."""
    import shutil

    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN").asset("VID-A", b"a master")
    out(world, "CDN").mkdir(parents=True)
    (out(world, "CDN") / name).write_bytes(b"a master")
    world.manifests()
    written = tmp_path / "imports.yaml"
    found = run("import", "--discover", "CDN", *world.cli_args(), "--write", str(written))
    assert found.exit_code == 0, found.output
    shutil.copy(written, world.manifests_dir / "imports.yaml")
    (job,) = apply(world).jobs
    assert (job.job_type, job.status) == ("import", "completed"), job.error
    assert rows(world, "SELECT remote_key, sync_status FROM platform_assets") == [(name, "synced")]


def test_two_masters_that_swap_paths_are_not_called_foreign_objects(tmp_path: Path) -> None:
    """Two masters swap their paths (a.mp4 <-> b.mp4) in one commit: the plan says 'moved'
    for both, and apply fails both moves with 'an object this tool did not make is already at
    b.mp4' and records two foreign_object conflicts, about copies this tool made and records:
    the message is false, and the state never converges without a person resolving
    conflicts. The planner (diff._adopted) must see that the new key is another recorded copy
    moving away, and order the moves (or send), never call its own copy foreign."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-A", b"a master " * 10, file="a.mp4")
    world.asset("VID-B", b"b master " * 10, file="b.mp4")
    apply(world)
    media = world.media
    os.rename(media / "a.mp4", media / "swap")
    os.rename(media / "b.mp4", media / "a.mp4")
    os.rename(media / "swap", media / "b.mp4")
    world.asset("VID-A", b"a master " * 10, file="b.mp4")
    world.asset("VID-B", b"b master " * 10, file="a.mp4")
    apply(world)
    apply(world)
    assert rows(world, "SELECT conflict_type, notes FROM sync_conflicts") == []
    # no key is ever free for a swap: both are blocked, saying so, and nothing is touched
    plan = world.plan()
    assert {a.action for a in plan.actions} == {ActionKind.BLOCKED}
    assert all("swap keys" in a.reason for a in plan.actions), [a.reason for a in plan.actions]
    assert (out(world, "CDN") / "a.mp4").read_bytes() == b"a master " * 10
    assert (out(world, "CDN") / "b.mp4").read_bytes() == b"b master " * 10


def shifted_masters(tmp_path: Path, b_content: bytes) -> World:
    """a.mp4 and b.mp4 synced, then b.mp4 renamed to c.mp4 (its content now ``b_content``)
    and a.mp4 renamed to b.mp4: a chain of keys, each copy going where another still is."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN")
    world.asset("VID-A", b"a master " * 10, file="a.mp4")
    world.asset("VID-B", b"b master " * 10, file="b.mp4")
    apply(world)
    media = world.media
    os.rename(media / "b.mp4", media / "c.mp4")
    os.rename(media / "a.mp4", media / "b.mp4")
    world.asset("VID-A", b"a master " * 10, file="b.mp4")
    world.asset("VID-B", b_content, file="c.mp4")
    return world


def test_a_chain_of_moved_masters_converges_without_conflicts(tmp_path: Path) -> None:
    """b.mp4 moves to c.mp4 while a.mp4 moves to b.mp4: the copy at b moves first, the other
    waits one reconcile for its key to be free; nothing is called foreign, nothing sent."""
    world = shifted_masters(tmp_path, b"b master " * 10)
    first = world.plan()
    assert kinds(first) == {("VID-A", "CDN"): ActionKind.BLOCKED, ("VID-B", "CDN"): "moved"}
    apply(world)
    apply(world)
    assert rows(world, "SELECT count(*) FROM sync_conflicts") == [(0,)]
    assert (out(world, "CDN") / "b.mp4").read_bytes() == b"a master " * 10
    assert (out(world, "CDN") / "c.mp4").read_bytes() == b"b master " * 10
    assert not (out(world, "CDN") / "a.mp4").exists()
    assert not world.plan().changes


def test_a_rename_onto_a_retired_code_with_no_copies_left_is_planned(tmp_path: Path) -> None:
    """VID-B was removed and its copy pruned (the state keeps only its source_assets row);
    renaming VID-A to VID-B with a Moved document then fails the whole plan with 'VID-B
    already has copies of its own in the state', which is false (it has none): no reconcile
    can run at all until the rename is undone. moves.resolve is given the codes the state
    knows, not the codes that hold copies."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN", prune=True)
    world.asset("VID-A", b"a master " * 10).asset("VID-B", b"b master " * 10)
    apply(world)
    world.remove("Asset", "VID-B")
    apply(world)  # VID-B's copy is pruned
    assert sorted(p.name for p in out(world, "CDN").iterdir()) == ["vid-a.mp4"]
    rename(world, "VID-A", "VID-B")
    moved(world, "REUSE-B", "VID-A", "VID-B")
    plan = world.plan()
    assert kinds(plan)[("VID-B", "CDN")] == ActionKind.MOVED


def test_an_imported_object_updated_when_the_run_is_killed_stays_unpruned(tmp_path: Path) -> None:
    """An imported object with other bytes is updated in place; kill -9 after the new bytes
    landed and before they were recorded: recovery (recovery._landed_copy) records the copy as
    this tool's own (managed: an update with no previous key), so pruning later deletes the
    team's object, which an Import must never allow."""
    from attack_kit import reconcile

    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN", prune=True)
    world.asset("IMG-A", b"image a").asset("IMG-B", b"image b")
    legacy = out(world, "CDN") / "legacy-a.jpg"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"an older image a")
    imported(world, "IMP-A", "IMG-A", "CDN", "legacy-a.jpg")
    apply(world)  # taken over, outdated
    world.manifests()
    killed(world, "update-landed")
    assert legacy.read_bytes() == b"image a"
    again = reconcile(world, *world.cli_args())
    assert again.returncode == 0, again.stderr + again.stdout
    world.remove("Asset", "IMG-A").remove("Import", "IMP-A")
    apply(world)
    assert legacy.exists(), "pruning deleted an imported object"


# -- bad input on the command line ----------------------------------------------------------------


def cli(world: World, *args: str):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args, *world.cli_args()],
        capture_output=True, text=True, timeout=60, cwd=world.root, env=dict(os.environ),
    )  # fmt: skip


@pytest.mark.parametrize("platform", ["YOUTUBE", "CDN"])
def test_discovery_on_a_platform_that_cannot_list_is_one_line_not_a_traceback(
    tmp_path: Path, fake, platform: str
) -> None:
    """`reconcile import --discover YOUTUBE` (or a REST platform) prints a Python traceback
    ending in 'PermanentError: the youtube driver cannot list its objects': the driver's
    error escapes adopting.discover and cli/adopt.py uncaught (any DriverError while listing,
    an unreachable bucket too). Bad input must be one clear line and a non-zero exit."""
    from test_api_drivers import world_for

    world = world_for(tmp_path, fake, platform)
    world.asset("VID-A", b"x" * 100)
    world.manifests()
    done = cli(world, "import", "--discover", platform)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines


def test_reconcile_import_of_an_id_that_cannot_be_a_video_id_changes_no_state(
    tmp_path: Path, fake
) -> None:
    """`reconcile import VID-A YOUTUBE ../../etc/passwd`: the id can never be a YouTube
    video id, yet a state file is made with a pending copy and a failed import job (exit 3,
    'not everything was done'): bad input must be refused before anything is written, as an
    unknown platform is."""
    from test_api_drivers import world_for

    world = world_for(tmp_path, fake, "YOUTUBE")
    world.asset("VID-A", b"x" * 100)
    world.manifests()
    done = cli(world, "import", "VID-A", "YOUTUBE", "../../etc/passwd")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "is not a YouTube video id" in done.stdout + done.stderr
    assert not world.store.path.exists()


def test_an_import_naming_another_object_than_the_recorded_copy_is_not_silently_ignored(
    tmp_path: Path,
) -> None:
    """An Import for a placement that already has a recorded copy at another object (the
    team's legacy.mp4, while the tool's copy is vid-a.mp4) is dropped without a word
    (diff._imported runs only for a create): the plan says 'in sync', the declared object
    is never looked at, and the team believes its object is the asset's copy. A declared
    document that does nothing must be a note of the plan, as an Import no rule wants is."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN").asset("VID-A", b"a master")
    apply(world)
    (out(world, "CDN") / "legacy.mp4").write_bytes(b"a master")
    imported(world, "IMP-LEGACY", "VID-A", "CDN", "legacy.mp4")
    plan = world.plan()
    assert [n for n in plan.notes if "IMP-LEGACY" in n], plan.notes


def test_reconcile_import_on_a_blocked_placement_does_not_claim_a_recorded_copy(
    tmp_path: Path, run
) -> None:
    """`reconcile import` for a placement the plan blocks (the platform has sync_enabled:
    false) says 'VID-A on CDN has a recorded copy already (the platform has sync_enabled:
    false)', which is false: nothing is recorded (adopting._the_import treats every action
    that is not an import as an existing copy). The message must say why it cannot import."""
    world = World(tmp_path).platform("CDN", sync_enabled=False).rule("TO-CDN", "CDN")
    world.asset("VID-A", b"a master")
    out(world, "CDN").mkdir(parents=True)
    (out(world, "CDN") / "legacy.mp4").write_bytes(b"a master")
    world.manifests()
    done = run("import", "VID-A", "CDN", "legacy.mp4", *world.cli_args())
    assert done.exit_code == 1
    assert "sync_enabled" in done.stderr
    assert "recorded copy already" not in done.stderr, done.stderr
    assert not world.store.path.exists()


def test_an_import_killed_while_it_checks_the_object_converges_without_sending(
    tmp_path: Path,
) -> None:  # guard
    """kill -9 while the import job looks at the object: the next plain run takes it over,
    the very file (same inode), nothing uploaded, the copy not this tool's."""
    from attack_kit import reconcile

    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN").asset("IMG-A", b"image a")
    legacy = out(world, "CDN") / "legacy" / "a.jpg"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"image a")
    inode = legacy.stat().st_ino
    imported(world, "IMP-A", "IMG-A", "CDN", "legacy/a.jpg")
    world.manifests()
    killed(world, "import-found")
    again = reconcile(world, *world.cli_args())
    assert again.returncode == 0, again.stderr + again.stdout
    assert legacy.stat().st_ino == inode
    assert sorted(str(p.relative_to(out(world, "CDN"))) for p in out(world, "CDN").rglob("*")) == [
        "legacy",
        "legacy/a.jpg",
    ]
    assert rows(world, "SELECT sync_status, remote_key, managed FROM platform_assets") == [
        ("synced", "legacy/a.jpg", False)
    ]
    assert not world.plan().changes


def test_a_fifo_named_by_an_import_never_blocks_a_refresh_or_an_apply(tmp_path: Path) -> None:
    # guard
    """An Import naming a FIFO in the target: `--dry-run --refresh` and the apply finish
    (no open blocks), the import fails saying so, and nothing is recorded synced."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN").asset("IMG-A", b"image a")
    out(world, "CDN").mkdir(parents=True)
    os.mkfifo(out(world, "CDN") / "pipe.jpg")
    imported(world, "IMP-A", "IMG-A", "CDN", "pipe.jpg")
    world.manifests()
    dry = cli(world, "--dry-run", "--refresh")
    assert dry.returncode == 0 and "Traceback" not in dry.stderr, dry.stderr
    done = cli(world)
    assert done.returncode == 3 and "not a regular file" in done.stdout, done.stdout
    assert rows(world, "SELECT sync_status FROM platform_assets") == [("pending",)]


def test_discovery_lists_an_object_at_the_key_of_a_copy_that_was_deleted(
    tmp_path: Path, run
) -> None:  # guard
    """VID-B's copy was pruned (recorded 'deleted'); the team then puts its own file at that
    key: discovery lists it, and counts only the live copy as recorded."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN", prune=True)
    world.asset("VID-A", b"a master").asset("VID-B", b"b master")
    apply(world)
    world.remove("Asset", "VID-B")
    apply(world)
    assert not (out(world, "CDN") / "vid-b.mp4").exists()
    (out(world, "CDN") / "vid-b.mp4").write_bytes(b"the team's own file")
    world.manifests()
    found = run("import", "--discover", "CDN", *world.cli_args(), "-o", "json")
    assert found.exit_code == 0, found.output
    listed = json.loads(found.stdout)
    assert [o["id"] for o in listed["objects"]] == ["vid-b.mp4"]
    assert listed["managed"] == 1


def test_discovery_never_offers_another_platforms_copy_for_import(tmp_path: Path, run) -> None:
    """Two platforms whose places overlap (a bucket's root and its archive/ prefix; here a
    folder and its archive/ subfolder, which validation accepts): discovery on the outer
    one offers the inner platform's recorded copy as 'importable' (adopting.discover only
    leaves out what this platform's copies record), and the written Import makes one object
    the copy of two platforms: an update through one overwrites the other's copy, a prune
    of one deletes the other's."""
    world = World(tmp_path).platform("ARCHIVE", target="../out/cdn/archive")
    world.platform("CDN").rule("TO-ARCHIVE", "ARCHIVE").asset("VID-A", b"a master")
    apply(world)
    assert (out(world, "CDN") / "archive" / "vid-a.mp4").exists()
    world.rule("TO-CDN", "CDN")  # now CDN wants VID-A too
    world.manifests()
    found = run("import", "--discover", "CDN", *world.cli_args(), "-o", "json")
    assert found.exit_code == 0, found.output
    listed = json.loads(found.stdout)
    offered = [o["id"] for o in listed["objects"] if o["importable"]]
    assert offered == [], "another platform's recorded copy is offered for import"


def test_an_object_imported_at_its_own_key_stays_unpruned_after_its_update(
    tmp_path: Path,
) -> None:
    """An Import whose id is the very key the asset's copy would have (vid-a.mp4), holding
    older bytes: taken over as outdated, then updated where it is, and the update records it
    as this tool's (transfer.synced: managed when the job's key is the derived key), so a
    prune deletes the team's object. The same holds on every REST and video platform, where
    an imported copy is always recorded at the derived key."""
    world = World(tmp_path).platform("CDN").rule("TO-CDN", "CDN", prune=True)
    world.asset("VID-A", b"a master").asset("VID-B", b"b master")
    legacy = out(world, "CDN") / "vid-a.mp4"
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"the team's older cut")
    imported(world, "IMP-A", "VID-A", "CDN", "vid-a.mp4")
    apply(world)
    apply(world)
    assert legacy.read_bytes() == b"a master"
    assert rows(
        world, "SELECT DISTINCT managed FROM platform_assets WHERE remote_key = 'vid-a.mp4'"
    ) == [(False,)]
    world.remove("Asset", "VID-A").remove("Import", "IMP-A")
    apply(world)
    assert legacy.exists(), "pruning deleted an imported object"


def test_a_rest_object_imported_and_updated_stays_unpruned(tmp_path: Path, fake) -> None:
    """A REST object imported with other bytes is updated (the API makes a new object and the
    imported one is deleted); the new copy is recorded as this tool's (managed), so a later
    prune deletes the asset's only copy on a platform where the team's object was imported:
    'pruning never deletes an imported object' does not survive one update."""
    from test_api_drivers import world_for

    world = world_for(tmp_path, fake, "CDN")
    world.remove("SyncRule", "R").rule("R", "CDN", prune=True)
    world.asset("VID-A", b"x" * 100).asset("VID-B", b"y" * 50)
    fake.objects["legacy-1"] = {"id": "legacy-1", "sha256": hashlib.sha256(b"old").hexdigest(),
                                "size": 3, "data": b"old", "key": "", "metadata": {}}  # fmt: skip
    imported(world, "IMP-A", "VID-A", "CDN", "legacy-1")
    apply(world)
    apply(world)
    managed = rows(
        world,
        "SELECT DISTINCT managed FROM platform_assets pa JOIN source_assets sa "
        "ON sa.id = pa.source_asset_id WHERE sa.asset_code = 'VID-A'",
    )
    assert managed == [(False,)]


def test_a_saved_adopt_never_overwrites_what_replaced_the_bytes_since(
    tmp_path: Path, run
) -> None:  # guard
    """`--dry-run --refresh --out p.json` plans an adopt of the very bytes at the key; then a
    colleague replaces that file with other bytes: `apply p.json` leaves their file alone."""
    world = cdn_world(tmp_path)
    out(world, "CDN").mkdir(parents=True)
    (out(world, "CDN") / "vid-a.mp4").write_bytes(b"a master " * 100)
    world.manifests()
    saved = tmp_path / "p.json"
    dry = run("--dry-run", "--refresh", *world.cli_args(), "--out", str(saved))
    assert dry.exit_code in (0, 2), dry.output
    actions = {a["asset"]: a["action"] for a in json.loads(saved.read_text())["actions"]}
    assert actions == {"VID-A": "adopt", "VID-B": "create"}
    (out(world, "CDN") / "vid-a.mp4").write_bytes(b"a colleague's file")
    run("apply", str(saved), *world.cli_args())
    assert (out(world, "CDN") / "vid-a.mp4").read_bytes() == b"a colleague's file"
    assert rows(
        world,
        "SELECT pa.sync_status FROM platform_assets pa JOIN source_assets sa "
        "ON sa.id = pa.source_asset_id WHERE sa.asset_code = 'VID-A'",
    ) != [("synced",)]
