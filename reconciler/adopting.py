"""The use cases of adopting what is already on the platforms: a one-off import, and the
discovery of objects that no recorded copy accounts for.

Called by ``reconcile import`` (:mod:`reconciler.cli.adopt`) beside the use cases of
:mod:`reconciler.ops`, in the same way: plain data in, a result out, nothing printed.

* :func:`import_one` is ``reconcile import ASSET PLATFORM ID``: an Import given on the command
  line instead of in a manifest, planned and applied at once (only that placement), under the
  run lock. The object is checked exactly as a declared Import's is.
* :func:`discover` is ``reconcile import --discover PLATFORM``: it lists the platform's
  objects, leaves out those a copy records, and matches the rest to assets by sha256 (the
  master, or a rendition in the cache) or, where the platform gives no checksum, by title and
  size. Strictly read-only: the state is only read, the platform only listed and read.
  :func:`import_documents` writes the matches as Import documents for review.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from reconciler.apply.run import Observer
from reconciler.drivers import driver_for
from reconciler.drivers.base import DriverError, Found
from reconciler.errors import UsageError
from reconciler.manifests.quoting import suggest
from reconciler.model import ActionKind, Import, ManifestSet
from reconciler.ops import Listener, Options, Reconciled, Workspace, locked_run, plan
from reconciler.plan.actions import Action, Plan
from reconciler.plan.places import overlaps
from reconciler.plan.planner import make_plan
from reconciler.redact import redact
from reconciler.store.db import Store
from reconciler.store.placements import recorded_objects
from reconciler.transforms.renditions import RenditionCache

CLI_IMPORT = "command-line"  # the code of an Import given on the command line
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # what no Import id may hold (its schema)


def import_one(
    manifest_set: ManifestSet,
    where: Workspace,
    asset: str,
    platform: str,
    remote_id: str,
    options: Options | None = None,
    observer: Observer | None = None,
    listener: Listener | None = None,
) -> Reconciled:
    """Take over the object ``remote_id`` on ``platform`` as ``asset``'s copy: checked, then
    recorded (synced on a match, outdated on a mismatch); nothing else runs."""
    _known(asset, manifest_set.assets, "asset")
    _known(platform, manifest_set.platforms, "platform")
    for other in manifest_set.imports.values():
        if other.platform == platform and other.remote_id == remote_id and other.asset != asset:
            raise UsageError(
                f"Import {other.code} at {other.origin} already names {remote_id!r} on "
                f"{platform} as {other.asset}'s copy; one object is one asset's copy"
            )
    declared = manifest_set.imports.get((asset, platform))
    if declared is not None and declared.remote_id != remote_id:
        raise UsageError(
            f"Import {declared.code} at {declared.origin} already names {declared.remote_id!r} "
            f"as {asset}'s copy on {platform}"
        )
    problem = driver_for(manifest_set.platforms[platform]).id_problem(remote_id)
    if problem is not None:
        raise UsageError(problem)
    one = Import(CLI_IMPORT, asset, platform, remote_id)
    manifests = replace(manifest_set, imports={**manifest_set.imports, (asset, platform): one})
    base = options or Options()
    action = _the_import(plan(manifests, where, replace(base, platform=platform)), asset, platform)
    narrowed = replace(base, platform=platform, rule=action.rule)

    def planned(store: Store) -> Plan:
        made = make_plan(manifests, store, narrowed.planning())
        made.actions = [_the_import(made, asset, platform)]
        return made

    return locked_run(manifests, where, narrowed, planned, observer, listener)


def _the_import(made: Plan, asset: str, platform: str) -> Action:
    """The plan's import action for the placement; a UsageError when there is none."""
    for action in made.actions:
        if action.asset == asset and action.platform == platform:
            if action.action == ActionKind.IMPORT:
                return action
            if action.platform_asset_id is None:  # blocked, held, waiting: not imported now
                raise UsageError(f"{asset} on {platform} cannot be imported now: {action.reason}")
            raise UsageError(
                f"{asset} on {platform} has a recorded copy already ({action.reason}); "
                "there is nothing to import"
            )
    raise UsageError(
        f"no active sync rule sends {asset} to {platform}; an imported object must be a copy "
        "that a rule wants there"
    )


def _known(code: str, known: Iterable[str], what: str) -> None:
    names = list(known)
    if code not in names:
        raise UsageError(f"unknown {what} '{code}'{suggest(code, names)}")


@dataclass(frozen=True)
class Discovered:
    """One object on the platform that no recorded copy accounts for."""

    found: Found
    asset: str | None = None  # the asset it matches, if any
    matched_by: str | None = None  # sha256, or title and size
    wanted: bool = False  # a sync rule sends that asset to the platform, with no copy yet


@dataclass
class Discovery:
    """What discovery found on one platform."""

    platform: str
    objects: list[Discovered] = field(default_factory=list)
    managed: int = 0  # the platform's objects that recorded copies account for

    @property
    def importable(self) -> list[Discovered]:
        return [d for d in self.objects if d.asset is not None and d.wanted]


