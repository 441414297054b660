"""The diff as a pure function: rows of desired placements and recorded copies in, actions
with their kind, sentence and reason code out (no state file, no SQL, no media)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler.model import ActionKind
from reconciler.plan.actions import Plan, Reason
from reconciler.plan.desired import Desired, DesiredAsset, DesiredRule
from reconciler.plan.diff import diff


def desired(*codes: str, file: str | None = None) -> Desired:
    out = Desired(formats={"P": ["image/jpeg"]}, max_file_size_mb={"P": 1.0})
    for code in codes:
        out.assets[code] = DesiredAsset(
            code=code,
            file=file or f"{code.lower()}.mp4",
            path=f"/media/{code.lower()}.mp4",
            mime="video/mp4",
            size_bytes=3 * 1024 * 1024,
            checksum="c" * 64,
            observe_error=None,
            metadata_hash="m",
            source=None,  # read only when a rule has transform rules
        )
    out.rules["R"] = DesiredRule("R", {}, "t")
    return out


def placement(asset: str = "A", action: str = "create", **row: Any) -> tuple[Any, ...]:
    values = {
        "blocked": None,
        "pa_id": None,
        "status": None,
        "synced_version": None,
        "same_content": False,
        "open_conflicts": 0,
        "source_version": 1,
        "recorded_rendition": None,
        "recorded_code": asset,
        "recorded_key": None,
        "managed": False,
        **row,
    }
    return (
        asset, "P", "R", 5, values["blocked"], asset, values["pa_id"], values["status"],
        values["synced_version"], values["same_content"], values["open_conflicts"],
        values["source_version"], action, values["recorded_rendition"],
        values["recorded_code"], values["recorded_key"], values["managed"],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("row", "kind", "code", "reason"),
    [
        (placement(), "create", Reason.NOT_ON_PLATFORM, "not on the platform yet"),
        (
            placement(pa_id=7, status="failed"),
            "create",
            Reason.SYNC_INCOMPLETE,
            "the last sync did not complete (status failed)",
        ),
        (placement(action="noop", pa_id=7), "noop", Reason.IN_SYNC, "in sync"),
        (
            placement(action="update", pa_id=7),
            "update",
            Reason.CONTENT_CHANGED,
            "the master's content changed",
        ),
        (
            placement(action="update", pa_id=7, same_content=True, status="outdated"),
            "update",
            Reason.COPY_NOT_SYNCED,
            "the copy is outdated",
        ),
        (
            placement(action="update-metadata", pa_id=7),
            "update-metadata",
            Reason.METADATA_CHANGED,
            "metadata or transform rules changed; the content did not",
        ),
        (
            placement(action="noop", pa_id=7, recorded_rendition="r1"),
            "update",
            Reason.TRANSFORMS_REMOVED,
            "transform rules no longer apply: the master itself goes up",
        ),
        (
            placement(action="held", pa_id=7, open_conflicts=2),
            "held",
            Reason.CONFLICT_OPEN,
            "2 open conflicts on this copy; resolve with `reconcile conflicts resolve`",
        ),
        (
            placement(action="blocked", blocked="disabled"),
            "blocked",
            Reason.PLATFORM_DISABLED,
            "the platform has sync_enabled: false",
        ),
        (
            placement(action="blocked", blocked="format"),
            "blocked",
            Reason.FORMAT_UNSUPPORTED,
            "video/mp4 is not in the platform's supported_formats (image/jpeg)",
        ),
        (
            placement(action="blocked", blocked="size"),
            "blocked",
            Reason.TOO_LARGE,
            "the file is 3.0 MB, over the platform's max_file_size_mb 1",
        ),
    ],
)
def test_diff_should_say_why_each_placement_is_planned_so(
    row: tuple[Any, ...], kind: str, code: Reason, reason: str
) -> None:
    (action,) = diff([row], [], desired("A"))
    assert (action.action, action.reason_code, action.reason) == (kind, code, reason)
    assert isinstance(action.action, ActionKind)


SYNCED = {"pa_id": 7, "status": "synced", "synced_version": 1, "same_content": True}


@pytest.mark.parametrize(
    ("row", "kind", "code", "reason", "moved_from", "previous_key"),
    [
        (  # a rename whose copy is where it was
            placement(action="noop", recorded_code="OLD", recorded_key="a.mp4", managed=True,
                      **SYNCED),
            "moved", Reason.RENAMED, "renamed from OLD; the copy stays as it is", "OLD", None,
        ),
        (  # a rename whose master moved too
            placement(action="noop", recorded_code="OLD", recorded_key="old.mp4", managed=True,
                      **SYNCED),
            "moved", Reason.RENAMED,
            "renamed from OLD; the copy moves from old.mp4 to a.mp4", "OLD", "old.mp4",
        ),
        (  # the master moved; the code stays
            placement(action="noop", recorded_key="old.mp4", managed=True, **SYNCED),
            "moved", Reason.MASTER_MOVED,
            "the master moved: the copy moves from old.mp4 to a.mp4", None, "old.mp4",
        ),
        (  # a moved master whose metadata changed: one job does both
            placement(action="update-metadata", recorded_key="old.mp4", managed=True, **SYNCED),
            "moved", Reason.MASTER_MOVED,
            "the master moved: the copy moves from old.mp4 to a.mp4; its metadata changed too",
            None, "old.mp4",
        ),
        (  # renamed, and the content changed: an update of the recorded copy
            placement(action="update", recorded_code="OLD", recorded_key="a.mp4", managed=True,
                      pa_id=7, synced_version=1),
            "update", Reason.CONTENT_CHANGED, "the master's content changed", "OLD", None,
        ),
        (  # an imported (or adopted) object keeps the key it has
            placement(action="noop", recorded_key="legacy/a.mp4", managed=False, **SYNCED),
            "noop", Reason.IN_SYNC, "in sync", None, None,
        ),
    ],
)  # fmt: skip
def test_diff_should_move_a_copy_instead_of_sending_it_again(
    row: tuple[Any, ...],
    kind: str,
    code: Reason,
    reason: str,
    moved_from: str | None,
    previous_key: str | None,
) -> None:
    (action,) = diff([row], [], desired("A"))
    assert (action.action, action.reason_code, action.reason) == (kind, code, reason)
    assert (action.moved_from, action.previous_key) == (moved_from, previous_key)


def test_diff_should_import_a_placement_never_synced_that_an_import_names() -> None:
    from reconciler.model import Import

    wanted = desired("A", "B", "C")
    wanted.imports = {(c, "P"): Import(f"I-{c}", c, "P", f"legacy/{c}") for c in "ABC"}
    rows = [
        placement("A"),
        placement("B", pa_id=7, status="failed"),  # an import that did not finish
        placement("C", action="update", pa_id=8, status="outdated", synced_version=1),
    ]
    actions = {a.asset: a for a in diff(rows, [], wanted)}
    assert actions["A"].action == actions["B"].action == ActionKind.IMPORT
    assert (actions["A"].import_id, actions["A"].reason_code) == ("legacy/A", "import_declared")
    assert actions["C"].action == ActionKind.UPDATE  # imported with other bytes: updated


def orphan(declared: bool = True, managed: bool = True, prunes: bool = False) -> tuple[Any, ...]:
    return ("GONE", "P", 9, "R", managed, 1, 1, 10, "c", "gone.mp4", "video/mp4", declared,
            prunes, 5, "gone.mp4")  # fmt: skip


@pytest.mark.parametrize(
    ("row", "prune_all", "kind", "code"),
    [
        (orphan(), False, "orphan", Reason.PRUNING_OFF),
        (orphan(), True, "delete", Reason.PRUNED),
        (orphan(prunes=True), False, "delete", Reason.PRUNED),
        (orphan(managed=False), True, "orphan", Reason.UNMANAGED),
        (orphan(declared=False), True, "orphan", Reason.PLATFORM_UNDECLARED),
    ],
)
def test_diff_should_delete_an_orphan_only_when_pruning_a_copy_it_made(
    row: tuple[Any, ...], prune_all: bool, kind: str, code: Reason
) -> None:
    (action,) = diff([], [row], desired(), prune_all=prune_all)
    assert (action.action, action.reason_code, action.platform_asset_id) == (kind, code, 9)


def test_diff_should_block_the_second_placement_of_one_remote_key() -> None:
    rows = [placement("B"), placement("A")]
    actions = {a.asset: a for a in diff(rows, [], desired("A", "B", file="same.mp4"))}
    assert actions["A"].action == "create"
    assert (actions["B"].action, actions["B"].blocked_by) == ("blocked", "shared-key")
    assert actions["B"].reason_code == Reason.SHARED_KEY


def test_diff_should_return_nothing_for_nothing() -> None:
    assert diff([], [], desired()) == []


def test_a_plan_file_without_reason_codes_still_loads() -> None:
    """reason_code is a new key of each action: plan files written before it load, with no
    code, and one of a kind this reconcile does not know is never a change."""
    actions = diff([placement()], [], desired("A"))
    plan = Plan(actions, "s", False, "f", "m", "r", "2026-12-01T00:00:00Z")
    data = json.loads(json.dumps(plan.to_dict()))
    assert data["actions"][0]["reason_code"] == "not_on_platform"
    assert data["summary"]["create"] == 1
    del data["actions"][0]["reason_code"]
    data["actions"].append({**data["actions"][0], "action": "rename"})
    (loaded,) = Plan.from_dict(data).actions
    assert (loaded.action, loaded.reason_code) == (ActionKind.CREATE, None)
    assert loaded.reason == "not on the platform yet"
