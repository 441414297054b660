"""Who holds which key on a platform, and which actions may write there: a platform holds
one object per key, and a copy never goes over another.

Called by :func:`reconciler.plan.diff.diff` once every action is made (pure: no SQL, no
platform). Three rules, each blocking the action that would break it, with a true reason:

* two desired placements whose copies would have one key: the one that has a copy, else the
  first code, keeps it (``shared-key``);
* an action that writes at a key another recorded copy holds (a copy no longer desired, a
  copy imported at that key, another asset's copy that stays) is blocked (``shared-key``);
  one whose key another copy is leaving in this run (it moves, or its update goes to a new
  key) waits for the next reconcile, and copies that would swap keys are blocked for good,
  saying so (``key-held``);
* an import of an object at a key (folders and buckets) that another action of the plan
  writes, or that another recorded copy holds, is blocked (``shared-key``).
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.model import ActionKind
from reconciler.plan.actions import Action, Reason, remote_key

Held = Mapping[tuple[str, str], Action]  # (platform, recorded key) -> the copy's action
# the kinds that write at the placement's key (an update may go to a new one)
WRITERS = frozenset({ActionKind.CREATE, ActionKind.UPDATE, ActionKind.ADOPT, ActionKind.MOVED})


def block_shared_keys(actions: list[Action]) -> None:
    """Two placements whose copies would have the same key on one platform (report.pdf
    encrypted is report.pdf.enc, which may be another master's name): the one that already
    has a copy, else the first asset code, keeps the key; the other is blocked, never a
    conflict of the tool with its own copy."""
    by_key: dict[tuple[str, str], list[Action]] = {}
    for action in actions:
        if action.action != ActionKind.BLOCKED:
            by_key.setdefault((action.platform, remote_key(action)), []).append(action)
    for (_platform, key), sharing in by_key.items():
        if len(sharing) < 2:
            continue
        sharing.sort(key=lambda a: (a.platform_asset_id is None, a.asset))
        owner = sharing[0]
        for other in sharing[1:]:
            _block(
                other, "shared-key", f"asset {owner.asset} already sends a copy to the same key "
                f"({key}) on this platform; a platform holds one object per key",
            )  # fmt: skip


def settle(
    actions: list[Action],
    moved_keys: Held,
    orphans: Held,
    key_paths: frozenset[str],
    overlaps: Mapping[str, list[tuple[str, str]]] | None = None,
) -> None:
    """Block what would write over another recorded copy. ``moved_keys``: the copies whose
    recorded key is not the one their placement derives now (moving, or imported at a key of
    their own); ``orphans``: the copies nothing desires; ``key_paths``: the platforms whose
    keys are where objects are (an Import's id is a key there); ``overlaps``: the platforms
    that share a place with others (see :func:`reconciler.plan.places.overlaps`)."""
    recorded_at = {id(a): key[1] for key, a in moved_keys.items()}
    writers = [a for a in actions if _writes_elsewhere(a, recorded_at)]
    imports = [a for a in actions if a.action == ActionKind.IMPORT and a.platform in key_paths]
    if not writers and not imports:
        return
    held = _held(actions, moved_keys, orphans, recorded_at, overlaps or {})
    leaving = {
        key: a for key, a in moved_keys.items() if a.action in WRITERS and remote_key(a) != key[1]
    }
    targets: dict[tuple[str, str], Action] = {}
    for action in writers:
        target = (action.platform, remote_key(action))
        holder = held.get(target)
        if holder is None or holder is action:
            targets[target] = action
        elif target in leaving:
            _wait_for(action, holder, leaving)
        else:
            _block(
                action, "shared-key",
                f"{target[1]} holds {_whose(holder, orphans)}; a copy never goes over another",
            )  # fmt: skip
    for action in imports:
        assert action.import_id is not None
        named = (action.platform, action.import_id)
        other = targets.get(named) or held.get(named)
        if other is not None and other is not action:
            _block(
                action, "shared-key", f"the object {action.import_id} is {_whose(other, orphans)}"
                ", or where it goes in this run; one object is one asset's copy",
            )  # fmt: skip


def _held(
    actions: list[Action],
    moved_keys: Held,
    orphans: Held,
    recorded_at: Mapping[int, str],
    overlaps: Mapping[str, list[tuple[str, str]]],
) -> dict[tuple[str, str], Action]:
    """Every recorded copy by (platform, key): at its derived key, or where it really is;
    a copy of a platform that shares another's place is held there too, at its key there
    (and the other's copies inside its place at theirs)."""
    held: dict[tuple[str, str], Action] = dict(orphans)
    for action in actions:
        if id(action) in recorded_at:
            continue  # recorded elsewhere: moved_keys says where
        if action.platform_asset_id is not None and action.target_version is not None:
            held.setdefault((action.platform, remote_key(action)), action)
    held.update(moved_keys)  # where those copies really are
    for inner, pairs in overlaps.items():
        for (code, key), holder in list(held.items()):
            for outer, base in pairs:
                if code == inner:
                    held.setdefault((outer, base + key), holder)
                elif code == outer and key.startswith(base):
                    held.setdefault((inner, key[len(base) :]), holder)
    return held


def _writes_elsewhere(action: Action, recorded_at: Mapping[int, str]) -> bool:
    """Whether the action writes at a key its copy does not hold now (``recorded_at``: the
    keys of the copies not at their derived key, by id of their action)."""
    if action.action not in WRITERS:
        return False
    if action.platform_asset_id is None or action.target_version is None:
        return True  # no copy yet: a new key
    mine = recorded_at.get(id(action))
    return mine is not None and mine != remote_key(action)


def _wait_for(action: Action, holder: Action, leaving: Held) -> None:
    """``action`` writes where ``holder``'s copy still is, which leaves in this run: it waits
    a reconcile, unless the copies that leave run in a circle back to it (a swap)."""
    key = remote_key(action)
    circle: set[str] = {action.asset}
    step: Action | None = holder
    while step is not None and step.asset not in circle:
        circle.add(step.asset)
        step = leaving.get((step.platform, remote_key(step)))
    if step is not None and step.asset == action.asset:
        _block(
            action, "key-held", f"it would move to {key}, where {holder.asset}'s copy is, and "
            f"the moving copies swap keys ({', '.join(sorted(circle))}): a copy never moves "
            "over another; rename one master to a third name, reconcile, then rename it again",
        )  # fmt: skip
    else:
        _block(
            action, "key-held", f"its new key {key} still holds {holder.asset}'s copy, which "
            "moves away in this run; it goes there at the next reconcile",
        )  # fmt: skip


def _whose(holder: Action, orphans: Held) -> str:
    if any(a is holder for a in orphans.values()):
        return f"{holder.asset}'s recorded copy, which nothing desires any more (prune it first)"
    return f"{holder.asset}'s recorded copy"


def _block(action: Action, why: str, reason: str) -> None:
    code = Reason.SHARED_KEY if why == "shared-key" else Reason.KEY_HELD
    action.action, action.blocked_by, action.reason_code, action.reason = (
        ActionKind.BLOCKED,
        why,
        code,
        reason,
    )
