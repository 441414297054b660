"""The diff: one table test per action kind and per constraint, the guards, and properties."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planning import World, action_of, kinds

from reconciler.observe import sources
from reconciler.plan.actions import PlanError
from reconciler.plan.planner import make_plan
from reconciler.store import hash_cache
from reconciler.store.db import StateStore
from reconciler.store.migrations import all_migrations
from reconciler.store.planning import state_fingerprint


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def simple(world: World) -> World:
    return world.platform("CDN").asset("VID-A", b"first").rule("R", "CDN")


# Each case: build and change the world, then expect (action, reason fragment, source v,
# target v) for the placement (VID-A, CDN).
def case_create(w: World) -> None:
    simple(w)


def case_noop(w: World) -> None:
    simple(w).applied()


def case_content_changed(w: World) -> None:
    simple(w).applied()
    w.write_file("vid-a.mp4", b"second")


def case_title_changed(w: World) -> None:
    simple(w).applied()
    w.asset("VID-A", b"first", title="New title")


def case_metadata_changed(w: World) -> None:
    simple(w).applied()
    w.asset("VID-A", b"first", metadata={"campaign": "autumn"})


def case_transform_added(w: World) -> None:
    simple(w).applied()
    w.rule("R", "CDN", transform_rules={"quality": "720p"})


def case_transform_changed(w: World) -> None:
    simple(w).rule("R", "CDN", transform_rules={"quality": "720p"}).applied()
    w.rule("R", "CDN", transform_rules={"quality": "480p"})


def case_transform_removed(w: World) -> None:
    simple(w).rule("R", "CDN", transform_rules={"quality": "720p"}).applied()
    w.rule("R", "CDN")


def case_transform_for_other_kinds(w: World) -> None:  # resizing images leaves a video alone
    simple(w).applied()
    w.rule("R", "CDN", transform_rules={"resize_images": True, "max_dimension": 800})


def case_platform_disabled(w: World) -> None:
    simple(w).platform("CDN", sync_enabled=False)


def case_format_unsupported(w: World) -> None:
    simple(w).platform("CDN", supported_formats=["image/jpeg"])


def case_too_big(w: World) -> None:
    simple(w).asset("VID-A", b"x" * 2000).platform("CDN", max_file_size_mb=0.001)


def case_open_conflict(w: World) -> None:
    simple(w).applied()
    with w.store.writing() as con:
        con.execute(
            "INSERT INTO sync_conflicts (id, platform_asset_id, conflict_type, "
            "resolution) SELECT 1, id, 'remote_modified', 'pending' FROM platform_assets"
        )


def case_resolved_conflict(w: World) -> None:
    case_open_conflict(w)
    with w.store.writing() as con:
        con.execute("UPDATE sync_conflicts SET resolution = 'use_source'")
        con.execute("UPDATE platform_assets SET sync_status = 'outdated'")


def case_failed_first_sync(w: World) -> None:
    simple(w).applied()
    with w.store.writing() as con:
        con.execute(
            "UPDATE platform_assets SET sync_status = 'failed', synced_version = NULL, "
            "local_checksum = NULL"
        )


def case_failed_update(w: World) -> None:
    simple(w).applied()
    with w.store.writing() as con:
        con.execute("UPDATE platform_assets SET sync_status = 'failed'")


def case_mime_alias(w: World) -> None:
    w.platform("CDN", supported_formats=["video/mov"]).rule("R", "CDN")
    w.asset("VID-A", b"mov", file="clip.mov")


CASES: list[tuple[Callable[[World], None], str, str, int | None, int | None]] = [
    (case_create, "create", "not on the platform yet", 1, None),
    (case_noop, "noop", "in sync", 1, 1),
    (case_content_changed, "update", "content changed", 2, 1),
    (case_title_changed, "update-metadata", "metadata", 1, 1),
    (case_metadata_changed, "update-metadata", "metadata", 1, 1),
    (case_transform_added, "update", "transform rules now apply", 1, 1),
    (case_transform_changed, "update", "the rendition changed", 1, 1),
    (case_transform_removed, "update", "no longer apply: the master itself", 1, 1),
    (case_transform_for_other_kinds, "noop", "in sync", 1, 1),
    (case_platform_disabled, "blocked", "sync_enabled: false", 1, None),
    (
        case_format_unsupported,
        "blocked",
        "video/mp4 is not in the platform's supported_formats",
        1,
        None,
    ),
    (case_too_big, "blocked", "over the platform's max_file_size_mb 0.001", 1, None),
    (case_open_conflict, "held", "1 open conflict", 1, 1),
    (case_resolved_conflict, "update", "the copy is outdated", 1, 1),
    (case_failed_first_sync, "create", "did not complete (status failed)", 1, None),
    (case_failed_update, "update", "the copy is failed", 1, 1),
    (case_mime_alias, "create", "not on the platform yet", 1, None),
]


@pytest.mark.parametrize(
    ("build", "kind", "reason", "source", "target"), CASES, ids=[c[0].__name__[5:] for c in CASES]
)
def test_diff(world: World, build, kind: str, reason: str, source, target) -> None:
    build(world)
    action = action_of(world.plan(), "VID-A", "CDN")
    assert (action.action, action.source_version, action.target_version) == (kind, source, target)
    assert reason in action.reason


def test_unreadable_master_is_blocked(world: World) -> None:
    simple(world)
    manifests = world.manifests()
    (world.media / "vid-a.mp4").unlink()
    action = action_of(make_plan(manifests, world.store), "VID-A", "CDN")
    assert action.action == "blocked"
    assert "cannot read the master file" in action.reason


def test_a_held_placement_does_not_hold_the_others(world: World) -> None:
    simple(world).platform("S3").rule("R2", "S3")
    world.applied()
    world.write_file("vid-a.mp4", b"changed")
    with world.store.writing() as con:
        con.execute(
            "INSERT INTO sync_conflicts (id, platform_asset_id, conflict_type, "
            "resolution) SELECT 1, pa.id, 'remote_deleted', 'pending' FROM "
            "platform_assets pa JOIN sync_platforms sp ON sp.id = pa.platform_id "
            "WHERE sp.platform_code = 'CDN'"
        )
    assert kinds(world.plan()) == {("VID-A", "CDN"): "held", ("VID-A", "S3"): "update"}


def test_pruning(world: World) -> None:
    simple(world).asset("VID-B", b"b")
    world.applied()
    world.remove("Asset", "VID-B")
    assert action_of(world.plan(), "VID-B", "CDN").action == "orphan"
    pruned = action_of(world.plan(prune=True, force=True), "VID-B", "CDN")
    assert pruned.action == "delete" and "pruning is on" in pruned.reason
    world.rule("R", "CDN", prune=True)
    assert action_of(world.plan(force=True), "VID-B", "CDN").action == "delete"


def test_pruning_leaves_copies_it_did_not_make(world: World) -> None:
    simple(world).asset("VID-B", b"b")
    world.applied()
    with world.store.writing() as con:
        con.execute("UPDATE platform_assets SET managed = FALSE")
    world.remove("Asset", "VID-B")
    action = action_of(world.plan(prune=True, force=True), "VID-B", "CDN")
    assert action.action == "orphan" and "not created by this tool" in action.reason


def test_a_platform_no_longer_declared_leaves_orphans(world: World) -> None:
    simple(world).platform("OLD").rule("R-OLD", "OLD")
    world.applied()
    world.remove("SyncRule", "R-OLD").remove("Platform", "OLD")
    action = action_of(world.plan(prune=True, force=True), "VID-A", "OLD")
    assert action.action == "orphan" and "no longer declared" in action.reason


def test_guard_refuses_deletes_when_nothing_is_desired(world: World) -> None:
    simple(world)
    world.applied()
    world.rule("R", "CDN", prune=True, source_category=["nothing-matches"])
    with pytest.raises(PlanError, match="nothing at all is desired"):
        world.plan()
    assert action_of(world.plan(force=True), "VID-A", "CDN").action == "delete"


def test_guard_refuses_too_many_deletes_per_platform(world: World) -> None:
    world.platform("CDN").rule("R", "CDN", sync_mode="selective", prune=True)
    for i in range(12):
        world.asset(f"VID-{i:02d}", f"v{i}".encode())
    world.applied()
    world.rule("R", "CDN", sync_mode="selective", prune=True, include=["VID-0[0-6]"])
    with pytest.raises(PlanError, match="refusing to delete 5 of 12 copies on CDN"):
        world.plan()
    with pytest.raises(PlanError, match="more than --max-delete 4"):
        world.plan(max_delete=4)
    assert world.plan(max_delete=5).summary()["delete"] == 5
    assert world.plan(force=True).summary()["delete"] == 5


def test_selective_include_and_exclude(world: World) -> None:
    world.platform("CDN").rule(
        "R", "CDN", sync_mode="selective", include=["VID-*", "IMG-1"], exclude=["VID-2"]
    )
    for code in ("VID-1", "VID-2", "IMG-1", "IMG-2"):
        world.asset(code)
    assert set(kinds(world.plan())) == {("VID-1", "CDN"), ("IMG-1", "CDN")}


def test_matching_by_category_and_type(world: World) -> None:
    world.platform("CDN").rule("R", "CDN", source_category=["news"], asset_types=["image"])
    world.asset("A", category="news", asset_type="image")
    world.asset("B", category="news", asset_type="video")
    world.asset("C", category="sport", asset_type="image")
    world.asset("D", category="news", asset_type="image", status="inactive")
    assert set(kinds(world.plan())) == {("A", "CDN")}


def test_the_highest_priority_rule_wins_and_ties_go_to_the_first_code(world: World) -> None:
    world.platform("CDN").asset("VID-A")
    world.rule("LOW", "CDN", priority=1).rule("HIGH", "CDN", priority=9)
    assert action_of(world.plan(), "VID-A", "CDN").rule == "HIGH"
    world.rule("HIGH", "CDN", priority=1)
    assert action_of(world.plan(), "VID-A", "CDN").rule == "HIGH"  # tie: H < L
    world.rule("LOW", "CDN", priority=1, is_active=False)
    world.rule("HIGH", "CDN", priority=1, is_active=False)
    assert world.plan().actions == []


def test_versions_go_up_with_content_not_metadata(world: World) -> None:
    simple(world).applied()
    world.asset("VID-A", b"first", title="renamed").applied()
    world.write_file("vid-a.mp4", b"second")
    plan = world.applied()
    assert action_of(plan, "VID-A", "CDN").source_version == 2
    with world.store.reading() as con:
        assert con.execute("SELECT version, title FROM source_assets").fetchall() == [
            (2, "renamed")
        ]


def test_actions_are_ordered_by_rule_priority(world: World) -> None:
    world.platform("A").platform("B").asset("X")
    world.rule("RA", "A", priority=1).rule("RB", "B", priority=7)
    assert [a.platform for a in world.plan().actions] == ["B", "A"]


def test_the_hash_cache_spares_unchanged_files(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "RACY_SECONDS", 0.0)  # utime moves the ctime to now
    simple(world)
    first = world.plan()
    assert first.observed.hashed_files == 1
    os.utime(world.media / "vid-a.mp4", ns=(10**18, 10**18))  # old enough to be cacheable
    world.applied()  # apply records the cache...
    fresh = world.plan().observed.new_cache
    with world.store.writing() as con:
        hash_cache.save(con, fresh)
    again = world.plan()
    assert again.observed.hashed_files == 0
    assert action_of(again, "VID-A", "CDN").action == "noop"


def test_an_older_state_file_is_planned_from_a_copy(world: World) -> None:
    simple(world)
    world.store.path.parent.mkdir(parents=True)
    con = duckdb.connect(str(world.store.path))
    con.execute(all_migrations()[0].sql)
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR, "
        "applied_at TIMESTAMP); INSERT INTO schema_migrations VALUES (1, 'x', now())"
    )
    con.close()
    before = world.store.path.read_bytes()
    assert action_of(world.plan(), "VID-A", "CDN").action == "create"
    assert world.store.path.read_bytes() == before


# -- properties ---------------------------------------------------------------------------------

CATEGORIES = ["news", "sport", "brand"]
TYPES = ["video", "image"]


@st.composite
def worlds(draw: st.DrawFn) -> dict:
    platforms = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "sync_enabled": st.booleans(),
                    "supported_formats": st.sampled_from(["all", ["video/mp4"], ["image/jpeg"]]),
                    "max_file_size_mb": st.sampled_from([None, 0.00002, 5000]),
                }
            ),
            min_size=1,
            max_size=3,
        )
    )
    assets = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "category": st.sampled_from(CATEGORIES),
                    "asset_type": st.sampled_from(TYPES),
                    "size": st.integers(1, 40),
                    "status": st.sampled_from(["active", "active", "inactive"]),
                }
            ),
            min_size=1,
            max_size=6,
        )
    )
    rules = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "platform": st.integers(0, len(platforms) - 1),
                    "source_category": st.one_of(
                        st.just("all"),
                        st.lists(st.sampled_from(CATEGORIES), min_size=1, unique=True),
                    ),
                    "asset_types": st.one_of(
                        st.just("all"), st.lists(st.sampled_from(TYPES), min_size=1, unique=True)
                    ),
                    "priority": st.integers(0, 3),
                    "include": st.sampled_from([None, ["A-0*"], ["A-1", "A-2"]]),
                }
            ),
            min_size=1,
            max_size=4,
        )
    )
    return {"platforms": platforms, "assets": assets, "rules": rules}


def build(world: World, spec: dict) -> None:
    for i, p in enumerate(spec["platforms"]):
        extra = {k: v for k, v in p.items() if v is not None}
        world.platform(f"P-{i}", **extra)
    for i, a in enumerate(spec["assets"]):
        ext = "mp4" if a["asset_type"] == "video" else "jpg"
        world.asset(
            f"A-{i}",
            f"{i}".encode() * a["size"],
            file=f"a{i}.{ext}",
            category=a["category"],
            asset_type=a["asset_type"],
            status=a["status"],
        )
    for i, r in enumerate(spec["rules"]):
        extra = {"sync_mode": "selective", "include": r["include"]} if r["include"] else {}
        world.rule(
            f"R-{i}",
            f"P-{r['platform']}",
            source_category=r["source_category"],
            asset_types=r["asset_types"],
            priority=r["priority"],
            **extra,
        )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_planning_again_after_applying_gives_only_noops(spec: dict) -> None:
    with tempfile.TemporaryDirectory() as folder:
        world = World(Path(folder))
        build(world, spec)
        first = world.applied()
        second = world.plan()
        assert {a.action for a in second.actions} <= {"noop", "blocked"}
        assert kinds(second) == {
            k: ("blocked" if v == "blocked" else "noop") for k, v in kinds(first).items()
        }


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds(), st.data())
def test_changing_one_master_updates_exactly_its_placements(
    spec: dict, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        world = World(Path(folder))
        build(world, spec)
        before = world.applied()
        i = data.draw(st.integers(0, len(spec["assets"]) - 1))
        file = f"a{i}.{'mp4' if spec['assets'][i]['asset_type'] == 'video' else 'jpg'}"
        world.write_file(file, b"new content " * 2)
        after = world.plan()
        for (asset, platform), kind in kinds(after).items():
            was = kinds(before)[(asset, platform)]
            if asset == f"A-{i}" and was != "blocked" and kind != "blocked":
                assert kind == "update", (asset, platform)
            elif kind != "blocked":
                assert kind == "noop", (asset, platform, kind)


def test_two_assets_sharing_one_file_on_one_platform(world: World) -> None:
    world.platform("CDN").rule("R", "CDN").asset("VID-A", b"same", file="clip.mp4")
    world.asset("VID-B", b"same", file="clip.mp4")
    plan = world.plan()
    assert action_of(plan, "VID-A", "CDN").action == "create"
    blocked = action_of(plan, "VID-B", "CDN")
    assert blocked.action == "blocked"
    assert "asset VID-A already sends the same file (clip.mp4)" in blocked.reason


# -- the state fingerprint --------------------------------------------------------------------


def fingerprint_of(rows: list[tuple]) -> str:
    """The fingerprint of a state file holding these platform_assets rows, in this order."""
    with tempfile.TemporaryDirectory() as folder:
        store = StateStore(Path(folder) / "s.duckdb")
        with store.writing() as con:
            for row in rows:
                con.execute(
                    "INSERT INTO platform_assets (id, source_asset_id, platform_id, "
                    "sync_status, local_checksum, remote_checksum) VALUES (?, ?, ?, ?, ?, ?)",
                    list(row),
                )
        with store.reading() as con:
            return state_fingerprint(con)


ROWS = [(1, 1, 1, "synced", "aa", "aa"), (2, 2, 1, "synced", "bb", "bb"), (3, 1, 2, None, "", "")]


def test_the_fingerprint_ignores_row_order() -> None:
    assert fingerprint_of(ROWS) == fingerprint_of(list(reversed(ROWS)))


@pytest.mark.parametrize(
    "changed",
    [
        [(1, 1, 1, "synced", "bb", "bb"), (2, 2, 1, "synced", "aa", "aa"), ROWS[2]],  # a swap
        [ROWS[0], ROWS[1], (3, 1, 2, None, None, "")],  # NULL is not ''
        [ROWS[0], ROWS[1], (3, 1, 2, None, "", None)],  # ...wherever it is
        [ROWS[0], ROWS[1], (3, 1, 2, "|", "", "")],  # no separator to forge
        [ROWS[0], ROWS[1]],  # a row fewer
        [*ROWS, (4, 1, 1, "synced", "aa", "aa")],  # a row more, equal to another but its id
        [(1, 1, 1, "synced", "aa", "ab"), ROWS[1], ROWS[2]],  # one character
    ],
)
def test_the_fingerprint_sees_every_change(changed: list[tuple]) -> None:
    assert fingerprint_of(changed) != fingerprint_of(ROWS)
