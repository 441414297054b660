"""The diff: rows of desired placements and recorded copies in, one action per placement out.

Pure and table-testable: :func:`diff` takes the rows that the planning SQL
(:mod:`reconciler.store.planning`) yields and the per-object details of
:mod:`reconciler.plan.desired`, and returns actions; it runs no SQL, touches no file and no
platform. The joins (rule matching, priority, constraints, comparison with the recorded
state) were done by the store; here each row becomes an :class:`Action` with its kind, its
reason sentence and its :class:`~reconciler.plan.actions.Reason` code, a changed rendition
turns into an update, and two placements that would share one remote key are told apart.

Called by :mod:`reconciler.plan.planner` (for a plan) and :mod:`reconciler.plan.explain`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from typing import Any

from reconciler.model import ActionKind, SyncStatus
from reconciler.plan import keys
from reconciler.plan.actions import KINDS, Action, Reason, remote_key
from reconciler.plan.desired import BYTES_PER_MB, Desired, DesiredAsset
from reconciler.transforms.recipe import Recipe

# A desired placement: asset, platform, rule, priority, blocked, file_owner, pa_id,
# sync_status, synced_version, same_content, open_conflicts, source_version, action,
# recorded_rendition, recorded_code, recorded_key, managed (see
# reconciler.store.planning.placement_rows).
PlacementRow = tuple[Any, ...]
# A recorded copy nothing desires: asset, platform, pa_id, rule, managed, synced_version,
# version, size, checksum, file, mime, platform_declared, rule_prunes, priority, remote_key
# (see reconciler.store.planning.orphan_rows).
OrphanRow = tuple[Any, ...]

_HELD = "open conflict{s} on this copy; resolve with `reconcile conflicts resolve`"
# blocked_by (the SQL's code for a blocked placement) -> its Reason
_BLOCKED = {
    "unreadable": Reason.MASTER_UNREADABLE,
    "shared-file": Reason.SHARED_FILE,
    "disabled": Reason.PLATFORM_DISABLED,
    "format": Reason.FORMAT_UNSUPPORTED,
    "size": Reason.TOO_LARGE,
}


def diff(
    placements: Iterable[PlacementRow],
    orphans: Iterable[OrphanRow],
    desired: Desired,
    prune_all: bool = False,
) -> list[Action]:
    """Desired placements + recorded copies nobody desires -> actions, highest rule priority
    first. ``placements`` is read to its end before ``orphans`` is touched."""
    actions = []
    moved_keys: dict[tuple[str, str], Action] = {}  # copies not at their derived key
    for row in placements:
        action = _desired_action(row, desired)
        actions.append(action)
        recorded_key = row[15]
        if recorded_key is not None and recorded_key != derived_key(action):
            moved_keys[(action.platform, recorded_key)] = action
    keys.block_shared_keys(actions)
    left, held = [], {}
    for row in orphans:
        orphan = _orphan_action(row, prune_all)
        left.append(orphan)
        if row[14] is not None:
            held[(orphan.platform, row[14])] = orphan
    keys.settle(actions, moved_keys, held, desired.key_paths, desired.overlaps)
    if left:
        actions += left
        actions.sort(
            key=lambda a: (-(a.priority if a.priority is not None else -1), a.platform, a.asset)
        )
    return actions


def _desired_action(row: PlacementRow, desired: Desired) -> Action:
    (
        asset_code,
        platform,
        rule_code,
        priority,
        blocked,
        file_owner,
        pa_id,
        status,
        synced_version,
        same_content,
        open_conflicts,
        source_version,
        kind_name,
        recorded_rendition,
        recorded_code,
        recorded_key,
        managed,
    ) = row
    asset = desired.assets[asset_code]
    rule = desired.rules[rule_code]
    book = desired.recipes
    recipe = (
        book.recipe(rule_code, platform, asset.mime, asset.source.asset_type)
        if book and rule.transform_rules
        else None
    )
    rendition = recipe.rendition_id(asset.checksum) if recipe and asset.checksum else None
    kind = KINDS[kind_name]
    if kind in (ActionKind.NOOP, ActionKind.UPDATE_METADATA) and rendition != recorded_rendition:
        kind = ActionKind.UPDATE
        code, reason = _rendition_reason(rendition, recorded_rendition)
    elif kind == ActionKind.BLOCKED:
        code = _BLOCKED[blocked]
        reason = _blocked_reason(blocked, asset, desired, platform, file_owner)
    else:
        code, reason = _recorded_reason(kind, pa_id, status, same_content, open_conflicts)
    # positional: 300,000 actions are built here on a large library
    action = Action(
        kind,
        asset_code,
        platform,
        rule_code,
        reason,
        source_version,
        synced_version,
        asset.size_bytes,
        asset.checksum,
        asset.mime,
        asset.file,
        asset.path,
        priority,
        pa_id,
        asset.metadata_hash,
        rule.transform_hash,
        rule.transform_rules,
        None,
        None,
        rendition,
        recipe.description if recipe is not None else None,
        _suffix(recipe, asset.file),
        blocked if kind == ActionKind.BLOCKED else None,
        code,
    )
    if recorded_code != asset_code or (
        recorded_key is not None and managed and recorded_key != derived_key(action)
    ):
        _adopted(action, recorded_code, recorded_key, managed)
    if desired.imports:
        _imported(action, desired, managed and synced_version is not None)
    return action


def derived_key(action: Action) -> str:
    """:func:`remote_key` of a desired placement, without a path object in the common case
    (no rendition of another type): this runs for every recorded copy of a library."""
    return action.file if action.rendition_suffix is None and action.file else remote_key(action)


def _adopted(action: Action, recorded_code: str, recorded_key: str | None, managed: bool) -> None:
    """A copy recorded under the asset's earlier code, or at another key than its master's
    path gives now (the master moved; only a copy this tool made is at a key it derived):
    when its bytes are still the desired ones, it moves instead of being sent again."""
    renamed = recorded_code != action.asset
    key = remote_key(action)
    moved_key = recorded_key is not None and managed and recorded_key != key
    if renamed:
        action.moved_from = recorded_code
    if action.action not in (ActionKind.NOOP, ActionKind.UPDATE_METADATA):
        return
    if not renamed and not moved_key:
        return
    action.metadata_changed = action.action == ActionKind.UPDATE_METADATA
    action.action = ActionKind.MOVED
    if moved_key:
        action.previous_key = recorded_key
    if renamed and moved_key:
        action.reason_code = Reason.RENAMED
        action.reason = f"renamed from {recorded_code}; the copy moves from {recorded_key} to {key}"
    elif renamed:
        action.reason_code = Reason.RENAMED
        action.reason = f"renamed from {recorded_code}; the copy stays as it is"
    else:
        action.reason_code = Reason.MASTER_MOVED
        action.reason = f"the master moved: the copy moves from {recorded_key} to {key}"
    if action.metadata_changed:
        action.reason += "; its metadata changed too"


def _imported(action: Action, desired: Desired, uploaded: bool) -> None:
    """A placement never synced that an Import names: the object on the platform is checked
    and taken over instead of being uploaded. ``uploaded``: the placement's copy is one this
    tool sent, so the Import was never applied; the action keeps the Import's id, which the
    planner notes."""
    declared = desired.imports.get((action.asset, action.platform))
    if declared is None:
        return
    if uploaded:
        action.import_id = declared.remote_id
    if action.action != ActionKind.CREATE or action.target_version is not None:
        return
    action.action = ActionKind.IMPORT
    action.import_id = declared.remote_id
    action.reason_code = Reason.IMPORT_DECLARED
    action.reason = f"Import {declared.code}: take over {declared.remote_id!r} on the platform"


def _rendition_reason(rendition: str | None, recorded: str | None) -> tuple[Reason, str]:
    """Why a placement whose recorded copy is another rendition is an update."""
    if rendition and recorded:
        return (
            Reason.RENDITION_CHANGED,
            "the rendition changed: new transform rules or transform code",
        )
    if rendition:
        return Reason.TRANSFORMS_ADDED, "transform rules now apply"
    return Reason.TRANSFORMS_REMOVED, "transform rules no longer apply: the master itself goes up"


def _recorded_reason(
    kind: ActionKind, pa_id: int | None, status: str | None, same_content: bool, conflicts: int
) -> tuple[Reason, str]:
    """Why the SQL's verdict on a placement that is not blocked is what it is."""
    if kind == ActionKind.NOOP:
        return Reason.IN_SYNC, "in sync"
    if kind == ActionKind.CREATE:
        if pa_id is None or status == SyncStatus.DELETED:
            return Reason.NOT_ON_PLATFORM, "not on the platform yet"
        return Reason.SYNC_INCOMPLETE, f"the last sync did not complete (status {status})"
    if kind == ActionKind.UPDATE:
        if not same_content:
            return Reason.CONTENT_CHANGED, "the master's content changed"
        return Reason.COPY_NOT_SYNCED, f"the copy is {status}"
    if kind == ActionKind.UPDATE_METADATA:
        return Reason.METADATA_CHANGED, "metadata or transform rules changed; the content did not"
    return Reason.CONFLICT_OPEN, f"{conflicts} " + _HELD.format(s="s" if conflicts > 1 else "")


