"""What loading a manifest file produces, and the limits that bound it.

Shared by the stages of loading: :mod:`.load` (reading files), :mod:`.yamlevents` (a file's
stream of YAML documents) and :mod:`.builder` (one document's events), and read by
:mod:`.locate` and :mod:`.validate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.manifests.problems import Finding, Path


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that keep a hostile manifest from hanging or exhausting memory."""

    max_file_bytes: int = 64 * 1024 * 1024
    max_depth: int = 64
    max_alias_nodes: int = 10_000  # nodes one document may gain through aliases
    max_nodes: int = 50_000  # values in one document (a manifest document has a few dozen)


DEFAULT_LIMITS = Limits()


@dataclass(slots=True)
class Document:
    """One YAML document of a manifest file."""

    index: int  # position among the file's documents, counting empty ones
    line: int  # 1-based line where its content starts
    data: Any


# Positions of one document: field path -> (key line, key col, value line, value col), 1-based.
Positions = dict[Path, tuple[int, int, int, int]]


@dataclass(slots=True)
class Parsed:
    """What parsing one file found: its documents, its problems, and (when tracking) where
    every node of every document is."""

    documents: list[Document] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    positions: list[Positions] | None = None  # per document index, only when tracking


def file_finding(display: str, error: str, message: str, line: int = 1, col: int = 1) -> Finding:
    """A problem of the whole file (no document, no field), at a known position."""
    return Finding(display, None, (), message, error, line=line, column=col)


def line_col(data: bytes, offset: int) -> tuple[int, int]:
    """The 1-based line and column of a byte offset."""
    line = data.count(b"\n", 0, offset) + 1
    col = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return line, col
