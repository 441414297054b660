"""Turns findings (document + field path) into problems (file:line:column).

Used by :mod:`reconciler.manifests.validate` once all checks have run, and by :mod:`.declared`
and :mod:`.generate` to say where an earlier declaration is. Line numbers come from a second,
position-tracking parse of only those files that have a problem, so valid files never pay for
them (see :mod:`reconciler.manifests.load`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from reconciler.manifests import files
from reconciler.manifests.documents import DEFAULT_LIMITS, Limits, Positions
from reconciler.manifests.load import LoadedFile, positions_of
from reconciler.manifests.problems import Finding, Path, Problem, format_field


@dataclass
class Locator:
    files: dict[str, LoadedFile]  # by display path
    limits: Limits = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        self._positions: dict[str, list[Positions]] = {}

    def point(
        self, file: str, doc_index: int | None, path: Path, anchor: str = "value"
    ) -> tuple[int, int]:
        """Line and column (1-based) of a field, or of its nearest enclosing field."""
        if doc_index is None:
            return 1, 1
        docs = self._positions_for(file)
        positions = docs[doc_index] if doc_index < len(docs) else {}
        exact = positions.get(path)
        if exact is not None:
            return (exact[0], exact[1]) if anchor == "key" else (exact[2], exact[3])
        probe = path
        while probe:
            probe = probe[:-1]
            found = positions.get(probe)
            if found is not None:
                return found[0], found[1]
        return self._document_line(file, doc_index), 1

    def where(self, file: str, doc_index: int, path: Path) -> str:
        line, _ = self.point(file, doc_index, path)
        return f"{file}:{line}"

    def resolve(self, finding: Finding) -> Problem:
        if finding.line is not None:
            line, column = finding.line, finding.column or 1
        else:
            line, column = self.point(finding.file, finding.doc_index, finding.path, finding.anchor)
        return Problem(
            file=finding.file,
            line=line,
            column=column,
            message=finding.message,
            error=finding.error,
            kind=finding.kind,
            code=finding.code,
            field=format_field(finding.path) or None,
            severity=finding.severity,
        )

    def _positions_for(self, file: str) -> list[Positions]:
        cached = self._positions.get(file)
        if cached is not None:
            return cached
        loaded = self.files.get(file)
        positions: list[Positions] = []
        if loaded is not None and loaded.digest:  # never a file that was refused
            # the real path that was read, again without following a link or blocking
            data = files.read_regular(str(loaded.path), self.limits.max_file_bytes)
            # only trust positions from the very bytes that were validated
            if data and hashlib.sha256(data).hexdigest() == loaded.digest:
                positions = positions_of(data, file, self.limits)
        self._positions[file] = positions
        return positions

    def _document_line(self, file: str, doc_index: int) -> int:
        loaded = self.files.get(file)
        if loaded is not None:
            for doc in loaded.documents:
                if doc.index == doc_index:
                    return doc.line
        return 1