def discover(manifest_set: ManifestSet, where: Workspace, platform: str) -> Discovery:
    """The objects on ``platform`` that no copy records, matched to assets. Read-only."""
    _known(platform, manifest_set.platforms, "platform")
    made = plan(manifest_set, where, Options())
    keys, ids = _recorded(where.store, platform)
    by_sha, by_title = _fingerprints(manifest_set, made, platform, where)
    # the assets an Import may still take over here: a rule wants them, they have no copy
    # and no declared Import yet (a second Import of one placement is invalid manifests)
    declared = {
        i.remote_id: i.asset for i in manifest_set.imports.values() if i.platform == platform
    }
    wanted = {
        a.asset for a in made.actions if a.platform == platform and a.action == ActionKind.CREATE
    } - set(declared.values())
    keys |= _overlapping(manifest_set, platform, where.store)
    driver = driver_for(manifest_set.platforms[platform])  # no records: it writes nothing
    out = Discovery(platform)
    try:
        for found in driver.discover():
            if (found.key is not None and found.key in keys) or found.remote_id in ids:
                out.managed += 1
                continue
            asset, how = _match(found, by_sha, by_title)
            named = found.remote_id in declared or (found.key or "") in declared
            importable = asset in wanted and not named
            if importable:
                wanted.discard(asset)  # one object per asset: the first match
            out.objects.append(Discovered(found, asset, how, importable))
    except DriverError as exc:
        raise UsageError(redact(f"cannot discover the objects on {platform}: {exc}")) from None
    return out


def _overlapping(manifest_set: ManifestSet, platform: str, store: Store) -> set[str]:
    """The keys, as this platform names them, of the copies other platforms record in the
    same place (a folder inside this one's target, the same bucket under a longer prefix):
    they are another platform's, never importable here."""
    out: set[str] = set()
    for inner, pairs in overlaps(manifest_set.platforms).items():
        for outer, base in pairs:
            if outer == platform:
                keys, _ = _recorded(store, inner)
                out |= {base + key for key in keys}
    return out


def _recorded(store: Store, platform: str) -> tuple[set[str], set[str]]:
    if not store.exists():
        return set(), set()
    with store.reading(allow_migrate=False) as con:
        return recorded_objects(con, platform) if con is not None else (set(), set())


def _fingerprints(
    manifest_set: ManifestSet, made: Plan, platform: str, where: Workspace
) -> tuple[dict[str, str], dict[tuple[str, int | None], str]]:
    """What each asset's copy could hold: by sha256 (its master; on this platform also its
    rendition, when the cache has it made) and by (title, size) for platforms that give no
    checksum. A fingerprint two assets share matches neither."""
    by_sha: dict[str, set[str]] = {}
    by_title: dict[tuple[str, int | None], set[str]] = {}
    observed = made.observed.files if made.observed is not None else {}
    for asset in manifest_set.assets.values():
        seen = observed.get(asset.path)
        if seen is not None and seen.sha256:
            by_sha.setdefault(seen.sha256, set()).add(asset.code)
            by_title.setdefault((asset.title, seen.size), set()).add(asset.code)
        by_title.setdefault((asset.title, None), set()).add(asset.code)
    cache = RenditionCache(where.rendition_folder)
    for action in made.actions:
        if action.platform == platform and action.rendition_id:
            known = cache.expected(action.rendition_id)
            if known is not None:
                by_sha.setdefault(known[0], set()).add(action.asset)
    return (
        {sha: next(iter(codes)) for sha, codes in by_sha.items() if len(codes) == 1},
        {key: next(iter(codes)) for key, codes in by_title.items() if len(codes) == 1},
    )


def _match(
    found: Found, by_sha: dict[str, str], by_title: dict[tuple[str, int | None], str]
) -> tuple[str | None, str | None]:
    if found.checksum is not None:
        asset = by_sha.get(found.checksum)
        return (asset, "sha256") if asset else (None, None)
    if found.title:
        asset = by_title.get((found.title, found.size))
        if asset is not None:
            return asset, "title and size" if found.size is not None else "title"
    return None, None


@dataclass(frozen=True)
class Documents:
    """Import documents for review: their YAML text, how many, and what was left out."""

    text: str
    count: int
    left_out: list[str]


def import_documents(discovery: Discovery, taken: Iterable[str] = ()) -> Documents:
    """The Import documents of the objects discovery matched to assets a rule wants on the
    platform, as YAML for review; ``taken``: Import codes already declared."""
    used = set(taken)
    left_out: list[str] = []
    count = 0
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Written by `reconcile import --discover {discovery.platform}` on {when}.",
        "# Review each match, then commit this file with the manifests: the next reconcile",
        "# checks every object and records it as the asset's copy, without uploading it.",
    ]
    for item in discovery.importable:
        assert item.asset is not None
        if CONTROL.search(item.found.remote_id):  # an Import's id is printable text
            note = (
                f"left out: {json.dumps(item.found.remote_id)} ({item.asset}) has control "
                "characters in its name; rename it on the platform, then discover again"
            )
            left_out.append(note)
            lines.append(f"# {note}")
            continue
        count += 1
        code = _code(discovery.platform, item.asset, used)
        lines += [
            "---",
            "apiVersion: mediasync/v1",
            "kind: Import",
            "metadata:",
            f"  code: {code}",
            "spec:",
            f"  asset: {item.asset}",
            f"  platform: {discovery.platform}",
            f"  id: {json.dumps(item.found.remote_id)}",  # \uXXXX: YAML folds no character
            f"  # matched by {item.matched_by}",
        ]
    return Documents("\n".join(lines) + "\n", count, left_out)


def _code(platform: str, asset: str, used: set[str]) -> str:
    """A code of at most 50 characters for the Import of ``asset`` on ``platform``."""
    code = f"IMPORT-{platform}-{asset}"
    if len(code) > 50 or code in used:
        digest = hashlib.sha256(f"{platform}\0{asset}".encode()).hexdigest()
        code = f"IMPORT-{digest[:12]}"
        n = 1
        while code in used:
            n += 1
            code = f"IMPORT-{digest[:12]}-{n}"
    used.add(code)
    return code
