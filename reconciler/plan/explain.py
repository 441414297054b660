"""`reconcile explain ASSET`: why each placement of one asset is planned as it is.

Called by the ``explain`` command. It runs the very same planner
(:func:`reconciler.plan.planner.recorded_diff`) on a desired state reduced to the one asset,
then reads the planner's own ``rule_matches`` view for the reasons (through
:mod:`reconciler.store.planning`): which rules matched and which won, which constraints were
checked, what the state file records, and which rendition each platform receives and whether
the rendition cache already holds it. Nothing is written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.errors import UsageError
from reconciler.manifests.schema import suggest
from reconciler.mime import canonical_mime
from reconciler.model import ManifestSet
from reconciler.observe.sources import observe
from reconciler.plan.actions import Action
from reconciler.plan.desired import BYTES_PER_MB, accepted_formats, load_desired
from reconciler.plan.moves import codes, resolve
from reconciler.plan.planner import recorded_diff
from reconciler.store import planning
from reconciler.store.db import Store
from reconciler.transforms.renditions import RenditionCache
from reconciler.units import human_size


@dataclass
class RuleVerdict:
    rule: str
    platform: str
    priority: int
    matched: bool
    won: bool
    why_not: list[str] = field(default_factory=list)


@dataclass
class PlatformExplanation:
    platform: str
    action: Action | None
    rules: list[RuleVerdict]
    checks: list[tuple[str, bool]]  # (what was checked, passed)
    recorded: dict[str, Any] | None
    # What the platform receives: {"id", "transforms", "rule", "cached", "recorded_id"};
    # None when the master itself goes up.
    rendition: dict[str, Any] | None = None


@dataclass
class Explanation:
    asset: dict[str, Any]
    platforms: list[PlatformExplanation]
    unmatched: list[RuleVerdict]  # rules whose platform gets nothing from this asset

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def explain(
    manifests: ManifestSet,
    store: Store,
    code: str,
    platform: str | None = None,
    renditions: Path | None = None,
) -> Explanation:
    """Explain every placement of asset ``code``; ``renditions`` is the rendition cache
    folder consulted for "cached" (none given: nothing counts as cached)."""
    asset = manifests.assets.get(code)
    if asset is None:
        raise UsageError(
            f"no asset with code '{code}' in the manifests{suggest(code, manifests.assets)}"
        )
    if platform is not None and platform not in manifests.platforms:
        raise UsageError(
            f"no platform with code '{platform}' in the manifests"
            f"{suggest(platform, manifests.platforms)}"
        )
    only = dataclasses.replace(manifests, assets={code: asset})
    observed = observe([str(asset.path)], planning.cached_hashes(store), str(manifests.media_root))
    seen = observed.files[str(asset.path)]
    with planning.planning_connection(store) as (con, _exists):
        moves = {m.old: m for m in manifests.moves.values() if m.new == code}
        renames = resolve(moves, planning.recorded_codes(con, codes(moves)))
        desired = load_desired(con, only, observed.files, renames.recorded)
        actions = {a.platform: a for a in recorded_diff(con, desired) if a.asset == code}
        verdicts = _verdicts(
            planning.rule_match_rows(con, code), manifests, asset.category, asset.asset_type
        )
        recorded = planning.recorded_placements(con, renames.recorded.get(code, code))
    by_platform: dict[str, list[RuleVerdict]] = {}
    for verdict in verdicts:
        by_platform.setdefault(verdict.platform, []).append(verdict)
    made = RenditionCache(renditions).cached_ids() if renditions is not None else set()
    explained = []
    for name in sorted(set(actions) | set(recorded)):
        if platform is not None and name != platform:
            continue
        rules = by_platform.get(name, [])
        explained.append(
            PlatformExplanation(
                platform=name,
                action=actions.get(name),
                rules=rules,
                checks=_checks(
                    manifests, name, canonical_mime(asset.mime_type), seen.size, seen.error
                )
                if name in manifests.platforms
                else [],
                recorded=recorded.get(name),
                rendition=_rendition(actions.get(name), recorded.get(name), made),
            )
        )
    unmatched = [
        v
        for v in verdicts
        if v.platform not in actions
        and v.platform not in recorded
        and (platform is None or v.platform == platform)
    ]
    size = seen.size if seen.sha256 else None
    return Explanation(
        asset={
            "code": asset.code,
            "title": asset.title,
            "asset_type": asset.asset_type,
            "category": asset.category,
            "status": asset.status,
            "file": asset.file,
            "mime_type": canonical_mime(asset.mime_type),
            "size_bytes": size,
            "checksum": seen.sha256,
            "error": seen.error,
            "asset_set": asset.asset_set,
        },
        platforms=explained,
        unmatched=unmatched,
    )


def _verdicts(
    rows: list[tuple[Any, ...]], manifests: ManifestSet, category: str, asset_type: str
) -> list[RuleVerdict]:
    out: list[RuleVerdict] = []
    winners: set[str] = set()
    for (
        rule,
        platform,
        priority,
        asset_active,
        rule_active,
        category_ok,
        type_ok,
        included,
        excluded,
    ) in rows:
        spec = manifests.rules[rule]
        why = []
        if not asset_active:
            why.append("the asset's status is not active")
        if not rule_active:
            why.append("the rule has is_active: false")
        if not category_ok:
            why.append(f"category {category} is not in [{', '.join(spec.source_category or [])}]")
        if not type_ok:
            why.append(f"asset type {asset_type} is not in [{', '.join(spec.asset_types or [])}]")
        if not included:
            why.append(f"not in the rule's include list [{', '.join(spec.include)}]")
        if excluded:
            why.append(f"in the rule's exclude list [{', '.join(spec.exclude)}]")
        matched = not why
        won = matched and platform not in winners
        if won:
            winners.add(platform)
        elif matched:
            why.append("a rule of higher priority (or same priority, earlier code) won")
        out.append(RuleVerdict(rule, platform, priority, matched, won, why))
    return out


def _checks(
    manifests: ManifestSet, code: str, mime: str, size: int, error: str | None
) -> list[tuple[str, bool]]:
    p = manifests.platforms[code]
    checks = [(f"sync_enabled: {str(p.sync_enabled).lower()}", p.sync_enabled)]
    formats = accepted_formats(p)
    if formats is None:
        checks.append((f"{mime}: the platform accepts all formats", True))
    else:
        ok = mime in formats
        checks.append(
            (f"{mime} {'is' if ok else 'is not'} in supported_formats ({', '.join(formats)})", ok)
        )
    if error is not None:
        checks.append((f"the master file cannot be read: {error}", False))
    elif p.max_file_size_mb is not None:
        ok = size <= p.max_file_size_mb * BYTES_PER_MB
        verdict = "within" if ok else "over"
        checks.append((f"{human_size(size)} {verdict} max_file_size_mb {p.max_file_size_mb:g}", ok))
    return checks


def _rendition(
    action: Action | None, recorded: dict[str, Any] | None, made: set[str]
) -> dict[str, Any] | None:
    recorded_id = (recorded or {}).get("rendition_id") or None
    if action is None or not action.rendition_id:
        return None if recorded_id is None else {"id": None, "recorded_id": recorded_id}
    return {
        "id": action.rendition_id,
        "transforms": action.transforms,
        "rule": action.rule,
        "cached": action.rendition_id in made,
        "recorded_id": recorded_id,
    }
