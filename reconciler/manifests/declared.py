"""Manifest documents -> declared objects of a known kind: header checks, schema, duplicate codes.

The first step of :mod:`reconciler.manifests.validate`: every loaded document is checked for
its apiVersion and kind, validated against its kind's JSON Schema (:mod:`.schema`), and its
code compared with the codes declared before it. A :class:`Declared` is what the cross checks
(:mod:`.crossrefs`) and the builders of model objects (:mod:`.build`) read. Also the home of
:class:`Reports`, through which every check of a validation run records a problem.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from reconciler.manifests.assetsets import CODE_RE
from reconciler.manifests.documents import Document
from reconciler.manifests.load import LoadedFile
from reconciler.manifests.locate import Locator
from reconciler.manifests.problems import ERROR, Anchor, Finding, Path
from reconciler.manifests.quoting import describe, quote, suggest
from reconciler.manifests.schema import API_VERSION, KIND_SCHEMAS, schema_errors
from reconciler.model import Origin

KINDS = tuple(KIND_SCHEMAS)


class Report(Protocol):
    """Records one problem of one document, at a field path."""

    def __call__(
        self, path: Path, error: str, message: str, anchor: Anchor = "value", severity: str = ERROR
    ) -> None: ...


@dataclass
class Reports:
    """Where the checks of one validation run record their findings, in the order made."""

    findings: list[Finding] = field(default_factory=list)

    def about(self, file: str, doc_index: int | None, kind: Any, code: str | None) -> Report:
        """A :class:`Report` for one document."""
        # every problem line names its KIND CODE: only a real kind and a well-formed code,
        # never whatever text a broken document holds there
        kind = kind if isinstance(kind, str) and kind in KIND_SCHEMAS else None
        code = code if code is not None and CODE_RE.fullmatch(code) else None
        findings = self.findings

        def report(
            path: Path, error: str, message: str, anchor: Anchor = "value", severity: str = ERROR
        ) -> None:
            findings.append(
                Finding(file, doc_index, path, message, error, anchor, kind, code, severity)
            )

        return report

    def on(self, item: Declared) -> Report:
        """A :class:`Report` for the document that declared ``item``."""
        return self.about(item.origin.file, item.origin.doc_index, item.kind, item.code)


@dataclass
class Declared:
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


class Declarations:
    """Reads documents into :class:`Declared` items, keeping the first declaration of each code.

    ``first`` holds, per kind, every code's first declaration, including documents that fail
    their schema, so that a rule pointing at a broken Platform is not told it is missing.
    """

    def __init__(self, reports: Reports, locator: Locator) -> None:
        self.reports = reports
        self.locator = locator
        self.first: dict[str, dict[str, Declared]] = {k: {} for k in KINDS}

    def read(self, files: Iterable[LoadedFile]) -> dict[str, list[Declared]]:
        """Every declared item of the files, by kind, in file and document order; the
        loader's findings and every problem found here go to the reports."""
        by_kind: dict[str, list[Declared]] = {k: [] for k in KINDS}
        for loaded in files:
            self.reports.findings.extend(loaded.findings)
            for doc in loaded.documents:
                item = self._document(loaded.display, doc)
                if item is not None:
                    by_kind[item.kind].append(item)
        return by_kind

    def _document(self, file: str, doc: Document) -> Declared | None:
        data = doc.data
        if not isinstance(data, dict):
            self.reports.about(file, doc.index, None, None)(
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
        report = self.reports.about(file, doc.index, kind, code)
        api_version_ok = _check_api_version(data.get("apiVersion"), report)
        known = _known_kind(kind, report)
        if known is None or not api_version_ok:
            return None
        bad_paths: list[Path] = []
        for path, anchor, message in schema_errors(known, data):
            report(path, "schema", message, anchor=anchor)
            bad_paths.append(path)
        item = Declared(known, code, data.get("spec"), Origin(file, doc.index, doc.line), bad_paths)
        if code is not None:
            self._note_code(item, code, report)
        return item

    def _note_code(self, item: Declared, code: str, report: Report) -> None:
        first = self.first[item.kind].setdefault(code, item)
        if first is not item and CODE_RE.fullmatch(code):  # else a schema error
            item.duplicate = True
            where = self.locator.where(
                first.origin.file, first.origin.doc_index, ("metadata", "code")
            )
            report(
                ("metadata", "code"),
                "duplicate-code",
                f"duplicate code: {item.kind} {code} is already defined at {where}",
            )


def _check_api_version(api_version: Any, report: Report) -> bool:
    """Whether the document's apiVersion is the one this version reads; reports it if not."""
    if api_version is None:
        report(
            ("apiVersion",),
            "api-version",
            f"required field is missing; use apiVersion: {API_VERSION}",
            anchor="key",
        )
        return False
    if api_version != API_VERSION:
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
        return False
    return True


def _known_kind(kind: Any, report: Report) -> str | None:
    """The document's kind when it is a known one; else None, after reporting it."""
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
        report(("kind",), "kind", f"unknown kind {shown}{hint}; the kinds are {', '.join(KINDS)}")
        return None
    return kind
