"""Manifest folder -> validated :class:`~reconciler.model.ManifestSet`, or every problem in it.

This is the core behind ``reconcile validate`` and the first stage of every reconcile (the CLI,
``watch`` and the planning helpers call :func:`validate_tree`). It orchestrates the stages:

1. :mod:`.load` reads each ``*.yaml``/``*.yml`` file under the manifests folder;
2. :mod:`.declared` checks each document's header and its kind's JSON Schema, and duplicate
   codes across files;
3. :mod:`.crossrefs` checks what a schema cannot see: references between objects, media files
   that must exist inside the media root, cron expressions, AssetSet templates;
4. :mod:`.build` makes the model's objects, :mod:`.generate` the Assets of the AssetSets;
   :mod:`.adoption` checks the Imports and moves against every asset;
5. :mod:`.locate` points every problem at its file, line and column.

It returns data (a :class:`ValidationResult`), never prints, reads files and never writes
anything but the optional document cache.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any, TypeVar

from reconciler.cache import Cache
from reconciler.errors import UsageError
from reconciler.gcpause import gc_paused
from reconciler.manifests import build, scalars
from reconciler.manifests.adoption import AdoptionChecks
from reconciler.manifests.cron import cron_error
from reconciler.manifests.crossrefs import CrossChecks
from reconciler.manifests.declared import Declarations, Reports
from reconciler.manifests.documents import DEFAULT_LIMITS, Limits
from reconciler.manifests.generate import Generation
from reconciler.manifests.load import LoadedFile, discover, load_file
from reconciler.manifests.locate import Locator
from reconciler.manifests.problems import ERROR, WARNING, Problem
from reconciler.model import Asset, AssetSet, ManifestSet, Platform, SyncRule
from reconciler.observe import credentials as credential_files

__all__ = ["ValidationResult", "cron_error", "validate_tree"]

_Built = TypeVar("_Built", Platform, SyncRule, AssetSet)


@dataclass
class ValidationResult:
    """What validation found: located problems, and the manifest set when there are no errors."""

    manifests_dir: FsPath
    media_root: FsPath
    problems: list[Problem]
    counts: dict[str, int]
    manifest_set: ManifestSet | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors


@gc_paused
def validate_tree(
    manifests_dir: FsPath,
    media_root: FsPath | None = None,
    display_root: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    cache: Cache | None = None,
    private: Sequence[FsPath] = (),
    read_media: bool = True,
) -> ValidationResult:
    """Validate every manifest under ``manifests_dir``.

    ``media_root`` defaults to the manifests folder. ``display_root`` is how the folder is
    shown in messages (by default as given). ``private``: the tool's own files and folders
    (the state file and its companions, the rendition cache), never masters even when they
    lie inside the media root. ``read_media=False`` (a plan of ``--no-refresh``): asset
    files and watermark images are not looked at, only their names are checked, and the
    media root need not exist (AssetSets still list what it holds). Raises
    :class:`UsageError` when a folder is missing; every problem inside the manifests is
    returned, never raised.
    """
    manifests_dir = FsPath(manifests_dir)
    if not manifests_dir.is_dir():
        raise UsageError(
            f"manifests folder '{manifests_dir}' not found; pass --manifests DIR or set "
            "RECONCILE_MANIFESTS"
        )
    media_root = FsPath(media_root) if media_root is not None else manifests_dir
    if read_media and not media_root.is_dir():
        raise UsageError(
            f"media root '{media_root}' not found; pass --media-root DIR or set "
            "RECONCILE_MEDIA_ROOT"
        )
    shown = display_root if display_root is not None else str(manifests_dir)
    loaded = _load_all(manifests_dir, shown, limits, cache)
    validation = _Validation(
        loaded,
        manifests_dir.resolve(),
        media_root.resolve(),
        limits,
        tuple(os.path.realpath(p) for p in private),
        read_media,
    )
    return validation.run()


def _load_all(
    manifests_dir: FsPath, shown: str, limits: Limits, cache: Cache | None
) -> dict[str, LoadedFile]:
    """Every manifest file under the folder, by the path it is shown as."""
    documents = _DocumentsIn(cache, manifests_dir) if cache is not None else None
    loaded: dict[str, LoadedFile] = {}
    for path in discover(manifests_dir):
        display = os.path.normpath(os.path.join(shown, path.relative_to(manifests_dir)))
        loaded[display] = load_file(path, display, limits, documents, manifests_dir)
    if not loaded:
        raise UsageError(
            f"no manifest files (*.yaml, *.yml) under '{shown}'; is --manifests the right folder?"
        )
    if cache is not None:
        cache.keep_manifests(manifests_dir, {f.digest for f in loaded.values() if f.digest})
    return loaded


@dataclass
class _DocumentsIn:
    """The manifest cache of one manifests folder, as the loader wants it."""

    cache: Cache
    manifests_dir: FsPath

    def get(self, digest: str) -> Any:
        entry = self.cache.manifest(self.manifests_dir, digest)
        if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == scalars.RESOLUTION:
            return entry[1]
        return None  # an entry of an older reconcile, whose YAML 1.1 read 1:30 as 90: a miss

    def put(self, digest: str, documents: Any) -> None:
        self.cache.save_manifest(self.manifests_dir, digest, (scalars.RESOLUTION, documents))


@dataclass
class _Validation:
    """One validation run over loaded files (real paths of the folders)."""

    files: dict[str, LoadedFile]
    manifests_dir: FsPath
    media_root: FsPath
    limits: Limits
    private: tuple[str, ...]  # the tool's own files and folders
    read_media: bool = True  # look at asset files and watermark images

    def run(self) -> ValidationResult:
        locator = Locator(self.files, self.limits)
        reports = Reports()
        declarations = Declarations(reports, locator)
        by_kind = declarations.read(self.files.values())
        valid = {k: [d for d in items if d.valid] for k, items in by_kind.items()}
        checks = CrossChecks(
            reports, declarations.first, self.media_root, self.private, look=self.read_media
        )

        platforms = _by_code(build.platform(d, self.manifests_dir) for d in valid["Platform"])
        checks.targets(platforms)
        for item in by_kind["SyncRule"]:
            checks.rule(item)
        rules = _by_code(build.rule(d) for d in valid["SyncRule"])
        checks.secrets = build.secret_files(platforms, rules, self.manifests_dir)
        credential_files.forbid(checks.secrets)  # refused when opened, under any name
        assets: dict[str, Asset] = {}
        for item in by_kind["Asset"]:
            path = checks.asset_file(item)
            if path is not None and item.valid:
                asset = build.asset(item, path)
                assets[asset.code] = asset
        for item in by_kind["AssetSet"]:
            checks.templates(item)
        asset_sets = _by_code(build.asset_set(d) for d in valid["AssetSet"])
        generation = Generation(reports, locator, self.media_root, self.private, checks.secrets)
        generated = generation.run(asset_sets, declarations.first["AssetSet"], assets)
        assets.update(generated)
        adoption = AdoptionChecks(
            reports,
            locator,
            assets,
            platforms,
            {d.code: d for d in valid["Asset"] if d.code is not None},
            asset_sets,
        )
        imports = adoption.imports(by_kind["Import"])
        moves = adoption.moves(by_kind["Moved"], declarations.first["AssetSet"])

        problems = sorted(
            (locator.resolve(f) for f in reports.findings),
            key=lambda p: (p.file, p.line, p.column, p.message),
        )
        first = declarations.first
        counts = {
            "files": len(self.files),
            "platforms": len(first["Platform"]),
            "assets": len(first["Asset"]) + len(generated),
            "generated_assets": len(generated),
            "asset_sets": len(first["AssetSet"]),
            "sync_rules": len(first["SyncRule"]),
            "imports": len(first["Import"]),
            "moves": len(first["Moved"]),
        }
        result = ValidationResult(self.manifests_dir, self.media_root, problems, counts)
        if result.ok:
            result.manifest_set = ManifestSet(
                manifests_dir=self.manifests_dir,
                media_root=self.media_root,
                files=len(self.files),
                platforms=platforms,
                assets=assets,
                asset_sets=asset_sets,
                rules=rules,
                warnings=len(result.warnings),
                imports=imports,
                moves=moves,
            )
        return result


def _by_code(objects: Iterable[_Built]) -> Mapping[str, _Built]:
    return {o.code: o for o in objects}
