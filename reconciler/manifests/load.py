"""Safe YAML loading of manifest files: limits, duplicate keys, and line numbers.

Called by :mod:`reconciler.manifests.validate` for every ``*.yaml``/``*.yml`` file under the
manifests folder. The loader reads YAML *events* from PyYAML's parser (the libyaml C parser
when it is available) and builds plain JSON-like data itself, which lets it

* refuse what PyYAML's safe loader quietly accepts: duplicate keys in a mapping, tags other than
  the plain JSON types, recursive aliases;
* stop hostile input early: files over a size limit, nesting deeper than a limit, and alias
  expansion ("billion laughs") beyond a node budget; non-UTF-8 input is a clear error;
* record where every node is, but only when asked: the first pass over a file records nothing,
  and a file with a problem is parsed again with positions on (see :func:`parse`), so that a
  large, valid library of manifests costs no memory for line numbers.

Timestamps stay strings (a manifest is JSON-shaped data), and mapping keys are always strings.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, Protocol

import yaml
from yaml import events as ev_types

from reconciler.manifests import files
from reconciler.manifests.problems import Finding, Path
from reconciler.manifests.quoting import quote, quote_key
from reconciler.units import human_size

Loader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

UTF8_BOM = b"\xef\xbb\xbf"
MANIFEST_SUFFIXES = (".yaml", ".yml")

_TAG = "tag:yaml.org,2002:"
_STR = _TAG + "str"
_MERGE = _TAG + "merge"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null", "timestamp")}
_COLLECTION_TAGS = {None, "!", _TAG + "map", _TAG + "seq"}


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
    """What :func:`parse` found in one file."""

    documents: list[Document] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    positions: list[Positions] | None = None  # per document index, only when tracking


@dataclass(slots=True)
class LoadedFile:
    """A manifest file read from disk: its documents, and problems found while loading."""

    path: FsPath  # its real path, once read
    display: str
    digest: str  # sha256 of the bytes read; empty when the file could not be read
    documents: list[Document]
    findings: list[Finding]


def discover(root: FsPath) -> Iterator[FsPath]:
    """Yield every manifest file under ``root``, recursively, in a stable order.

    Hidden files and folders (``.git``, editor swap files) are skipped; symlinked folders are
    not followed. Every other ``*.yaml``/``*.yml`` entry is yielded, symlinks and FIFOs too:
    :func:`read_bytes` decides whether it may be read, so that a refused file is reported.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(MANIFEST_SUFFIXES) and not name.startswith("."):
                yield FsPath(dirpath, name)


class DocumentCache(Protocol):
    """Where parsed documents of a file are kept by the sha256 of its bytes."""

    def get(self, digest: str) -> Any: ...
    def put(self, digest: str, documents: Any) -> None: ...


def load_file(
    path: FsPath,
    display: str,
    limits: Limits = DEFAULT_LIMITS,
    cache: DocumentCache | None = None,
    root: FsPath | None = None,
) -> LoadedFile:
    """Read and parse one manifest file. Problems are returned as findings, never raised.

    ``root`` is the manifests folder, which the file must not lead out of (see
    :func:`read_bytes`). With a cache, a file whose bytes were parsed before (without
    problems) is not parsed again.
    """
    data, finding = read_bytes(path, display, limits, root)
    if finding is not None or data is None:
        return LoadedFile(path, display, "", [], [finding] if finding else [])
    path = FsPath(os.path.realpath(path))  # what was read, for a second look at positions
    digest = hashlib.sha256(data).hexdigest()
    if cache is not None:
        known = cache.get(digest)
        if isinstance(known, list):
            return LoadedFile(path, display, digest, [Document(*d) for d in known], [])
    parsed = parse(data, display, limits)
    if cache is not None and not parsed.findings:
        cache.put(digest, [(d.index, d.line, d.data) for d in parsed.documents])
    return LoadedFile(path, display, digest, parsed.documents, parsed.findings)


def read_bytes(
    path: FsPath, display: str, limits: Limits = DEFAULT_LIMITS, root: FsPath | None = None
) -> tuple[bytes | None, Finding | None]:
    """Read a file within the size limit and check that it is UTF-8 text.

    The file is read only when its real path lies inside ``root`` (the manifests folder; by
    default the file's own folder) and it is a regular file: a symlink that leads out of the
    folder, a symlink loop or a FIFO is a finding, and is never opened.
    """
    folder = os.path.realpath(root if root is not None else path.parent)
    try:
        fd, st = files.open_manifest(str(path), folder)
    except files.Refused as refused:
        return None, _file_finding(display, refused.error, refused.message)
    try:
        if st.st_size > limits.max_file_bytes:
            return None, _file_finding(display, "yaml-limit", _too_big(st.st_size, limits))
        data = files.read_all(fd, limits.max_file_bytes)
    except OSError as exc:
        return None, _file_finding(display, "io", f"cannot read the file: {exc.strerror or exc}")
    finally:
        os.close(fd)
    if len(data) > limits.max_file_bytes:  # the file grew while we looked at it
        return None, _file_finding(display, "yaml-limit", _too_big(len(data), limits))
    return data, check_encoding(data, display)


