"""What a plan is: one :class:`Action` per (asset, platform) placement, gathered in a
:class:`Plan`, and the plan file's (de)serialisation.

Made by :mod:`reconciler.plan.diff` and :mod:`reconciler.plan.planner`; read by apply, the
renderers, explain and :mod:`reconciler.plan.saved` (which checks a saved plan before it
runs). An action's kind is an :class:`~reconciler.model.ActionKind`; why it is planned so is
said twice: ``reason``, a sentence for people (unchanged wording, tests and users read it),
and ``reason_code``, a :class:`Reason` for machines. The plan file is JSON, format version
:data:`PLAN_FORMAT_VERSION`; ``reason_code`` is a key of each action that older plan files
lack (they load, with no code). A plan also says what it read (:class:`Refresh`) and the
recorded state it was planned against (:class:`StateDescription`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.model import ActionKind
from reconciler.observe.sources import Observed

PLAN_FORMAT_VERSION = 3  # 2: actions carry their rendition; 3: import, moved and adopt
CHANGES = frozenset(
    {
        ActionKind.CREATE,
        ActionKind.UPDATE,
        ActionKind.UPDATE_METADATA,
        ActionKind.DELETE,
        ActionKind.IMPORT,
        ActionKind.MOVED,
        ActionKind.ADOPT,
    }
)
KINDS: dict[str, ActionKind] = {kind.value: kind for kind in ActionKind}


class PlanError(ReconcilerError):
    """The plan cannot be made or would be unsafe to carry out."""


class Reason(StrEnum):
    """Why an action is planned as it is: the code beside the ``reason`` sentence."""

    IN_SYNC = "in_sync"  # noop
    NOT_ON_PLATFORM = "not_on_platform"  # create: no copy, or it was deleted
    SYNC_INCOMPLETE = "sync_incomplete"  # create: the last sync did not complete
    CONTENT_CHANGED = "content_changed"  # update: the master's checksum changed
    COPY_NOT_SYNCED = "copy_not_synced"  # update: the copy is outdated, failed, ...
    METADATA_CHANGED = "metadata_changed"  # update-metadata
    RENDITION_CHANGED = "rendition_changed"  # update: transform rules or code changed
    TRANSFORMS_ADDED = "transforms_added"  # update: transform rules now apply
    TRANSFORMS_REMOVED = "transforms_removed"  # update: the master itself goes up now
    CONFLICT_OPEN = "conflict_open"  # held
    MASTER_UNREADABLE = "master_unreadable"  # blocked (blocked_by unreadable)
    MASTER_NOT_OBSERVED = "master_not_observed"  # update: --no-refresh knows no observation
    SHARED_FILE = "shared_file"  # blocked (blocked_by shared-file)
    SHARED_KEY = "shared_key"  # blocked (blocked_by shared-key)
    PLATFORM_DISABLED = "platform_disabled"  # blocked (blocked_by disabled)
    FORMAT_UNSUPPORTED = "format_unsupported"  # blocked (blocked_by format)
    TOO_LARGE = "too_large"  # blocked (blocked_by size)
    PLATFORM_UNDECLARED = "platform_undeclared"  # orphan: its platform is gone
    PRUNED = "pruned"  # delete: no longer desired, pruning on, made by this tool
    UNMANAGED = "unmanaged"  # orphan: no longer desired, not made by this tool
    PRUNING_OFF = "pruning_off"  # orphan: no longer desired, pruning off
    IMPORT_DECLARED = "import_declared"  # import: an Import names the object on the platform
    RENAMED = "renamed"  # moved: the asset's code changed (a Moved document, moved_from)
    MASTER_MOVED = "master_moved"  # moved: the master file moved, so the copy's key changes
    FOUND_AT_KEY = "found_at_key"  # adopt: the very bytes are already at the key (--refresh)
    KEY_HELD = "key_held"  # blocked (blocked_by key-held): another moving copy is at the key


REASONS: dict[str, Reason] = {reason.value: reason for reason in Reason}


class Refresh(StrEnum):
    """What a plan reads besides the manifests and the recorded state (Terraform's -refresh)."""

    NONE = "none"  # --no-refresh: nothing; the masters are as the state last recorded them
    MASTERS = "masters"  # the default: every master is observed (hashed, or vouched by a cache)
    PLATFORMS = "platforms"  # --refresh: the masters, and what the platforms hold


REFRESHES: dict[str, Refresh] = {level.value: level for level in Refresh}


@dataclass(frozen=True)
class StateDescription:
    """The recorded state a plan was planned against, for people: its backend and where it is
    (never a password), its schema version, and the last apply with its git commit."""

    backend: str  # "duckdb"
    location: str  # the state file's name
    exists: bool = True
    schema_version: int | None = None
    last_apply_at: str | None = None  # ISO 8601, UTC
    last_apply_commit: str | None = None
    last_apply_dirty: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> StateDescription | None:
        """A description as :meth:`to_dict` wrote it; None for anything else."""
        if not isinstance(data, dict) or set(data) != set(cls.__dataclass_fields__):
            return None
        return cls(**data)


@dataclass(slots=True)  # not frozen: frozen __init__ is 8x slower per object
class Action:
    """What to do about one (asset, platform) placement, and why."""

    action: ActionKind
    asset: str
    platform: str
    rule: str | None
    reason: str
    source_version: int | None  # version of the master this action brings
    target_version: int | None  # version the platform holds now, per the recorded state
    size_bytes: int | None
    checksum: str | None
    mime_type: str | None = None
    file: str | None = None  # as declared, relative to the media root
    path: str | None = None  # absolute path of the master
    priority: int | None = None
    platform_asset_id: int | None = None  # the recorded copy, when there is one
    metadata_hash: str | None = None
    transform_hash: str | None = None
    transform_rules: dict[str, Any] = field(default_factory=dict)
    waiting: str | None = None  # why a change does not run now (schedule, auto_sync false)
    scheduled_for: str | None = None  # when a scheduled change runs (ISO 8601, UTC)
    rendition_id: str | None = None  # the rendition the platform gets; None: the master
    transforms: str | None = None  # what makes that rendition, in words
    rendition_suffix: str | None = None  # the uploaded object's suffix, when it differs
    # why a blocked placement is blocked, as a code beside the sentence: unreadable,
    # shared-file, shared-key, disabled, format or size
    blocked_by: str | None = None
    reason_code: Reason | None = None  # ``reason`` as a code; None in older plan files
    moved_from: str | None = None  # moved: the code the state records the copy under
    previous_key: str | None = None  # moved: the copy's key now, when it changes
    import_id: str | None = None  # import: the platform's id of the object to take over
    metadata_changed: bool = False  # moved: the metadata goes to the platform too

    @property
    def is_change(self) -> bool:
        return self.action in CHANGES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Action | None:
        """The action a plan file holds (keys it does not know are ignored); None for a kind
        this reconcile does not know, which is never a change: nothing would run it."""
        values = {k: v for k, v in data.items() if k in FIELDS}
        raw = values.get("action")
        if isinstance(raw, str):
            if raw not in KINDS:
                return None
            values["action"] = KINDS[raw]
        code = values.get("reason_code")
        values["reason_code"] = REASONS.get(code) if isinstance(code, str) else None
        return cls(**values)


FIELDS = frozenset(Action.__dataclass_fields__)


def remote_key(action: Action) -> str:
    """Where a placement lives on its platform: the master's path under the media root, so
    that a platform mirrors the library's layout, with a rendition's own suffix (.mp4, .enc)
    when it has one."""
    key = action.file or action.asset
    if action.rendition_suffix:  # a rendition of another type says so
        stem = PurePosixPath(key)
        key = str(stem.with_suffix("")) + action.rendition_suffix if stem.suffix else key
    return key


@dataclass
class Plan:
    """Every placement's action, and what the plan was made from (checked before a saved
    plan runs)."""

    actions: list[Action]
    state_path: str
    state_exists: bool
    state_fingerprint: str
    manifests_dir: str
    media_root: str
    created_at: str
    prune: bool = False
    notes: list[str] = field(default_factory=list)
    cached_renditions: list[str] = field(default_factory=list)  # of the plan's rendition ids
    # Runtime only, never in the plan file: the observation of the masters that the plan
    # was made from, which apply records (and whose new hash cache entries it saves). None
    # for a plan read from a file.
    observed: Observed | None = field(default=None, repr=False, compare=False)
    rule: str | None = None  # the plan was narrowed to (and runs now) this rule
    # where each platform sends bytes (a hash of its driver settings), so that a saved plan
    # is never applied to a destination nobody reviewed
    destinations: dict[str, str] = field(default_factory=dict)
    platform: str | None = None  # the plan was narrowed to this platform
    refresh: Refresh = Refresh.MASTERS  # what was read; a plan of Refresh.NONE never applies
    # with Refresh.NONE: the oldest recorded observation the plan used (ISO 8601, UTC; None:
    # none whose time is known); None too for a plan that observed the masters itself, then
    observed_at: str | None = None
    against: StateDescription | None = None  # the recorded state it was planned against

    @property
    def changes(self) -> list[Action]:
        return [a for a in self.actions if a.is_change]

    def summary(self) -> dict[str, int]:
        counts = Counter(a.action for a in self.actions)
        return {kind.value: counts.get(kind, 0) for kind in ActionKind}

    @property
    def waiting(self) -> list[Action]:
        return [a for a in self.actions if a.is_change and a.waiting is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": PLAN_FORMAT_VERSION,
            "created_at": self.created_at,
            "manifests": self.manifests_dir,
            "media_root": self.media_root,
            "state": self.state_path,
            "state_exists": self.state_exists,
            "state_fingerprint": self.state_fingerprint,
            "prune": self.prune,
            "rule": self.rule,
            "destinations": self.destinations,
            "platform": self.platform,
            "refresh": str(self.refresh),
            "observed_at": self.observed_at,
            "planned_against": self.against.to_dict() if self.against is not None else None,
            "notes": self.notes,
            "cached_renditions": self.cached_renditions,
            "summary": self.summary(),
            "changes": len(self.changes),
            "waiting": len(self.waiting),
            "actions": [a.to_dict() for a in self.actions],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if data.get("format_version") != PLAN_FORMAT_VERSION:
            raise PlanError(
                f"this plan has format_version {data.get('format_version')!r}; this reconcile "
                f"reads format_version {PLAN_FORMAT_VERSION}: make the plan again"
            )
        actions = [Action.from_dict(a) for a in data["actions"]]
        return cls(
            actions=[a for a in actions if a is not None],
            state_path=data["state"],
            state_exists=data["state_exists"],
            state_fingerprint=data["state_fingerprint"],
            manifests_dir=data["manifests"],
            media_root=data["media_root"],
            created_at=data["created_at"],
            cached_renditions=list(data.get("cached_renditions", [])),
            prune=data.get("prune", False) is True,
            notes=list(data.get("notes", [])),
            rule=_code(data.get("rule"), "rule"),
            platform=_code(data.get("platform"), "platform"),
            destinations={str(k): str(v) for k, v in dict(data.get("destinations") or {}).items()},
            refresh=REFRESHES.get(str(data.get("refresh")), Refresh.MASTERS),
            observed_at=data.get("observed_at"),
        )


def _code(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise PlanError(f"the plan's {what} is not a code; make the plan again")
