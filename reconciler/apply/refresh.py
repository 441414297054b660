"""``--refresh``: what a plan's creates and imports would find on the platforms, looked at
before anything is applied. Strictly read-only.

Called by :func:`reconciler.ops.plan` when asked (``reconcile --dry-run --refresh``), after
the plan is made. A plan alone never contacts a platform; with ``--refresh`` it reads, and
only reads: the drivers are made without the state's records, so nothing they learn is
written. For each create on a folder or bucket it looks at the copy's key: the very bytes
already there make the action an ``adopt`` (apply records them without sending them); other
bytes are said in the reason (apply leaves them, as a ``foreign_object`` conflict). For each
import it looks the object up and says whether it is there and holds the expected bytes. A
platform that cannot be read is a note of the plan, never a failure of it.
"""

from __future__ import annotations

from reconciler.apply.job import expected_bytes, holds
from reconciler.drivers import driver_for
from reconciler.drivers.base import Driver, DriverError
from reconciler.model import ActionKind, ManifestSet
from reconciler.plan.actions import Action, Plan, Reason, remote_key
from reconciler.redact import redact
from reconciler.transforms.renditions import RenditionCache


def refresh(plan: Plan, manifests: ManifestSet, cache: RenditionCache) -> None:
    """Look at what the platforms hold for the plan's creates and imports; adjust those
    actions and their reasons."""
    drivers: dict[str, Driver | None] = {}
    for action in plan.actions:
        if action.action not in (ActionKind.CREATE, ActionKind.IMPORT):
            continue
        platform = manifests.platforms.get(action.platform)
        if platform is None:
            continue
        try:
            if action.platform not in drivers:
                drivers[action.platform] = driver_for(platform)  # no records: writes nothing
            driver = drivers[action.platform]
            if driver is None:
                continue
            if action.action == ActionKind.IMPORT:
                _look_up(action, driver, cache)
            elif driver.keys_are_paths:
                _look_at_key(action, driver, cache)
        except (DriverError, OSError) as exc:
            plan.notes.append(redact(f"--refresh could not read {action.platform}: {exc}"))
            drivers[action.platform] = None


def _look_at_key(action: Action, driver: Driver, cache: RenditionCache) -> None:
    key = remote_key(action)
    sha, size = expected_bytes(action, cache)
    remote = driver.stat(key, size=size)
    if remote is None:
        return
    if sha is None:
        action.reason += (
            f"; --refresh found an object at {key}: apply adopts it if it holds the rendition "
            "once that is made, else leaves it (a foreign_object conflict)"
        )
        return
    if remote.checksum == sha:
        action.action = ActionKind.ADOPT
        action.reason_code = Reason.FOUND_AT_KEY
        action.reason = f"the very bytes are already at {key}: recorded without sending them"
        return
    action.reason += (
        f"; --refresh found another object at {key}: apply leaves it (a foreign_object "
        "conflict) unless the rule says source_wins"
    )


def _look_up(action: Action, driver: Driver, cache: RenditionCache) -> None:
    assert action.import_id is not None
    found = driver.find(action.import_id)
    if found is None:
        action.reason += "; --refresh: the platform has no such object, so the import fails"
        return
    sha, size = expected_bytes(action, cache)
    if sha is None:
        action.reason += (
            "; --refresh: it is there (its bytes are checked once the rendition is made)"
        )
        return
    same = holds(found.checksum, found.size, sha, size)
    if same is None:
        action.reason += "; --refresh: it is there (the platform tells neither checksum nor size)"
    elif same:
        action.reason += "; --refresh: it is there and holds these bytes"
    else:
        action.reason += (
            "; --refresh: it holds other bytes, so it is recorded as outdated and updated"
        )
