"""A manifest file's YAML stream -> its documents; the parser's errors -> sentences people read.

Called by ``parse`` and ``positions_of`` of :mod:`reconciler.manifests.load`. Events come from
PyYAML's parser (the libyaml C parser when it is available); each document is handed to a
:class:`~reconciler.manifests.builder.DocumentBuilder`. A document that cannot be loaded is
recorded as a finding and skipped, and the rest of the file goes on; a syntax error ends the
file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from yaml import events as ev

from reconciler.manifests.builder import DocumentAbort, DocumentBuilder
from reconciler.manifests.documents import Document, Limits, Parsed, Positions, line_col
from reconciler.manifests.problems import Finding

# only its parser is used: the builder resolves and constructs the scalars itself
Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_stream(data: bytes, display: str, limits: Limits, track: bool) -> Parsed:
    """Every document of the YAML ``data`` (without a byte-order mark), and its problems."""
    result = Parsed(positions=[] if track else None)
    loader = Loader(data)
    try:
        builder = DocumentBuilder(display, limits, track, result.findings)
        _documents(loader.get_event, builder, result)
    except yaml.MarkedYAMLError as exc:
        result.findings.append(syntax_finding(exc, data, display))
    except yaml.YAMLError as exc:  # reader errors carry a character position, not a mark
        position = getattr(exc, "position", 0) or 0
        line, col = line_col(data, min(position, len(data)))
        reason = getattr(exc, "reason", None) or str(exc)
        result.findings.append(
            Finding(
                display,
                None,
                (),
                f"unreadable text: {reason}",
                "yaml-encoding",
                line=line,
                column=col,
            )
        )
    finally:
        loader.dispose()
    return result


def _documents(get_event: Callable[[], Any], builder: DocumentBuilder, result: Parsed) -> None:
    doc_index = -1
    while True:
        cls = get_event().__class__
        if cls is ev.StreamEndEvent:
            return
        if cls is not ev.DocumentStartEvent:
            continue
        doc_index += 1
        positions: Positions = {}
        if result.positions is not None:
            result.positions.append(positions)
        try:
            value, line = builder.build(get_event, doc_index, positions)
        except DocumentAbort as abort:
            result.findings.append(abort.finding)
            _skip_document(get_event)
            continue
        if value is not None:
            result.documents.append(Document(doc_index, line, value))


def _skip_document(get_event: Callable[[], Any]) -> None:
    while True:
        cls = get_event().__class__
        if cls is ev.DocumentEndEvent:
            return
        if cls is ev.StreamEndEvent:  # pragma: no cover - parser always ends docs
            return


def syntax_finding(exc: yaml.MarkedYAMLError, data: bytes, display: str) -> Finding:
    """The parser's complaint, said so that a person knows what to fix."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else 1
    col = mark.column + 1 if mark else 1
    problem = (exc.problem or "invalid YAML").strip()
    message = problem
    if "cannot start any token" in problem and _char_at(data, line, col) == "\t":
        message = (
            "a tab character where YAML expects indentation or a value; YAML "
            "indents with spaces only"
        )
    elif "maximum nesting depth" in problem:
        return Finding(
            display,
            None,
            (),
            "nesting too deep for the YAML parser; manifests do not need such depth",
            "yaml-limit",
            line=line,
            column=col,
        )
    elif exc.context and exc.context_mark and exc.context_mark is not mark:
        message = f"{problem} ({exc.context} at line {exc.context_mark.line + 1})"
    if "mapping values are not allowed" in problem:
        message += "; is a space missing after a colon, or does a value need quotes?"
    return Finding(display, None, (), message, "yaml-syntax", line=line, column=col)


def _char_at(data: bytes, line: int, col: int) -> str:
    lines = data.split(b"\n", line)
    if len(lines) < line:
        return ""
    text = lines[line - 1].decode("utf-8", "replace")
    return text[col - 1] if 0 < col <= len(text) else ""
