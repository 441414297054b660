"""Declared documents -> the model's objects: Platform, SyncRule, Asset, AssetSet, Import,
Move.

Called by :mod:`reconciler.manifests.validate` with documents that passed their schema, so
every required field is there and of its type. An optional field the manifest leaves out is
not passed at all: the dataclass defaults in :mod:`reconciler.model` are the one place that
says what it is. Relative paths in a manifest (a local target, a ``secret_file``) are
relative to the manifests folder, never to the current directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path as FsPath
from typing import Any

from reconciler.manifests.assetsets import Generated
from reconciler.manifests.cron import cron_text
from reconciler.manifests.declared import Declared
from reconciler.mime import guess_mime
from reconciler.model import Asset, AssetSet, Import, Move, Platform, SecretRef, SyncRule

DRIVER_SETTINGS = (
    *("bucket", "prefix", "region", "endpoint_url", "fsync", "follow_symlinks"),
    *("upload_method", "upload_path", "health_path", "api_key_header"),
    *("id_field", "url_field", "checksum_field"),
    *("upload_endpoint", "token_url", "client_id", "client_secret", "chunk_size_kib"),
    *("privacy_status", "category_id", "poll_interval", "processing_timeout"),
    *("quota_daily_units", "quota_costs"),
)

# Optional fields taken as the manifest writes them; absent ones get the model's default
_PLATFORM_AS_GIVEN = (
    *("api_endpoint", "auth_type", "max_file_size_mb", "rate_limit_per_hour"),
    "sync_enabled",
)
_WHOLE = frozenset({"rate_limit_per_hour", "priority"})  # int fields of Platform and SyncRule
_RULE_AS_GIVEN = (
    *("config_name", "transform_rules", "auto_sync", "priority", "is_active", "prune"),
    "on_conflict",
)
_ASSET_AS_GIVEN = ("description", "metadata", "status")
_ASSET_SET_AS_GIVEN = (
    *("code_case", "title_template", "description", "mime_type", "metadata", "status"),
    "moved_from",
)


def platform(item: Declared, manifests_dir: FsPath) -> Platform:
    """The Platform a valid document declares."""
    spec = item.spec
    given = _given(spec, _PLATFORM_AS_GIVEN)
    formats = spec.get("supported_formats", "all")
    if formats != "all":
        given["supported_formats"] = tuple(formats)
    if spec["driver"] == "local":
        raw = FsPath(spec["target"]).expanduser()
        given["target"] = FsPath(
            os.path.normpath(raw if raw.is_absolute() else manifests_dir / raw)
        )
    return Platform(
        code=_code(item),
        platform_name=spec["platform_name"],
        platform_type=spec["platform_type"],
        driver=spec["driver"],
        auth=_secret(spec.get("auth"), manifests_dir),
        driver_config={k: anchored(spec[k], manifests_dir) for k in DRIVER_SETTINGS if k in spec},
        origin=item.origin,
        **given,
    )


def rule(item: Declared) -> SyncRule:
    """The SyncRule a valid document declares."""
    spec = item.spec
    given = _given(spec, _RULE_AS_GIVEN)
    for name in ("include", "exclude"):
        if name in spec:
            given[name] = tuple(spec[name])
    if "schedule_cron" in spec:
        given["schedule_cron"] = cron_text(spec["schedule_cron"])
    categories = spec["source_category"]
    types = spec["asset_types"]
    return SyncRule(
        code=_code(item),
        platform=spec["platform"],
        source_category=None if categories == "all" else tuple(categories),
        asset_types=None if types == "all" else tuple(types),
        sync_mode=spec["sync_mode"],
        origin=item.origin,
        **given,
    )


def asset(item: Declared, path: str) -> Asset:
    """The Asset a valid document declares; ``path`` is its checked absolute file path."""
    spec = item.spec
    earlier = spec.get("moved_from", ())
    return Asset(
        moved_from=(earlier,) if isinstance(earlier, str) else tuple(earlier),
        code=_code(item),
        title=spec["title"],
        asset_type=spec["asset_type"],
        category=spec["category"],
        file=spec["file"],
        path=path,
        mime_type=spec.get("mime_type") or guess_mime(spec["file"]),
        origin=item.origin,
        **_given(spec, _ASSET_AS_GIVEN),
    )


def asset_set(item: Declared) -> AssetSet:
    """The AssetSet a valid document declares."""
    spec = item.spec
    given = _given(spec, _ASSET_SET_AS_GIVEN)
    if "exclude" in spec:
        given["exclude"] = tuple(spec["exclude"])
    include = spec["include"]
    return AssetSet(
        code=_code(item),
        include=(include,) if isinstance(include, str) else tuple(include),
        asset_type=spec["asset_type"],
        category=spec["category"],
        code_template=spec["code_template"],
        origin=item.origin,
        **given,
    )


def import_(item: Declared) -> Import:
    """The Import a valid document declares."""
    spec = item.spec
    return Import(_code(item), spec["asset"], spec["platform"], spec["id"], item.origin)


def moved(item: Declared) -> Move:
    """The Move a valid Moved document declares."""
    return Move(_code(item), item.spec["from"], item.spec["to"], item.origin)


def generated_asset(aset: AssetSet, gen: Generated) -> Asset:
    """The Asset an AssetSet generates for one file it matched."""
    return Asset(
        code=gen.code,
        title=gen.title,
        asset_type=aset.asset_type,
        category=aset.category,
        file=gen.rel,
        path=gen.path,
        mime_type=aset.mime_type or guess_mime(gen.rel),
        description=aset.description,
        metadata=aset.metadata,
        status=aset.status,
        asset_set=aset.code,
        origin=aset.origin,
    )


def secret_files(
    platforms: Mapping[str, Platform], rules: Mapping[str, SyncRule], base: FsPath
) -> set[str]:
    """Every file the manifests reference as a credential (auth and client secrets,
    encryption keys, also keys still to be created), as given and resolved: none of them is
    ever a master."""
    found: set[str] = set()
    for declared in platforms.values():
        refs = [declared.auth.file if declared.auth else None]
        refs += [
            value.get("secret_file")
            for value in declared.driver_config.values()
            if isinstance(value, dict)
        ]
        found.update(r for r in refs if isinstance(r, str))
    for declared_rule in rules.values():
        key = anchored(dict(declared_rule.transform_rules).get("encryption_key"), base)
        if isinstance(key, dict) and isinstance(key.get("secret_file"), str):
            found.add(key["secret_file"])
    return found | {os.path.realpath(path) for path in found}


def anchored(value: Any, base: FsPath) -> Any:
    """A secret reference (``{secret_file: PATH}``) with its path made absolute against
    ``base``; any other value as it is."""
    if not isinstance(value, dict) or not isinstance(value.get("secret_file"), str):
        return value
    path = os.path.expanduser(value["secret_file"])
    return {**value, "secret_file": os.path.normpath(os.path.join(base, path))}


def _secret(value: dict | None, base: FsPath) -> SecretRef | None:
    """A secret reference; a relative ``secret_file`` is relative to the manifests folder."""
    if not value:
        return None
    reference = anchored(value, base)
    return SecretRef(env=reference.get("secret_env"), file=reference.get("secret_file"))


def _given(spec: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The fields among ``names`` that the spec sets, as it sets them; the model's whole
    numbers as ``int`` even when written ``1e3`` (a float in YAML 1.2; the schema took it as
    an integer because it has no fraction)."""
    return {
        name: int(spec[name]) if name in _WHOLE and isinstance(spec[name], float) else spec[name]
        for name in names
        if name in spec
    }


def _code(item: Declared) -> str:
    assert item.code is not None  # a valid item has its code
    return item.code