def _suffix(recipe: Recipe | None, file: str) -> str | None:
    if recipe is None:
        return None
    master = posixpath.splitext(file)[1]  # a string op: this runs once per placement
    suffix = recipe.suffix(master)
    return suffix if suffix != master else None


def _blocked_reason(
    why: str, asset: DesiredAsset, desired: Desired, platform: str, owner: str
) -> str:
    if why == "unreadable":
        return f"cannot read the master file: {asset.observe_error}"
    if why == "shared-file":
        return (
            f"asset {owner} already sends the same file ({asset.file}) to this platform; "
            "a platform holds one copy per file"
        )
    if why == "disabled":
        return "the platform has sync_enabled: false"
    if why == "format":
        accepted = ", ".join(desired.formats.get(platform) or [])
        return f"{asset.mime} is not in the platform's supported_formats ({accepted})"
    size_mb = (asset.size_bytes or 0) / BYTES_PER_MB
    return (
        f"the file is {size_mb:,.1f} MB, over the platform's max_file_size_mb "
        f"{desired.max_file_size_mb.get(platform) or 0:g}"
    )


def _orphan_action(row: OrphanRow, prune_all: bool) -> Action:
    (
        asset,
        platform,
        pa_id,
        rule,
        managed,
        synced_version,
        version,
        size,
        checksum,
        file,
        mime,
        platform_declared,
        rule_prunes,
        priority,
        _remote_key,
    ) = row
    kind, code, reason = _orphan_verdict(platform_declared, prune_all or rule_prunes, managed)
    return Action(
        action=kind,
        asset=asset,
        platform=platform,
        rule=rule,
        reason=reason,
        source_version=version,
        target_version=synced_version,
        size_bytes=size,
        checksum=checksum,
        mime_type=mime,
        file=file,
        priority=priority,
        platform_asset_id=pa_id,
        reason_code=code,
    )


def _orphan_verdict(declared: bool, pruning: bool, managed: bool) -> tuple[ActionKind, Reason, str]:
    """A recorded copy nothing desires is deleted only when pruning is on and this tool made
    it; otherwise it is left alone, saying why."""
    if not declared:
        return (
            ActionKind.ORPHAN,
            Reason.PLATFORM_UNDECLARED,
            "the platform is no longer declared; left alone",
        )
    if pruning and managed:
        return ActionKind.DELETE, Reason.PRUNED, "no longer desired, and pruning is on"
    if pruning:
        return (
            ActionKind.ORPHAN,
            Reason.UNMANAGED,
            "no longer desired, but not created by this tool: left alone",
        )
    return ActionKind.ORPHAN, Reason.PRUNING_OFF, "no longer desired; left alone (pruning is off)"
