"""The desired state as typed, immutable objects.

:mod:`reconciler.manifests.validate` builds these from validated manifest documents; every later
stage (desired placements, planning, apply, reports) reads them and never the raw YAML. Field
names follow the seed's column names, so that a field maps to its column at a glance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

# -- The vocabularies of the state: every kind and state is one of these, never a bare string.
# Each is a StrEnum, so a member is equal to (and is stored as) its seed value.


class ActionKind(StrEnum):
    """What a plan does to one (asset, platform) placement."""

    CREATE = "create"
    UPDATE = "update"
    UPDATE_METADATA = "update-metadata"
    DELETE = "delete"
    NOOP = "noop"
    BLOCKED = "blocked"
    HELD = "held"
    ORPHAN = "orphan"
    IMPORT = "import"  # an existing platform object is checked and recorded as the copy
    MOVED = "moved"  # a recorded copy follows its renamed asset or its moved master file
    ADOPT = "adopt"  # the very bytes are already at the copy's key: recorded, not sent


class JobType(StrEnum):
    """``sync_jobs.job_type``: the kind of work one job row stands for."""

    INITIAL = "initial"
    UPDATE = "update"
    METADATA = "metadata"
    DELETE = "delete"
    ADOPT = "adopt"
    IMPORT = "import"
    MOVE = "move"


class JobStatus(StrEnum):
    """``sync_jobs.status``."""

    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    DEFERRED = "deferred"


class SyncStatus(StrEnum):
    """``platform_assets.sync_status``: what the record says of one platform copy."""

    PENDING = "pending"
    SYNCING = "syncing"
    SYNCED = "synced"
    OUTDATED = "outdated"
    FAILED = "failed"
    DELETED = "deleted"


class EventStatus(StrEnum):
    """``sync_events_log.event_status``."""

    SUCCESS = "success"
    DEFERRED = "deferred"
    FAILED = "failed"
    RETRYING = "retrying"


class EventType(StrEnum):
    """``sync_events_log.event_type``: what one event records."""

    UPLOAD_START = "upload_start"
    UPLOAD_COMPLETE = "upload_complete"
    DELETE_START = "delete_start"
    DELETE = "delete"
    METADATA_START = "metadata_start"
    METADATA_UPDATE = "metadata_update"
    TRANSFORM_START = "transform_start"
    TRANSFORM_COMPLETE = "transform_complete"
    KEY_CREATED = "key_created"
    VERIFICATION = "verification"
    CONFLICT_DETECTED = "conflict_detected"
    CONFLICT_RESOLVED = "conflict_resolved"
    DEFERRED = "deferred"
    RETRY = "retry"
    RECOVERED = "recovered"
    ADOPTED = "adopted"
    IMPORTED = "imported"
    MOVED = "moved"
    LOCK_TAKEOVER = "lock_takeover"
    STATE_FILE_REPLACED = "state_file_replaced"
    HEALTH_CHECK = "health_check"
    UPLOAD_PROGRESS = "upload_progress"
    CLEANUP = "cleanup"
    QUEUED = "queued"  # `reconcile --queue` wrote the job for a worker
    RECLAIMED = "reclaimed"  # a lost worker's job went back to the queue (or was closed)
    HANDED_BACK = "handed_back"  # a stopping worker gave a job it had not finished back
    RESYNC_REQUESTED = "resync_requested"  # a person asked for one copy to be sent again


class ConflictType(StrEnum):
    """``sync_conflicts.conflict_type``: how a platform copy disagrees with the record."""

    REMOTE_MODIFIED = "remote_modified"
    REMOTE_DELETED = "remote_deleted"
    FOREIGN_OBJECT = "foreign_object"
    CHECKSUM_MISMATCH = "checksum_mismatch"


class Resolution(StrEnum):
    """``sync_conflicts.resolution``: open (pending) or how a person closed it."""

    PENDING = "pending"
    USE_SOURCE = "use_source"
    USE_TARGET = "use_target"
    IGNORED = "ignored"
    RESOLVED_BY_PRUNE = "resolved_by_prune"  # the copy was pruned while the conflict was open
    RESOLVED_BY_RETRY = "resolved_by_retry"


class HealthStatus(StrEnum):
    """``sync_platforms.health_status``."""

    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    DOWN = "down"


# -- The desired state. A dataclass default below is the one statement of what an optional
# manifest field means when a manifest leaves it out: reconciler.manifests.build passes only
# the fields a manifest sets.


@dataclass(slots=True)  # not frozen: frozen __init__ is 8x slower per object
class Origin:
    """Where an object was declared."""

    file: str  # display path of the manifest file
    doc_index: int
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A reference to a credential: an environment variable or a file. Never the secret."""

    env: str | None = None
    file: str | None = None

    def __str__(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"


@dataclass(frozen=True, slots=True)
class Platform:
    """A sync destination (sync_platforms)."""

    code: str
    platform_name: str
    platform_type: str
    driver: str
    api_endpoint: str | None = None
    auth_type: str | None = None
    auth: SecretRef | None = None
    supported_formats: tuple[str, ...] | None = None  # None: all formats
    max_file_size_mb: float | None = None
    rate_limit_per_hour: int | None = None
    sync_enabled: bool = True
    target: Path | None = None  # local driver: absolute destination folder
    driver_config: Mapping[str, Any] = field(default_factory=dict)  # driver-specific settings
    origin: Origin | None = None


@dataclass(slots=True)  # not frozen: frozen __init__ is 8x slower per object
class Asset:
    """A master media file (source_assets), declared or generated by an AssetSet."""

    code: str
    title: str
    asset_type: str
    category: str
    file: str  # as declared: relative to the media root, '/'-separated
    path: str  # absolute path of the master file (a string: 100,000 Path objects are slow)
    mime_type: str | None = None
    description: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    status: str = "active"
    asset_set: str | None = None  # code of the AssetSet that generated it
    moved_from: tuple[str, ...] = ()  # its earlier codes, as a Moved document from each
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class AssetSet:
    """A glob over the media root that generates assets."""

    code: str
    include: tuple[str, ...]
    asset_type: str
    category: str
    code_template: str
    exclude: tuple[str, ...] = ()
    code_case: str = "keep"
    title_template: str = "{stem}"
    description: str | None = None
    mime_type: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    status: str = "active"
    moved_from: str | None = None  # the code_template used before: each file's earlier code
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class SyncRule:
    """Which assets go to which platform, and how (sync_configurations)."""

    code: str
    platform: str  # platform code
    source_category: tuple[str, ...] | None  # None: all categories
    asset_types: tuple[str, ...] | None  # None: all asset types
    sync_mode: str
    config_name: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    transform_rules: Mapping[str, Any] = field(default_factory=dict)
    schedule_cron: str | None = None
    auto_sync: bool = True
    priority: int = 5
    is_active: bool = True
    prune: bool = False
    on_conflict: str = "manual"  # or source_wins
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class Import:
    """An object already on a platform, declared to be one asset's copy there."""

    code: str
    asset: str
    platform: str
    remote_id: str  # the platform's id: a key on folders and buckets, a video id elsewhere
    origin: Origin | None = None


@dataclass(frozen=True, slots=True)
class Move:
    """An asset code renamed: the copies recorded under ``old`` belong to ``new``."""

    code: str  # the Moved document's code (or the Asset's, for its moved_from)
    old: str
    new: str
    origin: Origin | None = None


@dataclass(frozen=True)
class ManifestSet:
    """Every object declared under a manifests folder, keyed by code."""

    manifests_dir: Path
    media_root: Path
    files: int
    platforms: Mapping[str, Platform]
    assets: Mapping[str, Asset]  # declared and generated
    asset_sets: Mapping[str, AssetSet]
    rules: Mapping[str, SyncRule]
    warnings: int = 0  # problems validation reported as warnings
    imports: Mapping[tuple[str, str], Import] = field(default_factory=dict)  # (asset, platform)
    moves: Mapping[str, Move] = field(default_factory=dict)  # by the old code
