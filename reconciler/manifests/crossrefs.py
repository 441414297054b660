"""The checks a JSON Schema cannot make: between objects, and against the disk and the clock.

Called by :mod:`reconciler.manifests.validate` once every document is declared: a SyncRule's
platform must be declared, its cron must fire, its transforms must be usable; a local target
must lie outside the media root; an Asset's file must be a regular file inside the media root,
and neither a credential nor one of the tool's own files (for a plan that reads no media,
``--no-refresh``, only its name is checked); AssetSet templates must be valid.
Problems are recorded through :class:`~reconciler.manifests.declared.Reports`; the checks only
ever *stat* files, and never raise for what a manifest holds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath

from reconciler.manifests import assetsets, files
from reconciler.manifests.cron import cron_error
from reconciler.manifests.declared import Declared, Report, Reports
from reconciler.manifests.quoting import printable, suggest
from reconciler.model import Platform


@dataclass
class CrossChecks:
    """The cross checks of one validation run.

    ``first``: the first declaration of every code per kind (see
    :class:`~reconciler.manifests.declared.Declarations`). ``private``: the real paths of the
    tool's own files and folders. ``secrets``: every credential file the manifests reference,
    known once the rules are built.
    """

    reports: Reports
    first: Mapping[str, Mapping[str, Declared]]
    media_root: FsPath
    private: tuple[str, ...] = ()
    secrets: set[str] = field(default_factory=set)
    look: bool = True  # False: media files are named, never looked at (--no-refresh)

    def __post_init__(self) -> None:
        self._root = str(self.media_root)
        self._folder_inside = files.FolderCheck(self._root)

    def rule(self, item: Declared) -> None:
        """A SyncRule's platform reference, its schedule and its transforms."""
        report = self.reports.on(item)
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
        if transforms:
            self._transforms(transforms, report)

    def _transforms(self, transforms: dict, report: Report) -> None:
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
            _, problem = self._media_file(image, "watermark image")
            if problem is not None:
                report(("spec", "transform_rules", "add_watermark", "image"), "path", problem)

    def targets(self, platforms: Mapping[str, Platform]) -> None:
        """No local target folder may lie inside the media root."""
        root = self._root
        for platform in platforms.values():
            if platform.target is None or platform.origin is None:
                continue
            if files.inside(os.path.realpath(platform.target), root):
                origin = platform.origin
                self.reports.about(origin.file, origin.doc_index, "Platform", platform.code)(
                    ("spec", "target"),
                    "path",
                    f"the target folder {platform.target} lies inside the media root {root}; "
                    "copies there would be read back as masters: choose a folder outside it",
                )

    def asset_file(self, item: Declared) -> str | None:
        """The absolute path of an Asset's file, or None after reporting why it cannot be a
        master (or None when its ``file`` field is itself broken)."""
        rel = item.field("file", str)
        if rel is None:
            return None
        path, problem = self._media_file(rel)
        if path is not None and self.own(path):
            problem = (
                f"{printable(rel)} is one of this tool's own files (the "
                "state file, or inside the rendition cache folder); it is never a master: "
                "keep --state and --renditions apart from the masters"
            )
        elif path is not None and path in self.secrets:
            problem = (
                f"{printable(rel)} is a credential file (a secret_file the "
                "manifests reference); a credential is never published as a master"
            )
        if problem is not None:
            self.reports.on(item)(("spec", "file"), "path", problem)
            return None
        return path

    def _media_file(self, rel: str, what: str = "file") -> files.Checked:
        if self.look:
            return files.media_file(self._root, rel, self._folder_inside, what)
        return files.media_name(self._root, rel)

    def templates(self, item: Declared) -> None:
        """An AssetSet's code and title templates; a bad one makes the set invalid."""
        for name in ("code_template", "title_template", "moved_from"):
            template = item.field(name, str)
            if template is not None and (message := assetsets.template_error(template)):
                item.bad_paths.append(("spec", name))
                self.reports.on(item)(("spec", name), "template", message)

    def own(self, path: str) -> bool:
        """Whether a file is one of the tool's own (the state file, its lock and journal,
        a rendition), by the path it was found at."""
        return any(path == p or path.startswith(p + os.sep) for p in self.private)
