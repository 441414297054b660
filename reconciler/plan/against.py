"""What a plan is planned against: the recorded state (described for people), and under
``--no-refresh`` the recorded observations of the masters in place of the masters.

Called by :mod:`reconciler.plan.planner`, inside its planning connection.

:func:`describe_backend` is the one statement of what kind of state a store is and where it
lives, as the plan's markdown and JSON name it: ``duckdb`` and the state file's name today; a
PostgreSQL store will say ``postgresql`` with its host, database and schema (never a
password). :func:`describe` adds what every backend has: the schema version and the last apply.

``reconcile --dry-run --no-refresh`` (:attr:`~reconciler.plan.actions.Refresh.NONE`) is for a
CI runner that has the manifests and the state but not the media: no master is opened or even
looked at. :func:`recorded_masters` makes the plan's observation from what the state recorded
of each asset (its checksum and size, and so its version), as long as the asset still names
the file it was recorded from. An asset with no such record is *not observed*: it is planned
with :data:`UNOBSERVED` for a checksum, which matches nothing, so that the planner's joins
still check the platform's constraints and find no copy in sync; :func:`settle_unobserved`
then takes that placeholder out of the actions and says "master not observed" in their
reasons. Renditions of such a master are not known either (a rendition's id needs the master's
checksum), and none is ever made by a plan.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime

from reconciler.model import ActionKind, ManifestSet
from reconciler.observe.sources import Observation, Observed
from reconciler.plan.actions import Action, Reason, StateDescription
from reconciler.store.db import Connection, StateStore, Store
from reconciler.store.migrations import current_version
from reconciler.store.observations import LastApply, RecordedMaster

UNOBSERVED = "unobserved"  # never a sha256: it equals no recorded checksum
NOT_OBSERVED = "master not observed (--no-refresh): its checksum and size are unknown"


def iso(when: datetime | None) -> str | None:
    """A naive UTC timestamp of the state as ISO 8601 text."""
    return f"{when:%Y-%m-%dT%H:%M:%SZ}" if when is not None else None


def describe_backend(store: Store) -> tuple[str, str]:
    """(backend, where): what kind of state ``store`` is, and where it is, for people. Names
    only; never a password or another secret of a connection string."""
    if isinstance(store, StateStore):
        return "duckdb", store.path.name
    return "postgresql", store.name


def describe(
    store: Store, con: Connection, exists: bool, last: LastApply | None
) -> StateDescription:
    """The recorded state a plan reads through ``con``: its backend, schema and last apply."""
    backend, location = describe_backend(store)
    if not exists:
        return StateDescription(backend, location, exists=False)
    return StateDescription(
        backend,
        location,
        schema_version=current_version(con),
        last_apply_at=iso(last.completed_at) if last is not None else None,
        last_apply_commit=last.git_commit if last is not None else None,
        last_apply_dirty=last.git_dirty if last is not None else None,
    )


def _recorded_from(master: RecordedMaster, asset_file: str, path: str) -> bool:
    """Whether the state's observation is of the file the asset names now: the same path, or
    (on another machine, another checkout) a path that ends in the asset's file."""
    recorded = master.file_path
    if recorded is None:
        return False
    tail = os.path.normpath(asset_file)
    return recorded == path or recorded.endswith(os.sep + tail)


def recorded_masters(
    manifests: ManifestSet,
    recorded: Mapping[str, RecordedMaster],
    renamed: Mapping[str, str],
) -> tuple[Observed, datetime | None]:
    """The observation of every master as the state recorded it, read from no file; and the
    oldest moment one of them was observed. ``renamed``: the code the state records each
    moved asset under, by its new code."""
    observed = Observed()
    oldest: datetime | None = None
    for asset in manifests.assets.values():
        if asset.path in observed.files:  # one file, two assets: one observation
            continue
        master = recorded.get(renamed.get(asset.code, asset.code))
        if master is None or not _recorded_from(master, asset.file, asset.path):
            observed.files[asset.path] = Observation(asset.path, sha256=UNOBSERVED)
            continue
        observed.files[asset.path] = Observation(
            asset.path, master.size_bytes or 0, master.checksum
        )
        if master.observed_at is not None and (oldest is None or master.observed_at < oldest):
            oldest = master.observed_at
    return observed, oldest


def settle_unobserved(actions: Iterable[Action]) -> int:
    """Take :data:`UNOBSERVED` out of the actions of masters not observed and say so in
    their reasons; returns how many actions there were."""
    count = 0
    for action in actions:
        if action.checksum != UNOBSERVED:
            continue
        count += 1
        action.checksum = None
        action.size_bytes = None
        action.rendition_id = None
        if action.action == ActionKind.UPDATE:
            action.reason_code = Reason.MASTER_NOT_OBSERVED
            action.reason = (
                "master not observed (--no-refresh): the asset's file is not the one the state "
                "recorded, so whether its copy is up to date is unknown"
            )
        elif action.action in (ActionKind.CREATE, ActionKind.IMPORT, ActionKind.BLOCKED):
            action.reason = f"{action.reason}; {NOT_OBSERVED}"
    return count


def blind_notes(manifests: ManifestSet, unobserved: int) -> list[str]:
    """What a plan of Refresh.NONE says of what it could not know."""
    notes = []
    if unobserved:
        notes.append(
            f"--no-refresh: {unobserved} placements are of masters the state holds no "
            "observation of; their checksums and sizes are unknown"
        )
    if manifests.asset_sets:
        notes.append(
            f"--no-refresh: AssetSets ({len(manifests.asset_sets)}) still generate their "
            f"assets from the file names under the media root {manifests.media_root}; where "
            "it lacks them, their recorded copies show as no longer desired"
        )
    return notes
