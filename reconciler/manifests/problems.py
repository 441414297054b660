"""Problems found in manifests, and how they point back at a file, line and field.

The loader and the validator produce :class:`Finding` objects that name a document and a field
path; :class:`~reconciler.manifests.locate.Locator` turns them into :class:`Problem` objects
with a line and column. Renderers (text, json) only ever see :class:`Problem`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from reconciler.manifests.quoting import path_key

Path = tuple[str | int, ...]
Anchor = Literal["key", "value"]

ERROR = "error"
WARNING = "warning"


def format_field(path: Path) -> str:
    """Render a field path the way people write it: ``spec.supported_formats[1]``.

    A key that is too long or holds control characters is described, not repeated (see
    :func:`~reconciler.manifests.quoting.path_key`).
    """
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            key = path_key(str(part))
            out.append(f".{key}" if out else key)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem that knows its document and field path but not yet its line."""

    file: str  # display path of the manifest file
    doc_index: int | None  # index of the document in the file; None for file-level problems
    path: Path  # field path inside the document
    message: str
    error: str  # error class, such as "schema" or "yaml-syntax"
    anchor: Anchor = "value"  # point at the key or at the value of ``path``
    kind: str | None = None
    code: str | None = None
    severity: str = ERROR
    line: int | None = None  # known position (1-based), e.g. from a YAML parser error
    column: int | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """A located problem: ``FILE:LINE:COL: KIND CODE: FIELD.PATH: message``."""

    file: str
    line: int
    column: int
    message: str
    error: str
    kind: str | None = None
    code: str | None = None
    field: str | None = None
    severity: str = ERROR

    def subject(self) -> str:
        """The ``KIND CODE`` part, or an empty string when neither is known."""
        return " ".join(p for p in (self.kind, self.code) if p)

    def format(self) -> str:
        parts = [f"{self.file}:{self.line}:{self.column}"]
        if self.severity != ERROR:
            parts.append(self.severity)
        subject = self.subject()
        if subject:
            parts.append(subject)
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
