"""Second round of attacks on adoption (issue 21): what the fixes of the first round left
open. Each test names a defect and fails on the code it was written against; a test marked
``# guard`` passes and keeps a property that was checked."""

from __future__ import annotations

import os
from pathlib import Path

from attack_kit import out
from planning import World, kinds, rows
from test_attacks_adoption import apply, cdn_world, imported, moved, rename

from reconciler.model import ActionKind

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
