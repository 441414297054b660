"""Desired state: validated manifests and observed files, as the tables the planner joins.

Called by :mod:`reconciler.plan.planner` and :mod:`reconciler.plan.explain`. It hands the
store (:func:`reconciler.store.planning.write_desired`) the rows of four temporary tables of
the planning connection, one row per object, in the order of the store's column lists:

* ``d_assets``: every asset (declared or generated) with its measured checksum and size;
* ``d_rules`` and ``d_rule_patterns``: every sync rule, and its selective include/exclude
  patterns one per row (so matching is a join, not a Python loop);
* ``d_platforms``: every platform with the constraints that can block a placement.

It also defines the fingerprints that tell a metadata change from a content change
(:class:`MetadataHasher`, used by apply's recorder too), and :func:`asset_metadata`, what
apply sends to a platform besides the bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.mime import canonical_mime
from reconciler.model import Asset, Import, ManifestSet, Platform
from reconciler.observe.sources import Observation
from reconciler.plan.places import overlaps
from reconciler.store.db import Connection
from reconciler.store.planning import write_desired
from reconciler.transforms.recipe import RecipeBook

BYTES_PER_MB = 1024 * 1024  # max_file_size_mb and file_size_mb count MiB
PATHS = ("local", "s3")  # the drivers whose keys are where the objects are (a folder, a bucket)


def accepted_formats(platform: Platform) -> list[str] | None:
    """The MIME types a platform accepts, canonical and sorted; None: every format."""
    if platform.supported_formats is None:
        return None
    return sorted({canonical_mime(f) for f in platform.supported_formats})


def fingerprint(value: Any) -> str:
    """A stable sha256 of JSON-shaped data."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class MetadataHasher:
    """The metadata fingerprint of many assets, cheaply: assets of one AssetSet share one
    metadata mapping, so its JSON text is made once, not once per asset."""

    def __init__(self) -> None:
        self._texts: dict[int, tuple[Any, str]] = {}

    def json_of(self, metadata: Any) -> str:
        known = self._texts.get(id(metadata))
        if known is None or known[0] is not metadata:
            text = json.dumps(
                metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
            )
            self._texts[id(metadata)] = known = (metadata, text)
        return known[1]

    def __call__(self, asset: Asset) -> str:
        parts = (
            asset.title,
            asset.description or "",
            asset.category,
            asset.asset_type,
            canonical_mime(asset.mime_type),
            self.json_of(asset.metadata),
        )
        return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def asset_metadata(asset: Asset) -> dict[str, Any]:
    """What is sent to a platform besides the bytes; a change here is a metadata change."""
    return {
        "title": asset.title,
        "description": asset.description,
        "category": asset.category,
        "asset_type": asset.asset_type,
        "mime_type": canonical_mime(asset.mime_type),
        "metadata": asset.metadata,  # read-only, shared by the assets of an AssetSet
    }


@dataclass(slots=True)  # not frozen: frozen __init__ is 8x slower per object
class DesiredAsset:
    """An asset as the planner sees it: declared, and measured."""

    code: str
    file: str
    path: str
    mime: str
    size_bytes: int | None
    checksum: str | None
    observe_error: str | None
    metadata_hash: str
    source: Asset


@dataclass(frozen=True, slots=True)
class DesiredRule:
    code: str
    transform_rules: dict[str, Any]
    transform_hash: str


@dataclass
class Desired:
    """Per-object details by code, so that the planner's rows stay narrow."""

    assets: dict[str, DesiredAsset] = field(default_factory=dict)
    rules: dict[str, DesiredRule] = field(default_factory=dict)
    formats: dict[str, list[str] | None] = field(default_factory=dict)  # by platform
    max_file_size_mb: dict[str, float | None] = field(default_factory=dict)
    recipes: RecipeBook | None = None  # how each placement's rendition is made
    imports: Mapping[tuple[str, str], Import] = field(default_factory=dict)  # (asset, platform)
    key_paths: frozenset[str] = frozenset()  # platforms whose keys are where objects are
    # platforms that share their place with others: (the other, where their keys start there)
    overlaps: Mapping[str, list[tuple[str, str]]] = field(default_factory=dict)


def load_desired(
    con: Connection,
    manifests: ManifestSet,
    observed: dict[str, Observation],
    renamed: Mapping[str, str] | None = None,
) -> Desired:
    """Create d_assets, d_rules, d_rule_patterns and d_platforms in ``con``; return the
    per-object details the planner joins back in Python. ``renamed``: the code the state
    records each moved asset under, by its new code."""
    desired = Desired(
        recipes=RecipeBook(manifests),
        imports=manifests.imports,
        key_paths=frozenset(p.code for p in manifests.platforms.values() if p.driver in PATHS),
        overlaps=overlaps(manifests.platforms),
    )
    renamed = renamed or {}
    assets = []
    hasher = MetadataHasher()
    for asset in manifests.assets.values():
        seen = observed.get(asset.path)
        readable = seen is not None and seen.sha256 is not None
        error = None if readable else (seen.error if seen else "not observed")
        item = DesiredAsset(
            code=asset.code,
            file=asset.file,
            path=asset.path,
            mime=canonical_mime(asset.mime_type),
            size_bytes=seen.size if seen is not None and readable else None,
            checksum=seen.sha256 if seen is not None else None,
            observe_error=error,
            metadata_hash=hasher(asset),
            source=asset,
        )
        desired.assets[asset.code] = item
        assets.append((
            asset.code, asset.asset_type, asset.category, asset.status, asset.file, item.mime,
            item.size_bytes, item.checksum, item.metadata_hash,
            renamed.get(asset.code, asset.code),
        ))  # fmt: skip

    rules, patterns = [], []
    order = {code: n for n, code in enumerate(sorted(manifests.rules))}
    for rule in manifests.rules.values():
        transform = dict(rule.transform_rules)
        item_rule = DesiredRule(rule.code, transform, fingerprint(transform))
        desired.rules[rule.code] = item_rule
        rules.append((
            rule.code, rule.platform,
            list(rule.source_category) if rule.source_category is not None else None,
            list(rule.asset_types) if rule.asset_types is not None else None,
            rule.sync_mode, rule.sync_mode == "selective" and bool(rule.include),
            rule.priority, rule.is_active, rule.auto_sync, rule.schedule_cron,
            item_rule.transform_hash, rule.prune,
            rule.priority * 1_000_000 - order[rule.code],
        ))  # fmt: skip
        if rule.sync_mode == "selective":
            patterns += [(rule.code, "include", p) for p in rule.include]
            patterns += [(rule.code, "exclude", p) for p in rule.exclude]

    platforms = []
    for p in manifests.platforms.values():
        formats = accepted_formats(p)
        limit = p.max_file_size_mb
        desired.formats[p.code] = formats
        desired.max_file_size_mb[p.code] = limit
        max_bytes = int(limit * BYTES_PER_MB) if limit is not None else None
        platforms.append(
            (p.code, p.platform_name, p.sync_enabled, formats, max_bytes, limit, p.driver)
        )
    write_desired(con, assets, rules, patterns, platforms)
    return desired
