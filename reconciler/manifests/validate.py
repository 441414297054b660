"""Manifest folder -> validated :class:`~reconciler.model.ManifestSet`, or every problem in it.

This is the core behind ``reconcile validate`` and the first stage of every reconcile: it loads
each ``*.yaml``/``*.yml`` file under the manifests folder, checks each document against its
kind's JSON Schema, then checks what a schema cannot see: duplicate codes across files,
references between objects, media files that must exist inside the media root, cron
expressions, AssetSet templates and globs. It reads files and never writes anything.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path as FsPath
from typing import Any

from croniter import CroniterBadDateError, croniter

from reconciler.cache import Cache
from reconciler.errors import UsageError
from reconciler.gcpause import gc_paused
from reconciler.manifests import assetsets, files
from reconciler.manifests.load import DEFAULT_LIMITS, Document, Limits, LoadedFile, discover
from reconciler.manifests.load import load_file as load_manifest_file
from reconciler.manifests.locate import Locator
from reconciler.manifests.problems import ERROR, WARNING, Finding, Path, Problem
from reconciler.manifests.quoting import describe, printable, quote, suggest
from reconciler.manifests.schema import API_VERSION, KIND_SCHEMAS, schema_errors
from reconciler.model import (
    Asset,
    AssetSet,
    ManifestSet,
    Origin,
    Platform,
    SecretRef,
    SyncRule,
)
from reconciler.observe import credentials as credential_files

KINDS = tuple(KIND_SCHEMAS)
CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
CRON_HORIZON_YEARS = 10  # a schedule must fire within this; croniter itself gives up at 50
DRIVER_SETTINGS = (
    *("bucket", "prefix", "region", "endpoint_url", "fsync", "follow_symlinks"),
    *("upload_method", "upload_path", "health_path", "api_key_header"),
    *("id_field", "url_field", "checksum_field"),
    *("upload_endpoint", "token_url", "client_id", "client_secret", "chunk_size_kib"),
    *("privacy_status", "category_id", "poll_interval", "processing_timeout"),
    *("quota_daily_units", "quota_costs"),
)

# A fixed extension map, independent of the machine's /etc/mime.types, with the media types
# Python's own map lacks
_MIME = mimetypes.MimeTypes(filenames=())
for _ext, _type in {
    ".mkv": "video/x-matroska", ".wmv": "video/x-ms-wmv", ".ogv": "video/ogg",
    ".mts": "video/mp2t", ".m2ts": "video/mp2t", ".flv": "video/x-flv", ".m4v": "video/x-m4v",
    ".mxf": "application/mxf", ".3gp": "video/3gpp", ".heic": "image/heic",
}.items():  # fmt: skip
    _MIME.add_type(_type, _ext, strict=False)


_BY_EXTENSION: dict[str, str | None] = {}


def guess_mime(file: str) -> str | None:
    """The MIME type of a file name, by its extension (remembered: 100,000 files have few)."""
    ext = os.path.splitext(file)[1].lower()
    if ext not in _BY_EXTENSION:
        _BY_EXTENSION[ext] = _MIME.guess_type("x" + ext, strict=False)[0]
    return _BY_EXTENSION[ext]


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
) -> ValidationResult:
    """Validate every manifest under ``manifests_dir``.

    ``media_root`` defaults to the manifests folder. ``display_root`` is how the folder is
    shown in messages (by default as given). ``private``: the tool's own files and folders
    (the state file and its companions, the rendition cache), never masters even when they
    lie inside the media root. Raises :class:`UsageError` when a folder is missing; every
    problem inside the manifests is returned, never raised.
    """
    manifests_dir = FsPath(manifests_dir)
    if not manifests_dir.is_dir():
        raise UsageError(
            f"manifests folder '{manifests_dir}' not found; pass --manifests DIR or set "
            "RECONCILE_MANIFESTS"
        )
    media_root = FsPath(media_root) if media_root is not None else manifests_dir
    if not media_root.is_dir():
        raise UsageError(
            f"media root '{media_root}' not found; pass --media-root DIR or set "
            "RECONCILE_MEDIA_ROOT"
        )
    shown = display_root if display_root is not None else str(manifests_dir)
    documents = _DocumentsIn(cache, manifests_dir) if cache is not None else None
    files: dict[str, LoadedFile] = {}
    for path in discover(manifests_dir):
        display = os.path.normpath(os.path.join(shown, path.relative_to(manifests_dir)))
        files[display] = load_manifest_file(path, display, limits, documents, manifests_dir)
    if not files:
        raise UsageError(
            f"no manifest files (*.yaml, *.yml) under '{shown}'; is --manifests the right folder?"
        )
    if cache is not None:
        cache.keep_manifests(manifests_dir, {f.digest for f in files.values() if f.digest})
    checker = _Checker(files, manifests_dir.resolve(), media_root.resolve(), limits)
    checker.private = tuple(os.path.realpath(p) for p in private)
    return checker.run()


@dataclass
class _DocumentsIn:
    """The manifest cache of one manifests folder, as the loader wants it."""

    cache: Cache
    manifests_dir: FsPath

    def get(self, digest: str) -> Any:
        return self.cache.manifest(self.manifests_dir, digest)

    def put(self, digest: str, documents: Any) -> None:
        self.cache.save_manifest(self.manifests_dir, digest, documents)


@dataclass
class _Declared:
    """A document of a known kind: its identity, its raw spec, and where its schema failed."""

    kind: str
    code: str | None
    spec: Any
    origin: Origin
    bad_paths: list[Path]  # fields with schema errors
    duplicate: bool = False

    @property
    def valid(self) -> bool:
        return not self.bad_paths and not self.duplicate and self.code is not None

    def field(self, name: str, kind: type) -> Any:
        """A spec field that has the right type and passed the schema, else None.

        Lets cross checks (references, files, cron) run on documents whose *other* fields
        are broken, so that one run reports every problem.
        """
        if not isinstance(self.spec, dict):
            return None
        value = self.spec.get(name)
        if not isinstance(value, kind):
            return None
        for bad in self.bad_paths:
            n = min(len(bad), 2)
            if bad[:n] == ("spec", name)[:n]:  # the field, inside it, or an enclosing node
                return None
        return value


@dataclass
class _Checker:
    files: dict[str, LoadedFile]
    manifests_dir: FsPath
    media_root: FsPath
    limits: Limits
    findings: list[Finding] = field(default_factory=list)
    private: tuple[str, ...] = ()  # the tool's own files and folders (real paths)

    def __post_init__(self) -> None:
        self.locator = Locator(self.files, self.limits)
        # first declaration of every code per kind, including documents that fail their
        # schema, so that a rule pointing at a broken Platform is not told it is missing
        self.first: dict[str, dict[str, _Declared]] = {k: {} for k in KINDS}
        self._root = str(self.media_root)
        self._folder_inside = files.FolderCheck(self._root)

    def run(self) -> ValidationResult:
        declared = self._documents()
        by_kind: dict[str, list[_Declared]] = {k: [] for k in KINDS}
        for item in declared:
            by_kind[item.kind].append(item)
        valid = {k: [d for d in items if d.valid] for k, items in by_kind.items()}

        platforms = {d.code: self._platform(d) for d in valid["Platform"]}
        self._check_targets(platforms)
        for item in by_kind["SyncRule"]:
            self._check_rule(item)
        rules = {d.code: self._rule(d) for d in valid["SyncRule"]}
        self._secrets = _secret_files(platforms, rules, self.manifests_dir)
        credential_files.forbid(self._secrets)  # refused when opened, under any name
        assets: dict[str, Asset] = {}
        for item in by_kind["Asset"]:
            path = self._check_media_file(item)
            if path is not None and self._own(path):
                self._report_on(item)(
                    ("spec", "file"),
                    "path",
                    f"{printable(item.spec['file'])} is one of this tool's own files (the "
                    "state file, or inside the rendition cache folder); it is never a master: "
                    "keep --state and --renditions apart from the masters",
                )
                continue
            if path is not None and path in self._secrets:
                self._report_on(item)(
                    ("spec", "file"),
                    "path",
                    f"{printable(item.spec['file'])} is a credential file (a secret_file the "
                    "manifests reference); a credential is never published as a master",
                )
                continue
            if path is not None and item.valid:
                assets[item.code] = self._asset(item, path)  # type: ignore[index]
        for item in by_kind["AssetSet"]:
            self._check_templates(item)
        asset_sets = {d.code: self._asset_set(d) for d in valid["AssetSet"]}
        generated = self._expand(asset_sets, assets)
        assets.update(generated)

        problems = sorted(
            (self.locator.resolve(f) for f in self.findings),
            key=lambda p: (p.file, p.line, p.column, p.message),
        )
        counts = {
            "files": len(self.files),
            "platforms": len(self.first["Platform"]),
            "assets": len(self.first["Asset"]) + len(generated),
            "generated_assets": len(generated),
            "asset_sets": len(self.first["AssetSet"]),
            "sync_rules": len(self.first["SyncRule"]),
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
            )
        return result

    # -- documents -----------------------------------------------------------------------
    def _documents(self) -> list[_Declared]:
        out: list[_Declared] = []
        for loaded in self.files.values():
            self.findings.extend(loaded.findings)
            for doc in loaded.documents:
                item = self._document(loaded.display, doc)
                if item is not None:
                    out.append(item)
        return out

    def _document(self, file: str, doc: Document) -> _Declared | None:
        data = doc.data
        if not isinstance(data, dict):
            self._reporter(file, doc.index, None, None)(
                (),
                "document",
                "a manifest document must be a mapping with apiVersion, kind, metadata and "
                f"spec, not {describe(data)}",
            )
            return None
        kind = data.get("kind")
        metadata = data.get("metadata")
        code = metadata.get("code") if isinstance(metadata, dict) else None
        code = code if isinstance(code, str) else None
        report = self._reporter(file, doc.index, kind, code)

        api_version = data.get("apiVersion")
        if api_version is None:
            report(
                ("apiVersion",),
                "api-version",
                f"required field is missing; use apiVersion: {API_VERSION}",
                anchor="key",
            )
        elif api_version != API_VERSION:
            shown = (
                quote(api_version, [API_VERSION])
                if isinstance(api_version, str)
                else f"({describe(api_version)})"  # a number, a mapping...
            )
            report(
                ("apiVersion",),
                "api-version",
                f"unsupported apiVersion {shown}; this version of reconcile reads {API_VERSION}",
            )
        if kind is None:
            report(
                ("kind",),
                "kind",
                "required field is missing; the kinds are " + ", ".join(KINDS),
                anchor="key",
            )
            return None
        if not isinstance(kind, str) or kind not in KIND_SCHEMAS:
            shown, hint = (
                (quote(kind, KINDS), suggest(kind, KINDS))
                if isinstance(kind, str)
                else (f"({describe(kind)})", "")
            )
            report(
                ("kind",),
                "kind",
                f"unknown kind {shown}{hint}; the kinds are {', '.join(KINDS)}",
            )
            return None
        if api_version != API_VERSION:
            return None

        bad_paths: list[Path] = []
        for path, anchor, message in schema_errors(kind, data):
            report(path, "schema", message, anchor=anchor)
            bad_paths.append(path)
        item = _Declared(kind, code, data.get("spec"), Origin(file, doc.index, doc.line), bad_paths)
        if code is not None:
            first = self.first[kind].setdefault(code, item)
            if first is not item and assetsets.CODE_RE.fullmatch(code):  # else a schema error
                item.duplicate = True
                where = self.locator.where(
                    first.origin.file, first.origin.doc_index, ("metadata", "code")
                )
                report(
                    ("metadata", "code"),
                    "duplicate-code",
                    f"duplicate code: {kind} {code} is already defined at {where}",
                )
        return item

    def _reporter(
        self, file: str, doc_index: int | None, kind: Any, code: str | None
    ) -> Callable[..., None]:
        # every problem line names its KIND CODE: only a real kind and a well-formed code,
        # never whatever text a broken document holds there
        kind = kind if isinstance(kind, str) and kind in KIND_SCHEMAS else None
        code = code if code is not None and assetsets.CODE_RE.fullmatch(code) else None

        def report(
            path: Path, error: str, message: str, anchor: str = "value", severity: str = ERROR
        ) -> None:
            self.findings.append(
                Finding(
                    file,
                    doc_index,
                    path,
                    message,
                    error,
                    anchor,  # type: ignore[arg-type]
                    kind,
                    code,
                    severity,
                )
            )

        return report

    def _report_on(self, item: _Declared) -> Callable[..., None]:
        return self._reporter(item.origin.file, item.origin.doc_index, item.kind, item.code)

    # -- objects -------------------------------------------------------------------------
    def _platform(self, item: _Declared) -> Platform:
        spec = item.spec
        formats = spec.get("supported_formats", "all")
        target = None
        if spec["driver"] == "local":
            raw = FsPath(spec["target"]).expanduser()
            target = FsPath(
                os.path.normpath(raw if raw.is_absolute() else self.manifests_dir / raw)
            )
        return Platform(
            code=spec_code(item),
            platform_name=spec["platform_name"],
            platform_type=spec["platform_type"],
            driver=spec["driver"],
            api_endpoint=spec.get("api_endpoint"),
            auth_type=spec.get("auth_type"),
            auth=_secret(spec.get("auth"), self.manifests_dir),
            supported_formats=None if formats == "all" else tuple(formats),
            max_file_size_mb=spec.get("max_file_size_mb"),
            rate_limit_per_hour=spec.get("rate_limit_per_hour"),
            sync_enabled=spec.get("sync_enabled", True),
            target=target,
            driver_config={
                k: _anchored(spec[k], self.manifests_dir) for k in DRIVER_SETTINGS if k in spec
            },
            origin=item.origin,
        )

    def _rule(self, item: _Declared) -> SyncRule:
        spec = item.spec
        categories = spec["source_category"]
        types = spec["asset_types"]
        return SyncRule(
            code=spec_code(item),
            platform=spec["platform"],
            source_category=None if categories == "all" else tuple(categories),
            asset_types=None if types == "all" else tuple(types),
            sync_mode=spec["sync_mode"],
            config_name=spec.get("config_name"),
            include=tuple(spec.get("include", ())),
            exclude=tuple(spec.get("exclude", ())),
            transform_rules=spec.get("transform_rules", {}),
            schedule_cron=_cron(spec.get("schedule_cron")),
            auto_sync=spec.get("auto_sync", True),
            priority=spec.get("priority", 5),
            is_active=spec.get("is_active", True),
            prune=spec.get("prune", False),
            on_conflict=spec.get("on_conflict", "manual"),
            origin=item.origin,
        )

    def _asset(self, item: _Declared, path: str) -> Asset:
        spec = item.spec
        return Asset(
            code=spec_code(item),
            title=spec["title"],
            asset_type=spec["asset_type"],
            category=spec["category"],
            file=spec["file"],
            path=str(path),
            mime_type=spec.get("mime_type") or guess_mime(spec["file"]),
            description=spec.get("description"),
            metadata=spec.get("metadata", {}),
            status=spec.get("status", "active"),
            origin=item.origin,
        )

    def _asset_set(self, item: _Declared) -> AssetSet:
        spec = item.spec
        include = spec["include"]
        return AssetSet(
            code=spec_code(item),
            include=(include,) if isinstance(include, str) else tuple(include),
            exclude=tuple(spec.get("exclude", ())),
            asset_type=spec["asset_type"],
            category=spec["category"],
            code_template=spec["code_template"],
            code_case=spec.get("code_case", "keep"),
            title_template=spec.get("title_template", "{stem}"),
            description=spec.get("description"),
            mime_type=spec.get("mime_type"),
            metadata=spec.get("metadata", {}),
            status=spec.get("status", "active"),
            origin=item.origin,
        )

    # -- cross checks --------------------------------------------------------------------
    def _check_rule(self, item: _Declared) -> None:
        report = self._report_on(item)
        platform = item.field("platform", str)
        known = self.first["Platform"]
        if platform is not None and platform not in known:
            names = ", ".join(sorted(known)) or "none"
            report(
                ("spec", "platform"),
                "reference",
                f"unknown platform '{platform}'{suggest(platform, known)}; "
                f"platforms declared: {names}",
            )
        cron = item.field("schedule_cron", str)
        if cron is not None and (message := cron_error(cron)):
            report(("spec", "schedule_cron"), "cron", message)
        transforms = item.field("transform_rules", dict)
        if not transforms:
            return
        if transforms.get("encrypt") is True and not isinstance(
            transforms.get("encryption_key"), dict
        ):
            report(
                ("spec", "transform_rules", "encrypt"),
                "transform",
                "encrypt: true needs encryption_key: {secret_env: NAME} or "
                "{secret_file: PATH, create: true}; the key is read when a copy is made",
            )
        mark = transforms.get("add_watermark")
        image = mark.get("image") if isinstance(mark, dict) else None
        if isinstance(image, str):  # schema-valid: field() gave transform_rules
            _, problem = files.media_file(self._root, image, self._folder_inside, "watermark image")
            if problem is not None:
                report(("spec", "transform_rules", "add_watermark", "image"), "path", problem)

    def _check_targets(self, platforms: dict[str, Platform]) -> None:
        root = str(self.media_root)
        for platform in platforms.values():
            if platform.target is None or platform.origin is None:
                continue
            if files.inside(os.path.realpath(platform.target), root):
                self._reporter(
                    platform.origin.file, platform.origin.doc_index, "Platform", platform.code
                )(
                    ("spec", "target"),
                    "path",
                    f"the target folder {platform.target} lies inside the media root {root}; "
                    "copies there would be read back as masters: choose a folder outside it",
                )

    def _check_media_file(self, item: _Declared) -> str | None:
        """The absolute path of an Asset's file, or None after reporting why it is unusable."""
        rel = item.field("file", str)
        if rel is None:
            return None
        path, problem = files.media_file(self._root, rel, self._folder_inside)
        if problem is not None:
            self._report_on(item)(("spec", "file"), "path", problem)
        return path

    def _check_templates(self, item: _Declared) -> None:
        for name in ("code_template", "title_template"):
            template = item.field(name, str)
            if template is not None and (message := assetsets.template_error(template)):
                item.bad_paths.append(("spec", name))
                self._report_on(item)(("spec", name), "template", message)

    def _expand(
        self, asset_sets: dict[str, AssetSet], assets: dict[str, Asset]
    ) -> dict[str, Asset]:
        generated: dict[str, Asset] = {}
        for aset in asset_sets.values():
            if not self.first["AssetSet"][aset.code].valid:  # a template was bad
                continue
            assert aset.origin is not None
            report = self._reporter(aset.origin.file, aset.origin.doc_index, "AssetSet", aset.code)
            # the state file, the renditions: silently the tool's own, never masters
            expansion = assetsets.expand(aset, self.media_root, self.private)
            for gen in expansion.files:
                if gen.path in self._secrets or os.path.realpath(gen.path) in self._secrets:
                    expansion.warn(
                        f"{printable(gen.rel)} is a credential file (a secret_file the "
                        "manifests reference): skipped, never published"
                    )
                    continue
                clash = assets.get(gen.code) or generated.get(gen.code)
                if clash is not None:
                    expansion.error(
                        f"{printable(gen.rel)} gives the code '{gen.code}', already used by "
                        f"{self._owner(clash)}"
                    )
                    continue
                generated[gen.code] = Asset(
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
            for message in expansion.errors:
                report(("spec", "include"), "asset-set", message)
            if expansion.more_errors:
                report(
                    ("spec", "include"),
                    "asset-set",
                    f"... and {expansion.more_errors} more problems like these",
                )
            for message in expansion.warnings:
                report(("spec", "include"), "asset-set", message, severity=WARNING)
            if expansion.more_warnings:
                report(
                    ("spec", "include"),
                    "asset-set",
                    f"... and {expansion.more_warnings} more entries skipped like these",
                    severity=WARNING,
                )
            if not expansion.files and not expansion.errors:
                report(
                    ("spec", "include"),
                    "asset-set",
                    f"matches no files under the media root {self.media_root}",
                    severity=WARNING,
                )
        return generated

    def _own(self, path: str) -> bool:
        """Whether a file is one of the tool's own (the state file, its lock and journal,
        a rendition), by the path it was found at."""
        return any(path == p or path.startswith(p + os.sep) for p in self.private)

    def _owner(self, asset: Asset) -> str:
        if asset.asset_set:
            return f"AssetSet {asset.asset_set}"
        origin = asset.origin
        assert origin is not None
        return "the Asset at " + self.locator.where(
            origin.file, origin.doc_index, ("metadata", "code")
        )


def spec_code(item: _Declared) -> str:
    assert item.code is not None
    return item.code


def _cron(value: Any) -> str | None:
    """A schedule_cron as croniter is given it: without surrounding blanks."""
    return value.strip() if isinstance(value, str) else None


def cron_error(expression: str, now: datetime | None = None) -> str | None:
    """Why a schedule_cron value is unusable, or None.

    Beyond its syntax, the expression must fire at least once within
    :data:`CRON_HORIZON_YEARS` of ``now``: '0 0 30 2 *' (February 30th) is well formed, but
    croniter raises CroniterBadDateError on it when the schedule is next computed.
    """
    text = _cron(expression) or ""
    shown = quote(text, noun="expression")
    if text not in CRON_MACROS:
        if len(text.split()) != 5:
            return (
                f"{shown} is not a cron expression of five fields (minute hour "
                "day-of-month month day-of-week), such as '0 9 * * 1'"
            )
        if not croniter.is_valid(text):
            return f"{shown} is not a valid cron expression; for example '0 */6 * * *'"
    start = now if now is not None else datetime.now(UTC)
    try:
        croniter(text, start, max_years_between_matches=CRON_HORIZON_YEARS).get_next(datetime)
    except CroniterBadDateError:  # well-formed cron syntax, nothing else: safe to show whole
        return (
            f"'{text}' never fires: no time in the next {CRON_HORIZON_YEARS} years matches it "
            "(a day that the month does not have, such as February 30th?)"
        )
    except Exception:  # whatever else croniter raises, schedule.py would raise too
        return f"{shown} is not a valid cron expression; for example '0 */6 * * *'"
    return None


def _secret_files(
    platforms: dict[str, Platform], rules: dict[str, SyncRule], base: FsPath
) -> set[str]:
    """Every file the manifests reference as a credential (auth and client secrets,
    encryption keys, also keys still to be created), as given and resolved: none of them is
    ever a master."""
    found: set[str] = set()
    for platform in platforms.values():
        refs = [platform.auth.file if platform.auth else None]
        refs += [
            value.get("secret_file")
            for value in platform.driver_config.values()
            if isinstance(value, dict)
        ]
        found.update(r for r in refs if isinstance(r, str))
    for rule in rules.values():
        key = dict(rule.transform_rules).get("encryption_key")
        anchored = _anchored(key, base)
        if isinstance(anchored, dict) and isinstance(anchored.get("secret_file"), str):
            found.add(anchored["secret_file"])
    return found | {os.path.realpath(path) for path in found}


def _secret(value: dict | None, base: FsPath) -> SecretRef | None:
    """A secret reference; a relative ``secret_file`` is relative to the manifests folder,
    as every path in a manifest is, never to the current directory."""
    if not value:
        return None
    anchored = _anchored(value, base)
    return SecretRef(env=anchored.get("secret_env"), file=anchored.get("secret_file"))


def _anchored(value: Any, base: FsPath) -> Any:
    """A secret reference (``{secret_file: PATH}``) with its path made absolute against
    ``base``; any other value as it is."""
    if not isinstance(value, dict) or not isinstance(value.get("secret_file"), str):
        return value
    path = os.path.expanduser(value["secret_file"])
    return {**value, "secret_file": os.path.normpath(os.path.join(base, path))}