def check_encoding(data: bytes, display: str) -> Finding | None:
    """A manifest must be UTF-8, with a byte-order mark at most at its very start."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _file_finding(
            display,
            "yaml-encoding",
            "the file is UTF-16 or UTF-32 encoded (it starts with a byte-order mark); "
            "save it as UTF-8",
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data, exc.start)
        return _file_finding(
            display,
            "yaml-encoding",
            f"the file is not valid UTF-8 (byte 0x{data[exc.start]:02x}); save it as UTF-8",
            line,
            col,
        )
    bom = data.find(UTF8_BOM, 1)
    if bom > 0:
        line, col = _line_col(data, bom)
        return _file_finding(
            display,
            "yaml-encoding",
            "a byte-order mark (U+FEFF) inside the file, often left by joining files; remove it",
            line,
            col,
        )
    return None


def parse(
    data: bytes, display: str, limits: Limits = DEFAULT_LIMITS, track: bool = False
) -> Parsed:
    """Parse YAML bytes into documents.

    Without ``track`` this is the fast path; when it meets any problem it parses again with
    ``track`` on, so that every finding carries its field path and the positions are known.
    """
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    result = _Builder(display, limits, track).run(data)
    if result.findings and not track:
        return parse(data, display, limits, track=True)
    if not track and not result.documents and not result.findings:
        result.findings.append(
            _file_finding(
                display,
                "empty-file",
                "the file holds no manifest documents; delete it or add a document",
            )
        )
    return result


def positions_of(data: bytes, display: str, limits: Limits = DEFAULT_LIMITS) -> list[Positions]:
    """Positions of every node of every document (used to point problems at lines)."""
    if data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM) :]
    return _Builder(display, limits, track=True).run(data).positions or []


# --------------------------------------------------------------------------------------------


def _too_big(size: int, limits: Limits) -> str:
    return (
        f"the file is {human_size(size)}, over the {human_size(limits.max_file_bytes)} limit "
        "for one manifest file; split it into several files"
    )


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    line = data.count(b"\n", 0, offset) + 1
    col = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return line, col


def _file_finding(display: str, error: str, message: str, line: int = 1, col: int = 1) -> Finding:
    return Finding(display, None, (), message, error, line=line, column=col)


class _Merge:
    """Marker for the ``<<`` merge key."""


_MERGE_KEY = _Merge()
_BAD_KEY = object()  # a key we reported and whose value is dropped


class _DocumentAbort(Exception):
    """Raised inside a document that cannot be loaded; the rest of the file goes on."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


class _Frame:
    """A mapping or sequence under construction (or the document root)."""

    __slots__ = (
        "anchor",
        "container",
        "is_map",
        "key",
        "key_mark",
        "mark",
        "merges",
        "path",
        "size",
    )

    def __init__(self, container: Any, is_map: bool, path: Path, mark: Any, anchor: Any) -> None:
        self.container = container
        self.is_map = is_map
        self.key: Any = None  # None: the next node is a key (maps only)
        self.key_mark: Any = None
        self.path = path
        self.mark = mark
        self.anchor = anchor
        self.size = 1
        self.merges: list[dict] | None = None


class _Builder:
    """Turns the parser's event stream into plain data, one document at a time."""

    def __init__(self, display: str, limits: Limits, track: bool) -> None:
        self.display = display
        self.limits = limits
        self.track = track
        self.result = Parsed(positions=[] if track else None)

    # -- entry point ---------------------------------------------------------------------
    def run(self, data: bytes) -> Parsed:
        loader = Loader(data)
        try:
            self._events(loader)
        except yaml.MarkedYAMLError as exc:
            self.result.findings.append(self._syntax_finding(exc, data))
        except yaml.YAMLError as exc:  # reader errors carry a character position, not a mark
            position = getattr(exc, "position", 0) or 0
            line, col = _line_col(data, min(position, len(data)))
            reason = getattr(exc, "reason", None) or str(exc)
            self.result.findings.append(
                Finding(
                    self.display,
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
        return self.result

    def _events(self, loader: Any) -> None:
        get_event = loader.get_event
        doc_index = -1
        while True:
            event = get_event()
            cls = event.__class__
            if cls is ev_types.DocumentStartEvent:
                doc_index += 1
                try:
                    value, line = self._document(get_event, loader, doc_index)
                except _DocumentAbort as abort:
                    self.result.findings.append(abort.finding)
                    self._skip_document(get_event)
                    continue
                if value is not None:
                    self.result.documents.append(Document(doc_index, line, value))
            elif cls is ev_types.StreamEndEvent:
                return

    @staticmethod
    def _skip_document(get_event: Any) -> None:
        while True:
            cls = get_event().__class__
            if cls is ev_types.DocumentEndEvent:
                return
            if cls is ev_types.StreamEndEvent:  # pragma: no cover - parser always ends docs
                return

    # -- one document --------------------------------------------------------------------
    def _document(self, get_event: Any, loader: Any, doc_index: int) -> tuple[Any, int]:
        track = self.track
        positions: Positions = {}
        if track:
            assert self.result.positions is not None
            self.result.positions.append(positions)
        self.doc_index = doc_index
        anchors: dict[str, tuple[Any, int]] = {}
        open_anchors: set[str] = set()
        root = _Frame(None, False, (), None, None)
        root.container = []
        stack = [root]
        alias_nodes = 0
        max_depth = self.limits.max_depth
        resolve = loader.resolve
        first_line = 0

        while True:
            event = get_event()
            cls = event.__class__
            if cls is ev_types.ScalarEvent:
                tag = event.tag
                text = event.value
                if tag is None or tag == "!":
                    if event.implicit[0]:
                        tag = resolve(yaml.ScalarNode, text, event.implicit)
                    else:
                        tag = _STR
                if tag == _STR:
                    value: Any = text
                else:
                    value = self._scalar(loader, tag, text, event, stack[-1])
                size = 1
                anchor = event.anchor
                if anchor is not None:
                    anchors[anchor] = (value, 1)
                key_text: Any = text
                if tag == _MERGE and not event.style:  # plain style: None or ""
                    key_text = _MERGE_KEY
                mark = event.start_mark
            elif cls is ev_types.MappingStartEvent or cls is ev_types.SequenceStartEvent:
                if event.tag not in _COLLECTION_TAGS:
                    self._abort(
                        stack[-1],
                        f"the tag {_short(event.tag)} is not allowed in manifests; "
                        "only plain mappings, lists and scalars are",
                        event.start_mark,
                        "yaml-tag",
                    )
                if len(stack) > max_depth:
                    self._abort(
                        stack[-1],
                        f"nesting deeper than {max_depth} levels; manifests do not need such depth",
                        event.start_mark,
                        "yaml-limit",
                    )
                is_map = cls is ev_types.MappingStartEvent
                parent = stack[-1]
                path = self._child_path(parent) if track else ()
                frame = _Frame({} if is_map else [], is_map, path, event.start_mark, event.anchor)
                if event.anchor is not None:
                    open_anchors.add(event.anchor)
                stack.append(frame)
                continue
            elif cls is ev_types.MappingEndEvent or cls is ev_types.SequenceEndEvent:
                frame = stack.pop()
                if frame.merges:
                    container = frame.container
                    for merged in frame.merges:
                        for k, v in merged.items():
                            container.setdefault(k, v)
                value = frame.container
                size = frame.size
                anchor = frame.anchor
                if anchor is not None:
                    open_anchors.discard(anchor)
                    anchors[anchor] = (value, size)
                key_text = None
                mark = frame.mark
            elif cls is ev_types.AliasEvent:
                name = event.anchor
                if name in open_anchors:
                    self._abort(
                        stack[-1],
                        f"the alias *{name} refers to a node that contains it; "
                        "recursive structures are not allowed",
                        event.start_mark,
                        "yaml-syntax",
                    )
                if name not in anchors:
                    self._abort(
                        stack[-1],
                        f"the alias *{name} has no anchor &{name} before it in this document "
                        "(anchors do not carry over from one --- document to the next)",
                        event.start_mark,
                        "yaml-syntax",
                    )
                value, size = anchors[name]
                alias_nodes += size
                if alias_nodes > self.limits.max_alias_nodes:
                    self._abort(
                        stack[-1],
                        f"aliases expand this document beyond {self.limits.max_alias_nodes} "
                        'nodes (a "billion laughs" file?); write the values out instead',
                        event.start_mark,
                        "yaml-limit",
                    )
                key_text = value if isinstance(value, str) else None
                mark = event.start_mark
            elif cls is ev_types.DocumentEndEvent:
                return root.container[0] if root.container else None, first_line
            else:  # pragma: no cover - no other events inside a document
                continue

            # attach the completed node to its parent
            parent = stack[-1]
            parent.size += size
            if parent.size > self.limits.max_nodes:
                self._abort(
                    parent,
                    f"the document holds more than {self.limits.max_nodes:,} values; split it "
                    "into several documents or use an AssetSet",
                    mark,
                    "yaml-limit",
                )
            if parent is root:
                first_line = mark.line + 1
                root.container.append(value)
                if track:
                    positions[()] = (mark.line + 1, mark.column + 1, mark.line + 1, mark.column + 1)
                continue
            if not parent.is_map:
                if track:
                    item_path = (*parent.path, len(parent.container))
                    positions[item_path] = (
                        mark.line + 1,
                        mark.column + 1,
                        mark.line + 1,
                        mark.column + 1,
                    )
                parent.container.append(value)
                continue
            key = parent.key
            if key is None:  # this node is a key
                if key_text is None:
                    self._finding(
                        parent.path,
                        "a mapping key must be a plain value, not a mapping or a list",
                        "yaml-syntax",
                        mark,
                    )
                    parent.key = _BAD_KEY
                else:
                    parent.key = key_text
                parent.key_mark = mark
                continue
            parent.key = None
            if key is _BAD_KEY:
                continue
            if key is _MERGE_KEY:
                self._merge(parent, value, mark)
                continue
            container = parent.container
            if track:
                km = parent.key_mark
                child = (*parent.path, key)
                if key in container:
                    first = positions.get(child)
                    where = f" (first at line {first[0]})" if first else ""
                    self._finding(
                        child,
                        f"duplicate key {quote_key(key)} in this mapping{where}; YAML "
                        "would keep only one of them silently: remove or rename one",
                        "yaml-duplicate-key",
                        km,
                        anchor="key",
                    )
                    continue
                positions[child] = (km.line + 1, km.column + 1, mark.line + 1, mark.column + 1)
            elif key in container:
                self._finding(parent.path, "duplicate key", "yaml-duplicate-key", mark)
                continue
            container[key] = value

    # -- helpers -------------------------------------------------------------------------
    def _child_path(self, parent: _Frame) -> Path:
        if parent.mark is None:  # the document root
            return ()
        if parent.is_map:
            key = parent.key
            return (*parent.path, key) if isinstance(key, str) else parent.path
        return (*parent.path, len(parent.container))

    def _scalar(self, loader: Any, tag: str, text: str, event: Any, parent: _Frame) -> Any:
        if tag == _MERGE or tag == _TAG + "timestamp":
            return text
        if tag not in _SCALAR_TAGS:
            self._abort(
                parent,
                f"the tag {_short(tag)} is not allowed in manifests; only plain "
                "strings, numbers, booleans and null are",
                event.start_mark,
                "yaml-tag",
            )
        node = yaml.ScalarNode(tag, text, event.start_mark, event.end_mark, event.style)
        try:
            # the constructor function itself, not construct_object(), which would keep
            # every node it ever built in a cache until the file ends
            value = loader.yaml_constructors[tag](loader, node)
        except (ValueError, yaml.YAMLError):
            self._abort(
                parent,
                f"{quote(text)} is not a valid {tag.rsplit(':', 1)[-1]}",
                event.start_mark,
                "yaml-tag",
            )
        if isinstance(value, float) and not math.isfinite(value):
            self._abort(
                parent,
                f"{quote(text)} is not a number a manifest can hold (no NaN or infinity)",
                event.start_mark,
                "yaml-tag",
            )
        return value

    def _merge(self, frame: _Frame, value: Any, mark: Any) -> None:
        sources = value if isinstance(value, list) else [value]
        if not all(isinstance(s, dict) for s in sources):
            self._finding(
                frame.path,
                "the merge key << takes a mapping or a list of mappings",
                "yaml-syntax",
                mark,
            )
            return
        if frame.merges is None:
            frame.merges = []
        frame.merges.extend(sources)

    def _finding(
        self, path: Path, message: str, error: str, mark: Any, anchor: str = "value"
    ) -> None:
        self.result.findings.append(
            Finding(
                self.display,
                self.doc_index,
                path,
                message,
                error,
                anchor=anchor,  # type: ignore[arg-type]
                line=mark.line + 1,
                column=mark.column + 1,
            )
        )

    def _abort(self, frame: _Frame, message: str, mark: Any, error: str) -> Any:
        raise _DocumentAbort(
            Finding(
                self.display,
                self.doc_index,
                self._child_path(frame) if self.track else (),
                message,
                error,
                line=mark.line + 1,
                column=mark.column + 1,
            )
        )

    def _syntax_finding(self, exc: yaml.MarkedYAMLError, data: bytes) -> Finding:
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
                self.display,
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
        return Finding(self.display, None, (), message, "yaml-syntax", line=line, column=col)


def _short(tag: str) -> str:
    return "!!" + tag[len(_TAG) :] if tag.startswith(_TAG) else tag


def _char_at(data: bytes, line: int, col: int) -> str:
    lines = data.split(b"\n", line)
    if len(lines) < line:
        return ""
    text = lines[line - 1].decode("utf-8", "replace")
    return text[col - 1] if 0 < col <= len(text) else ""
